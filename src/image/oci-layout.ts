// The local OCI image layout where built images live (image-layout.md:
// https://github.com/opencontainers/image-spec/blob/main/image-layout.md).
// Blobs are content-addressed and written by rename, so a crash leaves at
// most an unreferenced blob; an image appears only when index.json (rewritten
// atomically under a lock file) names its manifest.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ImageError } from './image-error.js';
import { localImageLayoutDir } from './layout-path.js';
import { ANNOTATION_REF_NAME, OCI_INDEX, OCI_MANIFEST } from './media-types.js';

export const DescriptorSchema = z
  .object({
    mediaType: z.string(),
    digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
    size: z.number().int().nonnegative(),
    annotations: z.record(z.string(), z.string()).optional(),
    artifactType: z.string().optional(),
  })
  .passthrough();
export type Descriptor = z.infer<typeof DescriptorSchema>;

const IndexSchema = z.object({ schemaVersion: z.literal(2), mediaType: z.string().optional(), manifests: z.array(DescriptorSchema) }).passthrough();
type Index = z.infer<typeof IndexSchema>;

export const ManifestSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.literal(OCI_MANIFEST),
    artifactType: z.string().optional(),
    config: DescriptorSchema,
    layers: z.array(DescriptorSchema),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .passthrough();
export type Manifest = z.infer<typeof ManifestSchema>;

/** NAME[:TAG] → "name:tag" (tag defaults to latest), or INVALID_REFERENCE. */
export function normalizeRef(ref: string): string {
  const m = /^([a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$/.exec(ref);
  if (!m) {
    throw new ImageError('INVALID_REFERENCE', `image name "${ref}" is not valid: use lowercase NAME[:TAG], e.g. hello:1`, { kind: 'user' });
  }
  return `${m[1]}:${m[2] ?? 'latest'}`;
}

export interface StoredImage {
  ref: string;
  digest: string;
  manifest: Manifest;
}

export class OciLayout {
  constructor(readonly dir: string = localImageLayoutDir()) {}

  blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  }

  private async init(): Promise<void> {
    await fsp.mkdir(path.join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const marker = path.join(this.dir, 'oci-layout');
    if (!fs.existsSync(marker)) await writeAtomic(marker, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  }

  /** Copies a file into the blob store (hashing as it goes); returns its descriptor. */
  async addFile(file: string, mediaType: string, annotations?: Record<string, string>): Promise<Descriptor> {
    await this.init();
    const tmp = path.join(this.dir, 'blobs', `.in-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    const hash = crypto.createHash('sha256');
    let size = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        const rs = fs.createReadStream(file);
        const ws = fs.createWriteStream(tmp);
        rs.on('data', (c) => {
          hash.update(c);
          size += c.length;
        });
        rs.on('error', reject);
        ws.on('error', reject);
        ws.on('finish', resolve);
        rs.pipe(ws);
      });
      const digest = `sha256:${hash.digest('hex')}`;
      await fsp.rename(tmp, this.blobPath(digest));
      return { mediaType, digest, size, ...(annotations ? { annotations } : {}) };
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async addJson(value: unknown, mediaType: string): Promise<Descriptor> {
    await this.init();
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
    const p = this.blobPath(digest);
    if (!fs.existsSync(p)) await writeAtomic(p, bytes);
    return { mediaType, digest, size: bytes.length };
  }

  private async readIndex(): Promise<Index> {
    let raw: string;
    try {
      raw = await fsp.readFile(path.join(this.dir, 'index.json'), 'utf8');
    } catch {
      return { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
    }
    const parsed = IndexSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new ImageError('IMAGE_INVALID', `${this.dir}/index.json is not an OCI index: ${parsed.error.message}`);
    return parsed.data;
  }

  /** Points `ref` at the manifest (replacing what it named before): the moment an image appears. */
  async tag(ref: string, manifest: Descriptor): Promise<void> {
    await this.init();
    await withLock(path.join(this.dir, 'index.json.lock'), async () => {
      const index = await this.readIndex();
      index.manifests = index.manifests.filter((m) => m.annotations?.[ANNOTATION_REF_NAME] !== ref);
      index.manifests.push({ ...manifest, annotations: { ...manifest.annotations, [ANNOTATION_REF_NAME]: ref } });
      await writeAtomic(path.join(this.dir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
    });
  }

  async readJson<T>(digest: string, schema: z.ZodType<T>): Promise<T> {
    const raw = await fsp.readFile(this.blobPath(digest), 'utf8').catch((cause: unknown) => {
      throw new ImageError('IMAGE_INVALID', `blob ${digest} is missing from ${this.dir}: rebuild the image`, { cause });
    });
    const parsed = schema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new ImageError('IMAGE_INVALID', `blob ${digest} in ${this.dir} is malformed: ${parsed.error.message}`);
    return parsed.data;
  }

  /** Every tagged image, in index order. */
  async list(): Promise<StoredImage[]> {
    const index = await this.readIndex();
    const out: StoredImage[] = [];
    for (const d of index.manifests) {
      const ref = d.annotations?.[ANNOTATION_REF_NAME];
      if (ref === undefined || d.mediaType !== OCI_MANIFEST) continue;
      out.push({ ref, digest: d.digest, manifest: await this.readJson(d.digest, ManifestSchema) });
    }
    return out;
  }

  /** The image `ref` (NAME[:TAG], or a manifest digest prefix), or IMAGE_NOT_FOUND. */
  async resolve(ref: string): Promise<StoredImage> {
    const images = await this.list();
    const byDigest = /^(sha256:)?[a-f0-9]{6,64}$/.test(ref) ? images.find((i) => i.digest.replace('sha256:', '').startsWith(ref.replace('sha256:', ''))) : undefined;
    const found = byDigest ?? images.find((i) => i.ref === normalizeRef(ref));
    if (!found) {
      throw new ImageError('IMAGE_NOT_FOUND', `image "${ref}" not found in ${this.dir}: build it with 'flick build -t ${ref} .' or list images with 'flick images'`, {
        kind: 'user',
      });
    }
    return found;
  }
}

async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, file);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/** A lock file (O_EXCL) held around the index's read-modify-write; one left by a crash expires after 30 s. */
async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = fs.statSync(lockFile, { throwIfNoEntry: false });
      if (st && Date.now() - st.mtimeMs > 30_000) fs.rmSync(lockFile, { force: true });
      if (i > 400) throw new ImageError('TOOL_FAILED', `${lockFile} is held by another flick process: retry, or remove it if no build is running`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}
