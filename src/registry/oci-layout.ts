// A local OCI image layout directory (image-spec image-layout.md:
// https://github.com/opencontainers/image-spec/blob/main/image-layout.md), the
// client side of push and pull. Images are entries of index.json named by the
// `org.opencontainers.image.ref.name` annotation (`name:tag`, see
// src/image/layout-path.ts). Blobs are written to a temp name, verified, then
// renamed, like the registry's own store.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { FlickError } from '../errors.js';
import { ANNOTATION_REF_NAME } from '../image/media-types.js';
import { exists, writeFileAtomic } from './fs-atomic.js';
import { DescriptorSchema, type Descriptor } from './manifest-schema.js';
import { parseDigest } from './names.js';

const IndexFileSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    manifests: z.array(DescriptorSchema),
  })
  .passthrough();
type IndexFile = z.infer<typeof IndexFileSchema>;

export type LayoutErrorCode = 'LAYOUT_INVALID' | 'IMAGE_NOT_FOUND' | 'DIGEST_INVALID';
export class LayoutError extends FlickError<LayoutErrorCode> {}

export class OciLayout {
  constructor(readonly dir: string) {}

  async #readIndex(): Promise<IndexFile> {
    let raw: string;
    try {
      raw = await fsp.readFile(path.join(this.dir, 'index.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, manifests: [] };
      throw err;
    }
    const parsed = IndexFileSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new LayoutError('LAYOUT_INVALID', `${this.dir}/index.json is not an OCI image index: ${parsed.error.issues[0]?.message}`, { kind: 'user' });
    return parsed.data;
  }

  /** The index.json entry named `ref` (a `name:tag`), or the entry with that digest. */
  async find(ref: { refName?: string; digest?: string }): Promise<Descriptor | undefined> {
    const index = await this.#readIndex();
    return index.manifests.find((d) =>
      ref.digest !== undefined ? d.digest === ref.digest : d.annotations?.[ANNOTATION_REF_NAME] === ref.refName,
    );
  }

  async refNames(): Promise<string[]> {
    const index = await this.#readIndex();
    return index.manifests.map((d) => d.annotations?.[ANNOTATION_REF_NAME]).filter((n): n is string => n !== undefined);
  }

  blobPath(digest: string): string {
    const d = parseDigest(digest);
    if (!d) throw new LayoutError('DIGEST_INVALID', `invalid digest "${digest}"`, { kind: 'user' });
    return path.join(this.dir, 'blobs', d.algorithm, d.hex);
  }

  async hasBlob(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await fsp.stat(this.blobPath(digest));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  readBlob(digest: string): Promise<Buffer> {
    return fsp.readFile(this.blobPath(digest));
  }

  async #init(): Promise<void> {
    await fsp.mkdir(path.join(this.dir, 'blobs'), { recursive: true });
    const marker = path.join(this.dir, 'oci-layout');
    if (!(await exists(marker))) await writeFileAtomic(marker, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  }

  /**
   * Stores a stream as blob `digest`, refusing (and leaving nothing of) content
   * with another digest. `onBytes` sees the running byte count (progress).
   */
  async writeBlob(digest: string, input: Readable, onBytes?: (done: number) => void): Promise<void> {
    await this.#init();
    const d = parseDigest(digest);
    if (!d) throw new LayoutError('DIGEST_INVALID', `invalid digest "${digest}"`, { kind: 'user' });
    const target = this.blobPath(digest);
    await fsp.mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${randomUUID()}`;
    try {
      const hash = createHash(d.algorithm);
      let done = 0;
      // Hash inside the pipeline: a 'data' listener would set the stream flowing before the file is open.
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          done += chunk.length;
          onBytes?.(done);
          cb(null, chunk);
        },
      });
      await pipeline(input, tap, fs.createWriteStream(tmp));
      const actual = `${d.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) throw new LayoutError('DIGEST_INVALID', `blob ${digest} arrived with digest ${actual}: the source is corrupt or was changed`);
      await fsp.rename(tmp, target);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async writeBytes(digest: string, bytes: Buffer): Promise<void> {
    await this.#init();
    await writeFileAtomic(this.blobPath(digest), bytes);
  }

  /** Points `refName` at `descriptor` in index.json, replacing an older entry of that name. */
  async setRef(refName: string, descriptor: Descriptor): Promise<void> {
    await this.#init();
    const index = await this.#readIndex();
    const manifests = index.manifests.filter((d) => d.annotations?.[ANNOTATION_REF_NAME] !== refName);
    manifests.push({ ...descriptor, annotations: { ...descriptor.annotations, [ANNOTATION_REF_NAME]: refName } });
    await writeFileAtomic(path.join(this.dir, 'index.json'), `${JSON.stringify({ ...index, manifests }, null, 2)}\n`);
  }
}
