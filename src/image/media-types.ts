// Flick's OCI vocabulary, in one place. A Flick image is an ordinary OCI image
// manifest (image-spec v1.1, https://github.com/opencontainers/image-spec/blob/main/manifest.md)
// so any registry and client carries it; its layers are not tar changesets but
// the three parts of a microVM, told apart by media type.

/** https://github.com/opencontainers/image-spec/blob/main/media-types.md */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** Docker's schema 2 types, which registries must still accept from older clients. */
export const DOCKER_MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';

/** The manifest's artifactType: marks a manifest as a Flick microVM image. */
export const FLICK_ARTIFACT = 'application/vnd.flick.microvm.v1';
/** PVH-bootable vmlinux (ELF), uncompressed: shared by every image, so stored once per registry. */
export const FLICK_KERNEL = 'application/vnd.flick.kernel.v1+elf';
/** newc cpio holding Flick's static /init. */
export const FLICK_INITRD = 'application/vnd.flick.initrd.v1+cpio';
/** The app's read-only root filesystem. */
export const FLICK_ROOTFS_EROFS = 'application/vnd.flick.rootfs.v1+erofs';
export const FLICK_ROOTFS_SQUASHFS = 'application/vnd.flick.rootfs.v1+squashfs';
/** The same parts xz-compressed, as `flick build` pushes them (layer-codec.ts unpacks them where they run). */
export const FLICK_KERNEL_XZ = 'application/vnd.flick.kernel.v1.elf+xz';
export const FLICK_INITRD_XZ = 'application/vnd.flick.initrd.v1.cpio+xz';
export const FLICK_ROOTFS_EROFS_XZ = 'application/vnd.flick.rootfs.v1.erofs+xz';

export const FLICK_LAYER_TYPES = [
  FLICK_KERNEL, FLICK_INITRD, FLICK_ROOTFS_EROFS, FLICK_ROOTFS_SQUASHFS, FLICK_KERNEL_XZ, FLICK_INITRD_XZ, FLICK_ROOTFS_EROFS_XZ,
] as const;

/** Annotations on a Flick manifest. https://github.com/opencontainers/image-spec/blob/main/annotations.md */
export const ANNOTATION_SOURCE_IMAGE_BYTES = 'dev.flick.source-image-bytes';
export const ANNOTATION_SOURCE_IMAGE = 'dev.flick.source-image';
export const ANNOTATION_MINIMIZED = 'dev.flick.minimized';
export const ANNOTATION_KERNEL_KEY = 'dev.flick.kernel-key';
export const ANNOTATION_CREATED = 'org.opencontainers.image.created';
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
