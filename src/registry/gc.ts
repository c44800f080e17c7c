// Garbage collection: mark every blob a manifest of any repository names (and
// the manifests themselves), sweep the rest. It runs under the store lock held
// exclusive, so no manifest can be half-written while it marks. Blobs that were
// uploaded, mounted or asked about within `graceMs` are spared even when
// unreferenced: a client pushes blobs first and the manifest last, and must not
// lose a blob between the two. Abandoned upload sessions older than
// `uploadTtlMs` go too, and prepared image folders of manifests that are gone.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { readdirOrEmpty } from './fs-atomic.js';
import { imageDirName } from './image-store.js';
import { isDigest } from './names.js';
import type { Registry } from './registry.js';

export interface GcOptions {
  graceMs?: number;
  uploadTtlMs?: number;
  /** The folder of prepared images (<data-dir>/images); omitted → left alone. */
  imagesDir?: string;
  now?: number;
}

export interface GcResult {
  blobsDeleted: number;
  bytesFreed: number;
  linksDeleted: number;
  uploadsDeleted: number;
  imagesDeleted: number;
}

export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000;
export const DEFAULT_UPLOAD_TTL_MS = 24 * 60 * 60 * 1000;

export function collectGarbage(registry: Registry, options: GcOptions = {}): Promise<GcResult> {
  const now = options.now ?? Date.now();
  const grace = options.graceMs ?? DEFAULT_GC_GRACE_MS;
  const uploadTtl = options.uploadTtlMs ?? DEFAULT_UPLOAD_TTL_MS;
  return registry.lock.exclusive(async () => {
    const result: GcResult = { blobsDeleted: 0, bytesFreed: 0, linksDeleted: 0, uploadsDeleted: 0, imagesDeleted: 0 };
    const marked = new Set<string>();
    const manifests = new Set<string>();
    const repos = await registry.repos.listRepositories();
    for (const name of repos) {
      for (const digest of await registry.repos.listManifests(name)) {
        marked.add(digest);
        manifests.add(digest);
        for (const d of await namedDigests(registry.blobPath(digest))) marked.add(d);
      }
    }
    for (const name of repos) {
      for (const link of await registry.repos.listBlobLinks(name)) {
        if (marked.has(link.digest) || now - link.mtimeMs < grace) continue;
        if (await registry.repos.unlinkBlob(name, link.digest)) result.linksDeleted++;
      }
    }
    for (const alg of await readdirOrEmpty(registry.blobs.blobsDir)) {
      const dir = path.join(registry.blobs.blobsDir, alg);
      for (const hex of await readdirOrEmpty(dir)) {
        const digest = `${alg}:${hex}`;
        const file = path.join(dir, hex);
        const st = await fsp.stat(file).catch(() => undefined);
        if (!st || marked.has(digest) || now - st.mtimeMs < grace) continue;
        if (!isDigest(digest) && !hex.includes('.tmp-')) continue;
        await fsp.rm(file, { force: true });
        result.blobsDeleted++;
        result.bytesFreed += st.size;
      }
    }
    for (const u of await registry.blobs.listUploads()) {
      if (now - u.mtimeMs < uploadTtl) continue;
      await fsp.rm(u.dir, { recursive: true, force: true });
      result.uploadsDeleted++;
    }
    if (options.imagesDir) {
      const keep = new Set([...manifests].map(imageDirName));
      for (const entry of await readdirOrEmpty(options.imagesDir)) {
        // Dot folders are preparations in flight (they run outside the lock).
        if (keep.has(entry) || entry.startsWith('.')) continue;
        await fsp.rm(path.join(options.imagesDir, entry), { recursive: true, force: true });
        result.imagesDeleted++;
      }
    }
    return result;
  });
}

/** Every digest a stored manifest names (config, layers, index entries, subject), read loosely. */
async function namedDigests(manifestPath: string): Promise<string[]> {
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(manifestPath, 'utf8'));
  } catch {
    return [];
  }
  const out: string[] = [];
  const take = (d: unknown) => {
    if (typeof d === 'object' && d !== null && typeof (d as { digest?: unknown }).digest === 'string') out.push((d as { digest: string }).digest);
  };
  const m = json as { config?: unknown; layers?: unknown; manifests?: unknown; subject?: unknown };
  take(m.config);
  take(m.subject);
  for (const list of [m.layers, m.manifests]) if (Array.isArray(list)) list.forEach(take);
  return out;
}
