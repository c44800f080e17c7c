// The content-addressed blob store and its upload sessions, on disk under
// <data-dir>/registry/. A blob lives at blobs/<algorithm>/<hex> and appears there
// only after its digest was verified (temp file in uploads/, fsync, rename), so a
// crash mid-upload leaves nothing visible. Two uploads of the same blob each write
// their own session file; the first rename wins and the second finds the blob there.
// Upload sessions (uploads/<uuid>/{data,info.json}) survive a flickd restart, so
// a client can query the offset and resume
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks).
import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { appendStream, digestFile, exists, fsyncPath, writeFileAtomic } from './fs-atomic.js';
import { parseDigest } from './names.js';
import { RegistryError } from './registry-error.js';
import { KeyedMutex } from './rw-lock.js';

const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const UploadInfoSchema = z.object({ version: z.literal(1), name: z.string(), createdAt: z.string() });

export interface ContentRange {
  start: number;
  end: number;
}

export class BlobStore {
  readonly blobsDir: string;
  readonly uploadsDir: string;
  #sessions = new KeyedMutex();

  constructor(root: string) {
    this.blobsDir = path.join(root, 'blobs');
    this.uploadsDir = path.join(root, 'uploads');
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.blobsDir, { recursive: true });
    await fsp.mkdir(this.uploadsDir, { recursive: true });
  }

  blobPath(digest: string): string {
    const d = parseDigest(digest);
    if (!d) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${digest}" is not a sha256 or sha512 digest`);
    return path.join(this.blobsDir, d.algorithm, d.hex);
  }

  /** The blob's size, or undefined when the store lacks it. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.blobPath(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Marks a blob as wanted just now: garbage collection spares blobs younger than its grace period. */
  async touch(digest: string): Promise<void> {
    const now = new Date();
    await fsp.utimes(this.blobPath(digest), now, now).catch(() => undefined);
  }

  /** Stores bytes already in memory (manifests), verifying nothing: the caller computed the digest. */
  async putBytes(digest: string, bytes: Buffer): Promise<void> {
    const target = this.blobPath(digest);
    if (await exists(target)) return this.touch(digest);
    await writeFileAtomic(target, bytes, 0o444);
  }

  async createUpload(name: string): Promise<string> {
    const id = randomUUID();
    const dir = path.join(this.uploadsDir, id);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'data'), '');
    await writeFileAtomic(path.join(dir, 'info.json'), JSON.stringify({ version: 1, name, createdAt: new Date().toISOString() }));
    return id;
  }

  /** Bytes received so far in an upload session of repository `name`. */
  async uploadOffset(name: string, id: string): Promise<number> {
    const dir = await this.#session(name, id);
    return (await fsp.stat(path.join(dir, 'data'))).size;
  }

  /**
   * Appends a chunk. With a Content-Range, the chunk must start where the data
   * ends (else 416) and be exactly as long as the range says. Bytes of a chunk
   * cut off by a dropped connection are kept: the client asks for the offset and
   * sends the rest.
   */
  async appendUpload(name: string, id: string, body: Readable, range?: ContentRange): Promise<number> {
    const dir = await this.#session(name, id);
    return this.#sessions.run(id, async () => {
      const data = path.join(dir, 'data');
      const before = (await fsp.stat(data)).size;
      if (range && range.start !== before) {
        body.resume();
        throw new RegistryError('BLOB_UPLOAD_INVALID', `blob upload invalid: chunk starts at ${range.start} but the upload has ${before} bytes: query the upload's status and resume from there`, {
          status: 416,
          detail: { offset: before },
        });
      }
      const written = await appendStream(data, body);
      if (range && written !== range.end - range.start + 1) {
        await fsp.truncate(data, before);
        throw new RegistryError('BLOB_UPLOAD_INVALID', `blob upload invalid: Content-Range ${range.start}-${range.end} announced ${range.end - range.start + 1} bytes but ${written} arrived`);
      }
      return before + written;
    });
  }

  /**
   * Closes an upload: appends the final chunk if any, verifies the whole blob
   * against `digest` and moves it into the store. A mismatch deletes the session,
   * so nothing of the bad content stays behind.
   */
  async completeUpload(name: string, id: string, digest: string, body?: Readable, range?: ContentRange): Promise<void> {
    const dir = await this.#session(name, id);
    const d = parseDigest(digest);
    if (!d) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${digest}" is not a sha256 or sha512 digest`);
    if (body) await this.appendUpload(name, id, body, range);
    await this.#sessions.run(id, async () => {
      const data = path.join(dir, 'data');
      const actual = await digestFile(data, d.algorithm);
      if (actual !== digest) {
        await fsp.rm(dir, { recursive: true, force: true });
        throw new RegistryError('DIGEST_INVALID', `digest invalid: the upload's content has digest ${actual}, not ${digest}`, {
          detail: { expected: digest, actual },
        });
      }
      await this.#commit(data, digest);
      await fsp.rm(dir, { recursive: true, force: true });
    });
  }

  async cancelUpload(name: string, id: string): Promise<void> {
    const dir = await this.#session(name, id);
    await this.#sessions.run(id, () => fsp.rm(dir, { recursive: true, force: true }));
  }

  /** Upload sessions and their age, for garbage collection of abandoned pushes. */
  async listUploads(): Promise<Array<{ id: string; dir: string; mtimeMs: number }>> {
    const out: Array<{ id: string; dir: string; mtimeMs: number }> = [];
    for (const id of await fsp.readdir(this.uploadsDir)) {
      const dir = path.join(this.uploadsDir, id);
      const st = await fsp.stat(path.join(dir, 'data')).catch(() => fsp.stat(dir));
      out.push({ id, dir, mtimeMs: st.mtimeMs });
    }
    return out;
  }

  async #commit(file: string, digest: string): Promise<void> {
    const target = this.blobPath(digest);
    if (await exists(target)) {
      // Same digest, same bytes: a concurrent upload (or an earlier push) got there first.
      await this.touch(digest);
      return;
    }
    await fsp.mkdir(path.dirname(target), { recursive: true });
    // Blobs are immutable; the image cache hard-links them, so no one may write through a link.
    await fsp.chmod(file, 0o444);
    await fsyncPath(file);
    await fsp.rename(file, target);
    await fsyncPath(path.dirname(target));
  }

  async #session(name: string, id: string): Promise<string> {
    const unknown = () =>
      new RegistryError('BLOB_UPLOAD_UNKNOWN', `blob upload unknown: no upload session ${id} in repository "${name}": start a new upload`);
    if (!UPLOAD_ID_RE.test(id)) throw unknown();
    const dir = path.join(this.uploadsDir, id);
    let info: z.infer<typeof UploadInfoSchema>;
    try {
      info = UploadInfoSchema.parse(JSON.parse(await fsp.readFile(path.join(dir, 'info.json'), 'utf8')));
    } catch {
      throw unknown();
    }
    if (info.name !== name) throw unknown();
    return dir;
  }
}
