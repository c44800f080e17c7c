// What `flick images` and `flick inspect` show about a stored image: sizes
// (the microVM image's own bytes against the container image it came from),
// how it was minimized, and its run config.
import { ImageConfigSchema, LABEL_GID, LABEL_UID, type ImageConfig } from './image-config.js';
import type { GuestHealthcheck } from '../vmm/driver.js';
import { healthcheckOf } from './healthcheck.js';
import { partOf } from './layer-codec.js';
import { ANNOTATION_CREATED, ANNOTATION_MINIMIZED, ANNOTATION_SOURCE_IMAGE, ANNOTATION_SOURCE_IMAGE_BYTES } from './media-types.js';
import type { OciLayout, StoredImage } from './oci-layout.js';

export interface ImageInfo {
  ref: string;
  digest: string;
  created: string | undefined;
  /** The microVM image's own bytes: root filesystem, config and manifest (not the shared kernel and initrd). */
  size_bytes: number;
  /** The whole image as pushed: every layer (the kernel and initrd too, compressed as shipped), config and manifest. */
  total_bytes: number;
  kernel_bytes: number;
  initrd_bytes: number;
  source_image_bytes: number | undefined;
  source_image: string | undefined;
  minimized: string | undefined;
  rootfs: { media_type: string; size_bytes: number } | undefined;
  config: {
    entrypoint: string[];
    cmd: string[];
    env: string[];
    working_dir: string;
    user: string;
    uid: number | undefined;
    gid: number | undefined;
    exposed_ports: string[];
    healthcheck: GuestHealthcheck | undefined;
    stop_signal: string | undefined;
    volumes: string[];
  };
}

export async function imageInfo(layout: OciLayout, img: StoredImage): Promise<ImageInfo> {
  const m = img.manifest;
  const config: ImageConfig = await layout.readJson(m.config.digest, ImageConfigSchema);
  const manifestBytes = JSON.stringify(m).length;
  const shared = m.layers.filter((l) => partOf(l.mediaType) === 'vmlinux' || partOf(l.mediaType) === 'initrd');
  const own = m.layers.filter((l) => !shared.includes(l));
  const sum = (ls: { size: number }[]) => ls.reduce((n, l) => n + l.size, 0);
  const src = m.annotations?.[ANNOTATION_SOURCE_IMAGE_BYTES];
  const c = config.config;
  const rootfs = own[0];
  const labelNumber = (k: string) => (c.Labels?.[k] === undefined ? undefined : Number(c.Labels[k]));
  return {
    ref: img.ref,
    digest: img.digest,
    created: m.annotations?.[ANNOTATION_CREATED] ?? config.created,
    size_bytes: sum(own) + m.config.size + manifestBytes,
    total_bytes: sum(m.layers) + m.config.size + manifestBytes,
    kernel_bytes: sum(m.layers.filter((l) => partOf(l.mediaType) === 'vmlinux')),
    initrd_bytes: sum(m.layers.filter((l) => partOf(l.mediaType) === 'initrd')),
    source_image_bytes: src === undefined ? undefined : Number(src),
    source_image: m.annotations?.[ANNOTATION_SOURCE_IMAGE],
    minimized: m.annotations?.[ANNOTATION_MINIMIZED],
    rootfs: rootfs ? { media_type: rootfs.mediaType, size_bytes: rootfs.size } : undefined,
    config: {
      entrypoint: c.Entrypoint ?? [],
      cmd: c.Cmd ?? [],
      env: c.Env ?? [],
      working_dir: c.WorkingDir ?? '/',
      user: c.User ?? '',
      uid: labelNumber(LABEL_UID),
      gid: labelNumber(LABEL_GID),
      exposed_ports: Object.keys(c.ExposedPorts ?? {}),
      healthcheck: healthcheckOf(c.Labels),
      stop_signal: c.StopSignal ?? undefined,
      volumes: Object.keys(c.Volumes ?? {}),
    },
  };
}

/** "21.1 MB" (10^6 bytes, the unit the image-size goal is stated in) */
export function formatMB(bytes: number | undefined): string {
  return bytes === undefined ? '-' : `${(bytes / 1e6).toFixed(1)} MB`;
}

/** "12.3 MiB" */
export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return '-';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 2 ** 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
