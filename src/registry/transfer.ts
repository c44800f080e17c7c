// Push and pull between a local OCI layout and a registry over the distribution
// spec (https://github.com/opencontainers/distribution-spec/blob/main/spec.md).
// Push skips blobs the registry has (HEAD), uploads the rest in chunks (POST,
// PATCH with Content-Range, PUT ?digest=) and keeps each upload's URL in a small
// state file, so a push that was cut off asks the registry for the offset (GET
// on the upload URL) and sends only the rest. Manifests go last: an index's
// children before the index.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { FlickError } from '../errors.js';

export type TransferErrorCode = 'BAD_RESPONSE' | 'DIGEST_INVALID';
/** A peer registry answered something the distribution spec does not allow. */
export class TransferError extends FlickError<TransferErrorCode> {}
import { writeFileAtomic } from './fs-atomic.js';
import { MANIFEST_MEDIA_TYPES, parseManifest, type Descriptor, type ParsedManifest } from './manifest-schema.js';
import type { OciLayout } from './oci-layout.js';

/** What transfers need from an HTTP client for flickd (src/cli/http-client.ts provides it). */
export interface TransferClient {
  request(method: string, path: string, init?: { headers?: Record<string, string>; body?: string | Buffer | Readable; signal?: AbortSignal }): Promise<Response>;
  check(res: Response, what: string): Promise<Response>;
}

export type TransferEvent =
  | { kind: 'skip'; digest: string; size: number }
  | { kind: 'progress'; digest: string; size: number; done: number }
  | { kind: 'done'; digest: string; size: number }
  | { kind: 'manifest'; digest: string };

export interface PushConfig {
  client: TransferClient;
  layout: OciLayout;
  /** The image in the layout: its index.json entry. */
  source: Descriptor;
  /** Repository and tag in the registry. */
  name: string;
  tag: string;
  /** Where upload URLs of unfinished pushes are kept. */
  stateDir: string;
  chunkBytes?: number;
  onEvent?: (e: TransferEvent) => void;
  signal?: AbortSignal;
}

export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

const UploadStateSchema = z.object({ version: z.literal(1), location: z.string() });

export async function pushImage(config: PushConfig): Promise<{ digest: string }> {
  const { layout, source } = config;
  const order = await manifestTree(layout, source);
  const blobs = new Map<string, Descriptor>();
  for (const { parsed } of order) {
    if (parsed.kind === 'image') for (const d of [parsed.manifest.config, ...parsed.manifest.layers]) blobs.set(d.digest, d);
  }
  for (const blob of blobs.values()) await pushBlob(config, blob);
  // Children first, by digest; the root last, by tag.
  for (const m of order) {
    const root = m.descriptor.digest === source.digest;
    const res = await config.client.request('PUT', `/v2/${config.name}/manifests/${root ? config.tag : m.descriptor.digest}`, {
      headers: { 'content-type': m.parsed.mediaType },
      body: m.bytes,
      ...(config.signal ? { signal: config.signal } : {}),
    });
    await config.client.check(res, `pushing manifest ${m.descriptor.digest}`);
    config.onEvent?.({ kind: 'manifest', digest: m.descriptor.digest });
  }
  return { digest: source.digest };
}

interface ManifestNode {
  descriptor: Descriptor;
  bytes: Buffer;
  parsed: ParsedManifest;
}

/** The manifest and, for an index, its children (children first). */
async function manifestTree(layout: OciLayout, root: Descriptor): Promise<ManifestNode[]> {
  const bytes = await layout.readBlob(root.digest);
  const parsed = parseManifest(bytes, root.mediaType);
  const node = { descriptor: root, bytes, parsed };
  if (parsed.kind === 'image') return [node];
  const out: ManifestNode[] = [];
  for (const child of parsed.manifest.manifests) out.push(...(await manifestTree(layout, child)));
  return [...out, node];
}

async function pushBlob(config: PushConfig, blob: Descriptor): Promise<void> {
  const { client, name, signal } = config;
  const sig = signal ? { signal } : {};
  const head = await client.request('HEAD', `/v2/${name}/blobs/${blob.digest}`, sig);
  if (head.ok) return config.onEvent?.({ kind: 'skip', digest: blob.digest, size: blob.size });
  if (head.status !== 404) await client.check(head, `checking blob ${blob.digest}`);

  const stateFile = path.join(config.stateDir, `${createHash('sha256').update(`${name}\n${blob.digest}`).digest('hex').slice(0, 32)}.json`);
  let upload = await resumeUpload(client, stateFile, signal);
  if (!upload) {
    // No hand-set Content-Length on bodiless requests: fetch sends 0 itself, and undici 7's dispatcher
    // (installed process-wide once anything imports undici) refuses a hand-set one there.
    const res = await client.check(await client.request('POST', `/v2/${name}/blobs/uploads/`, sig), `starting upload of ${blob.digest}`);
    upload = { location: requireLocation(res), offset: 0 };
    await fsp.mkdir(config.stateDir, { recursive: true });
    await writeFileAtomic(stateFile, JSON.stringify({ version: 1, location: upload.location }));
  }
  const file = config.layout.blobPath(blob.digest);
  const chunk = config.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  let { location, offset } = upload;
  while (offset < blob.size) {
    const end = Math.min(offset + chunk, blob.size) - 1;
    const res = await client.request('PATCH', location, {
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${end}`, 'content-length': String(end - offset + 1) },
      body: fs.createReadStream(file, { start: offset, end }),
      ...sig,
    });
    if (res.status === 416 || res.status === 404) {
      // The registry lost or disagrees about the session: start this blob over.
      await res.body?.cancel();
      await fsp.rm(stateFile, { force: true });
      return pushBlob(config, blob);
    }
    await client.check(res, `uploading blob ${blob.digest}`);
    location = requireLocation(res);
    offset = end + 1;
    await writeFileAtomic(stateFile, JSON.stringify({ version: 1, location }));
    config.onEvent?.({ kind: 'progress', digest: blob.digest, size: blob.size, done: offset });
  }
  const sep = location.includes('?') ? '&' : '?';
  const put = await client.request('PUT', `${location}${sep}digest=${encodeURIComponent(blob.digest)}`, sig);
  await fsp.rm(stateFile, { force: true });
  await client.check(put, `finishing upload of ${blob.digest}`);
  config.onEvent?.({ kind: 'done', digest: blob.digest, size: blob.size });
}

/** A saved upload the registry still knows, with the offset it has. */
async function resumeUpload(client: TransferClient, stateFile: string, signal?: AbortSignal): Promise<{ location: string; offset: number } | undefined> {
  let state;
  try {
    state = UploadStateSchema.parse(JSON.parse(await fsp.readFile(stateFile, 'utf8')));
  } catch {
    return undefined;
  }
  const res = await client.request('GET', state.location, signal ? { signal } : {});
  await res.body?.cancel();
  const range = res.headers.get('range')?.match(/^(?:bytes=)?0-(\d+)$/);
  if (res.status !== 204 || !range) return undefined;
  // "0-0" means no byte or one byte; resending from 0 is right in the first case and gets a 416 (→ restart) in the second.
  const last = Number(range[1]);
  return { location: res.headers.get('location') ?? state.location, offset: last === 0 ? 0 : last + 1 };
}

function requireLocation(res: Response): string {
  const loc = res.headers.get('location');
  if (!loc) throw new TransferError('BAD_RESPONSE', `the registry answered ${res.status} without a Location header`);
  return loc;
}

export interface PullConfig {
  client: TransferClient;
  layout: OciLayout;
  name: string;
  /** Tag or digest in the registry. */
  reference: string;
  /** The index.json name to give the pulled image (`name:tag`). */
  refName: string;
  onEvent?: (e: TransferEvent) => void;
  signal?: AbortSignal;
}

const ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

export async function pullImage(config: PullConfig): Promise<{ digest: string }> {
  const root = await pullManifest(config, config.reference);
  await config.layout.setRef(config.refName, root);
  return { digest: root.digest };
}

async function pullManifest(config: PullConfig, reference: string): Promise<Descriptor> {
  const { client, layout, name } = config;
  const sig = config.signal ? { signal: config.signal } : {};
  const res = await client.check(await client.request('GET', `/v2/${name}/manifests/${reference}`, { headers: { accept: ACCEPT }, ...sig }), `pulling ${name}:${reference}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (reference.includes(':') && reference !== digest) {
    throw new TransferError('DIGEST_INVALID', `manifest ${reference} arrived with digest ${digest}: the registry sent other content`);
  }
  const parsed = parseManifest(bytes, res.headers.get('content-type') ?? undefined);
  if (parsed.kind === 'index') {
    for (const child of parsed.manifest.manifests) await pullManifest(config, child.digest);
  } else {
    for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
      if (await layout.hasBlob(blob.digest, blob.size)) {
        config.onEvent?.({ kind: 'skip', digest: blob.digest, size: blob.size });
        continue;
      }
      const b = await client.check(await client.request('GET', `/v2/${name}/blobs/${blob.digest}`, sig), `pulling blob ${blob.digest}`);
      if (!b.body) throw new TransferError('BAD_RESPONSE', `blob ${blob.digest} came without a body`);
      const stream = Readable.fromWeb(b.body as Parameters<typeof Readable.fromWeb>[0]);
      await layout.writeBlob(blob.digest, stream, (done) => config.onEvent?.({ kind: 'progress', digest: blob.digest, size: blob.size, done }));
      config.onEvent?.({ kind: 'done', digest: blob.digest, size: blob.size });
    }
  }
  await layout.writeBytes(digest, bytes);
  config.onEvent?.({ kind: 'manifest', digest });
  return { mediaType: parsed.mediaType, digest, size: bytes.length };
}
