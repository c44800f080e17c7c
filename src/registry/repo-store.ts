// What each repository holds, under <data-dir>/registry/repos/<name>/: links to
// the blobs pushed to it (_layers/<alg>/<hex>), its manifests (_manifests/<alg>/<hex>,
// holding the media type; the bytes are a blob), tags (_tags/<tag>, holding a
// digest) and referrers (_referrers/<alg>-<hex>/<alg>-<hex>). Names and tags are
// validated before they become paths, and "_" never starts a valid name component,
// so these folders cannot collide with a nested repository.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { exists, readdirOrEmpty, writeFileAtomic } from './fs-atomic.js';
import { isDigest, isRepositoryName, isTag, parseDigest } from './names.js';
import { RegistryError } from './registry-error.js';

const ManifestRecordSchema = z.object({
  version: z.literal(1),
  mediaType: z.string(),
  size: z.number().int().nonnegative(),
  artifactType: z.string().optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ManifestRecord = z.infer<typeof ManifestRecordSchema>;

export class RepoStore {
  readonly reposDir: string;

  constructor(root: string) {
    this.reposDir = path.join(root, 'repos');
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.reposDir, { recursive: true });
  }

  repoDir(name: string): string {
    if (!isRepositoryName(name)) throw new RegistryError('NAME_INVALID', `invalid repository name "${name}": use lowercase letters, digits and . _ - / separators`);
    return path.join(this.reposDir, ...name.split('/'));
  }

  async exists(name: string): Promise<boolean> {
    const dir = this.repoDir(name);
    return (await exists(path.join(dir, '_layers'))) || (await exists(path.join(dir, '_manifests')));
  }

  async requireRepository(name: string): Promise<void> {
    if (!(await this.exists(name))) {
      throw new RegistryError('NAME_UNKNOWN', `repository name not known to registry: "${name}" has never been pushed`, { detail: { name } });
    }
  }

  #digestPath(name: string, kind: '_layers' | '_manifests', digest: string): string {
    const d = parseDigest(digest);
    if (!d) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${digest}" is not a sha256 or sha512 digest`);
    return path.join(this.repoDir(name), kind, d.algorithm, d.hex);
  }

  /** Records that `name` holds the blob (an upload or mount finished); refreshes its age for GC. */
  async linkBlob(name: string, digest: string): Promise<void> {
    const link = this.#digestPath(name, '_layers', digest);
    await fsp.mkdir(path.dirname(link), { recursive: true });
    const now = new Date();
    await fsp.writeFile(link, '');
    await fsp.utimes(link, now, now);
  }

  async hasBlobLink(name: string, digest: string): Promise<boolean> {
    return exists(this.#digestPath(name, '_layers', digest));
  }

  async unlinkBlob(name: string, digest: string): Promise<boolean> {
    const link = this.#digestPath(name, '_layers', digest);
    if (!(await exists(link))) return false;
    await fsp.rm(link, { force: true });
    return true;
  }

  async putManifest(name: string, digest: string, record: ManifestRecord): Promise<void> {
    await writeFileAtomic(this.#digestPath(name, '_manifests', digest), JSON.stringify(record));
  }

  async getManifest(name: string, digest: string): Promise<ManifestRecord | undefined> {
    try {
      const raw = await fsp.readFile(this.#digestPath(name, '_manifests', digest), 'utf8');
      return ManifestRecordSchema.parse(JSON.parse(raw));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async deleteManifest(name: string, digest: string): Promise<boolean> {
    const p = this.#digestPath(name, '_manifests', digest);
    if (!(await exists(p))) return false;
    await fsp.rm(p, { force: true });
    for (const tag of await this.listTags(name)) {
      if ((await this.resolveTag(name, tag)) === digest) await this.deleteTag(name, tag);
    }
    return true;
  }

  async listManifests(name: string): Promise<string[]> {
    const out: string[] = [];
    const base = path.join(this.repoDir(name), '_manifests');
    for (const alg of await readdirOrEmpty(base)) {
      for (const hex of await readdirOrEmpty(path.join(base, alg))) {
        const digest = `${alg}:${hex}`;
        if (isDigest(digest)) out.push(digest);
      }
    }
    return out;
  }

  #tagPath(name: string, tag: string): string {
    if (!isTag(tag)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${tag}": tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`);
    return path.join(this.repoDir(name), '_tags', tag);
  }

  async setTag(name: string, tag: string, digest: string): Promise<void> {
    await writeFileAtomic(this.#tagPath(name, tag), digest);
  }

  async resolveTag(name: string, tag: string): Promise<string | undefined> {
    try {
      const digest = (await fsp.readFile(this.#tagPath(name, tag), 'utf8')).trim();
      return isDigest(digest) ? digest : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async deleteTag(name: string, tag: string): Promise<boolean> {
    const p = this.#tagPath(name, tag);
    if (!(await exists(p))) return false;
    await fsp.rm(p, { force: true });
    return true;
  }

  /** Tags in ASCII order, as the spec's tag listing requires. */
  async listTags(name: string): Promise<string[]> {
    const tags = (await readdirOrEmpty(path.join(this.repoDir(name), '_tags'))).filter(isTag);
    return tags.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  #referrerDir(name: string, subject: string): string {
    const d = parseDigest(subject);
    if (!d) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${subject}" is not a sha256 or sha512 digest`);
    return path.join(this.repoDir(name), '_referrers', `${d.algorithm}-${d.hex}`);
  }

  async addReferrer(name: string, subject: string, referrer: string): Promise<void> {
    const dir = this.#referrerDir(name, subject);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, referrer.replace(':', '-')), '');
  }

  async listReferrers(name: string, subject: string): Promise<string[]> {
    const names = await readdirOrEmpty(this.#referrerDir(name, subject));
    return names.map((n) => n.replace('-', ':')).filter(isDigest);
  }

  /** Every repository name in the registry (walks nested folders). */
  async listRepositories(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string[]): Promise<void> => {
      for (const entry of await readdirOrEmpty(dir)) {
        if (entry.startsWith('_')) continue;
        const sub = path.join(dir, entry);
        const name = [...prefix, entry].join('/');
        if (!isRepositoryName(name)) continue;
        if ((await exists(path.join(sub, '_layers'))) || (await exists(path.join(sub, '_manifests')))) out.push(name);
        await walk(sub, [...prefix, entry]);
      }
    };
    await walk(this.reposDir, []);
    return out.sort();
  }

  /** Blob links of a repository with their age, for garbage collection. */
  async listBlobLinks(name: string): Promise<Array<{ digest: string; mtimeMs: number }>> {
    const out: Array<{ digest: string; mtimeMs: number }> = [];
    const base = path.join(this.repoDir(name), '_layers');
    for (const alg of await readdirOrEmpty(base)) {
      for (const hex of await readdirOrEmpty(path.join(base, alg))) {
        const digest = `${alg}:${hex}`;
        if (!isDigest(digest)) continue;
        const st = await fsp.stat(path.join(base, alg, hex)).catch(() => undefined);
        if (st) out.push({ digest, mtimeMs: st.mtimeMs });
      }
    }
    return out;
  }
}
