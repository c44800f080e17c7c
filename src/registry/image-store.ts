// Flick images as the controller sees them: runnable files on local disk, found
// by reference. When a manifest whose artifactType is FLICK_ARTIFACT lands in the
// registry, its kernel, initrd and root filesystem blobs are laid out as plain
// files in <data-dir>/images/<alg>-<hex>/{vmlinux,initrd,rootfs} right after the
// PUT returns, so the first start pays nothing: compressed layers (`+xz`) unpacked,
// plain ones hard-linked to their read-only blobs (copied across file systems).
// The directory appears by rename, complete or not at all.
import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { OciRunConfigSchema } from '../image/oci-config.js';
import { FlickError, describeError } from '../errors.js';
import { partOf, plainMediaType, unpackLayer } from '../image/layer-codec.js';
import { FLICK_ARTIFACT, FLICK_ROOTFS_SQUASHFS } from '../image/media-types.js';
import { exists, readdirOrEmpty } from './fs-atomic.js';
import { parseManifest, type ImageManifest } from './manifest-schema.js';
import { formatImageReference, parseDigest, parseImageReference } from './names.js';
import { RegistryError } from './registry-error.js';
import type { Registry } from './registry.js';

/** The parts of an OCI image config (image-spec config.md) a microVM needs. */
export const ImageConfigSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  config: OciRunConfigSchema.optional(),
}).passthrough();
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

export interface FlickImagePaths {
  vmlinux: string;
  initrd: string;
  rootfs: string;
}

export interface FlickImage {
  /** `name@digest`, the reference that names exactly this image. */
  ref: string;
  name: string;
  digest: string;
  config: ImageConfig;
  rootfsType: 'erofs' | 'squashfs';
  paths: FlickImagePaths;
}

export interface FlickImageSummary {
  ref: string;
  name: string;
  tag: string;
  digest: string;
  ready: boolean;
}

/** What the controller needs from the images on this host. */
export interface ImageStore {
  /** `name:tag` or `name@digest` → a runnable image (prepared now if the push-time preparation has not finished). */
  resolve(ref: string): Promise<FlickImage>;
  /** Tagged Flick images on this host. */
  list(): Promise<FlickImageSummary[]>;
}

export type ImageStoreErrorCode = 'IMAGE_NOT_FOUND' | 'IMAGE_INVALID' | 'IMAGE_PREPARE_FAILED';
export class ImageStoreError extends FlickError<ImageStoreErrorCode> {}

export function isFlickManifest(m: { artifactType?: string | undefined }): boolean {
  return m.artifactType === FLICK_ARTIFACT;
}

export function imageDirName(digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new ImageStoreError('IMAGE_INVALID', `invalid image digest "${digest}"`, { kind: 'user' });
  return `${d.algorithm}-${d.hex}`;
}

export class RegistryImageStore implements ImageStore {
  readonly imagesDir: string;
  #registry: Registry;
  #inflight = new Map<string, Promise<string>>();
  #log: (line: string) => void;

  constructor(registry: Registry, dataDir: string, log: (line: string) => void = () => undefined) {
    this.#registry = registry;
    this.imagesDir = path.join(dataDir, 'images');
    this.#log = log;
    // Prepare right after the PUT has answered: the client does not wait for it.
    registry.onManifestPushed((e) => {
      if (e.manifest.kind !== 'image' || !isFlickManifest(e.manifest.manifest)) return;
      const m = e.manifest.manifest;
      setImmediate(() => {
        this.prepare(e.digest, m).catch((err) => this.#log(`images: preparing ${e.name}@${e.digest} failed: ${describeError(err)}`));
      });
    });
  }

  async resolve(ref: string): Promise<FlickImage> {
    const parsed = parseImageReference(ref);
    if (!parsed) throw new ImageStoreError('IMAGE_INVALID', `invalid image reference "${ref}": use name:tag or name@sha256:…`, { kind: 'user' });
    const reference = parsed.digest ?? parsed.tag ?? 'latest';
    let stored;
    try {
      stored = await this.#registry.getManifest(parsed.name, reference);
    } catch (err) {
      if (err instanceof RegistryError && err.status === 404) {
        throw new ImageStoreError('IMAGE_NOT_FOUND', `image "${formatImageReference(parsed)}" not found in the host registry: push it with 'flick push ${formatImageReference(parsed)}'`, { kind: 'user', cause: err });
      }
      throw err;
    }
    const manifest = parseManifest(await fsp.readFile(stored.path), stored.mediaType);
    if (manifest.kind !== 'image' || !isFlickManifest(manifest.manifest)) {
      throw new ImageStoreError('IMAGE_INVALID', `image "${ref}" is not a Flick microVM image (artifactType ${FLICK_ARTIFACT}): build it with 'flick build'`, { kind: 'user' });
    }
    const dir = await this.prepare(stored.digest, manifest.manifest);
    const config = ImageConfigSchema.parse(JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8')));
    const rootfsType = manifest.manifest.layers.some((l) => plainMediaType(l.mediaType) === FLICK_ROOTFS_SQUASHFS) ? 'squashfs' : 'erofs';
    return {
      ref: `${parsed.name}@${stored.digest}`,
      name: parsed.name,
      digest: stored.digest,
      config,
      rootfsType,
      paths: { vmlinux: path.join(dir, 'vmlinux'), initrd: path.join(dir, 'initrd'), rootfs: path.join(dir, 'rootfs') },
    };
  }

  async list(): Promise<FlickImageSummary[]> {
    const out: FlickImageSummary[] = [];
    const repos = this.#registry.repos;
    for (const name of await repos.listRepositories()) {
      for (const tag of await repos.listTags(name)) {
        const digest = await repos.resolveTag(name, tag);
        const record = digest ? await repos.getManifest(name, digest) : undefined;
        if (!digest || !record || !isFlickManifest(record)) continue;
        out.push({ ref: `${name}:${tag}`, name, tag, digest, ready: await exists(path.join(this.imagesDir, imageDirName(digest))) });
      }
    }
    return out;
  }

  /** Lays the image's parts out as files, once per digest however many ask at the same time. */
  prepare(digest: string, manifest: ImageManifest): Promise<string> {
    const running = this.#inflight.get(digest);
    if (running) return running;
    const p = this.#prepare(digest, manifest).finally(() => this.#inflight.delete(digest));
    this.#inflight.set(digest, p);
    return p;
  }

  /** Waits for preparations in flight (flickd's shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#inflight.values()]);
  }

  async #prepare(digest: string, manifest: ImageManifest): Promise<string> {
    const final = path.join(this.imagesDir, imageDirName(digest));
    if (await exists(final)) return final;
    const parts = new Map<keyof FlickImagePaths, { digest: string; mediaType: string }>();
    for (const layer of manifest.layers) {
      const file = partOf(layer.mediaType);
      if (file && !parts.has(file)) parts.set(file, layer);
    }
    for (const need of ['vmlinux', 'initrd', 'rootfs'] as const) {
      if (!parts.has(need)) throw new ImageStoreError('IMAGE_INVALID', `Flick image ${digest} has no ${need} layer: rebuild it with 'flick build'`, { kind: 'user' });
    }
    await fsp.mkdir(this.imagesDir, { recursive: true });
    const tmp = path.join(this.imagesDir, `.tmp-${randomUUID()}`);
    try {
      await fsp.mkdir(tmp);
      for (const [file, layer] of parts) await unpackLayer(this.#registry.blobPath(layer.digest), layer.mediaType, path.join(tmp, file));
      await unpackLayer(this.#registry.blobPath(manifest.config.digest), manifest.config.mediaType, path.join(tmp, 'config.json'));
      await fsp.rename(tmp, final).catch(async (err) => {
        // Another preparation (a restarted flickd) finished first: same content.
        if (!(await exists(final))) throw err;
      });
    } catch (err) {
      throw new ImageStoreError('IMAGE_PREPARE_FAILED', `preparing image ${digest} failed: ${describeError(err)}`, { cause: err });
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    return final;
  }

  /** Image directories present on disk (for garbage collection). */
  async listPrepared(): Promise<string[]> {
    return (await readdirOrEmpty(this.imagesDir)).filter((n) => !n.startsWith('.'));
  }
}
