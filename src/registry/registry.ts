// The registry's core: blobs, uploads, manifests, tags and referrers of every
// repository, with no HTTP in sight (http-handler.ts turns requests into these
// calls). Semantics follow the OCI distribution spec v1.1
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md).
// Every call that makes content reachable (finishing an upload, a mount, a
// manifest) runs under the store lock held shared; garbage collection holds it
// exclusive, so it never sweeps what a push is in the middle of tying together.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { OCI_INDEX } from '../image/media-types.js';
import { BlobStore, type ContentRange } from './blob-store.js';
import { MAX_MANIFEST_BYTES, parseManifest, referencedBlobs, referencedManifests, type Descriptor, type ParsedManifest } from './manifest-schema.js';
import { parseManifestReference } from './names.js';
import { RegistryError } from './registry-error.js';
import { RepoStore } from './repo-store.js';
import { KeyedMutex, RwLock } from './rw-lock.js';

export interface RegistryConfig {
  /** flickd's data directory; the registry keeps everything under <dataDir>/registry. */
  dataDir: string;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  size: number;
  /** The manifest's bytes, exactly as pushed, live in the blob store here. */
  path: string;
}

export interface ManifestPushed {
  name: string;
  digest: string;
  tag: string | undefined;
  manifest: ParsedManifest;
}

export type ManifestListener = (event: ManifestPushed) => void;

export class Registry {
  readonly root: string;
  readonly blobs: BlobStore;
  readonly repos: RepoStore;
  readonly lock = new RwLock();
  #tags = new KeyedMutex();
  #listeners: ManifestListener[] = [];

  constructor(config: RegistryConfig) {
    this.root = path.join(config.dataDir, 'registry');
    this.blobs = new BlobStore(this.root);
    this.repos = new RepoStore(this.root);
  }

  async init(): Promise<void> {
    await this.blobs.init();
    await this.repos.init();
  }

  /** Called after each manifest is stored (the image cache prepares Flick images here). */
  onManifestPushed(listener: ManifestListener): void {
    this.#listeners.push(listener);
  }

  /** The size of a blob the repository holds; refreshes its age so GC spares it while a push that skipped it finishes. */
  async statBlob(name: string, digest: string): Promise<number> {
    const size = (await this.repos.hasBlobLink(name, digest)) ? await this.blobs.size(digest) : undefined;
    if (size === undefined) {
      // Manifests are blobs too: a client may fetch one through the blobs endpoint.
      const m = await this.repos.getManifest(name, digest);
      if (m) return m.size;
      throw new RegistryError('BLOB_UNKNOWN', `blob unknown to registry: ${digest} is not in repository "${name}"`, { detail: { digest } });
    }
    await this.blobs.touch(digest);
    return size;
  }

  blobPath(digest: string): string {
    return this.blobs.blobPath(digest);
  }

  startUpload(name: string): Promise<string> {
    this.repos.repoDir(name);
    return this.blobs.createUpload(name);
  }

  uploadOffset(name: string, id: string): Promise<number> {
    return this.blobs.uploadOffset(name, id);
  }

  appendUpload(name: string, id: string, body: Readable, range?: ContentRange): Promise<number> {
    return this.blobs.appendUpload(name, id, body, range);
  }

  async completeUpload(name: string, id: string, digest: string, body?: Readable, range?: ContentRange): Promise<void> {
    await this.lock.shared(async () => {
      await this.blobs.completeUpload(name, id, digest, body, range);
      await this.repos.linkBlob(name, digest);
    });
  }

  cancelUpload(name: string, id: string): Promise<void> {
    return this.blobs.cancelUpload(name, id);
  }

  /** Cross-repository mount: true when the blob was linked into `name` without an upload. */
  async mountBlob(name: string, from: string | undefined, digest: string): Promise<boolean> {
    return this.lock.shared(async () => {
      if (from !== undefined && !(await this.repos.hasBlobLink(from, digest))) return false;
      // `from` is optional (the spec lets a registry mount from anywhere it has the blob).
      if ((await this.blobs.size(digest)) === undefined) return false;
      await this.repos.linkBlob(name, digest);
      await this.blobs.touch(digest);
      return true;
    });
  }

  /** Removes the repository's link to a blob; the bytes go at the next collection if nothing else needs them. */
  async deleteBlob(name: string, digest: string): Promise<void> {
    await this.repos.requireRepository(name);
    if (!(await this.repos.unlinkBlob(name, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', `blob unknown to registry: ${digest} is not in repository "${name}"`);
    }
  }

  /**
   * Stores a manifest under a tag or its digest. Refuses garbage, oversized
   * manifests, and manifests naming blobs or manifests this repository lacks.
   */
  async putManifest(name: string, reference: string, bytes: Buffer, contentType: string | undefined): Promise<{ digest: string; subject?: string }> {
    this.repos.repoDir(name);
    const ref = parseManifestReference(reference);
    if (!ref) throw new RegistryError('MANIFEST_INVALID', `invalid reference "${reference}": use a tag or a digest`);
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new RegistryError('MANIFEST_INVALID', `manifest invalid: ${bytes.length} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`, { status: 413 });
    }
    const parsed = parseManifest(bytes, contentType);
    const digest = ref.kind === 'digest' && ref.digest.startsWith('sha512:') ? sha(bytes, 'sha512') : sha(bytes, 'sha256');
    if (ref.kind === 'digest' && ref.digest !== digest) {
      throw new RegistryError('DIGEST_INVALID', `digest invalid: the manifest's digest is ${digest}, not ${ref.digest}`);
    }
    await this.lock.shared(async () => {
      const missing: string[] = [];
      for (const d of referencedBlobs(parsed)) {
        if (!(await this.repos.hasBlobLink(name, d)) || (await this.blobs.size(d)) === undefined) missing.push(d);
      }
      for (const d of referencedManifests(parsed)) {
        if (!(await this.repos.getManifest(name, d))) missing.push(d);
      }
      if (missing.length > 0) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest references content unknown to registry: ${missing.join(', ')}: push those first`, {
          detail: { missing },
        });
      }
      await this.blobs.putBytes(digest, bytes);
      const m = parsed.manifest;
      await this.repos.putManifest(name, digest, {
        version: 1,
        mediaType: parsed.mediaType,
        size: bytes.length,
        ...(artifactTypeOf(parsed) !== undefined ? { artifactType: artifactTypeOf(parsed) } : {}),
        ...(m.annotations !== undefined ? { annotations: m.annotations } : {}),
      });
      if (m.subject) await this.repos.addReferrer(name, m.subject.digest, digest);
      if (ref.kind === 'tag') await this.#tags.run(`${name}:${ref.tag}`, () => this.repos.setTag(name, ref.tag, digest));
    });
    const event: ManifestPushed = { name, digest, tag: ref.kind === 'tag' ? ref.tag : undefined, manifest: parsed };
    for (const l of this.#listeners) l(event);
    return { digest, ...(parsed.manifest.subject ? { subject: parsed.manifest.subject.digest } : {}) };
  }

  /** Resolves a tag or digest to a stored manifest (404s name what is missing). */
  async getManifest(name: string, reference: string): Promise<StoredManifest> {
    const ref = parseManifestReference(reference);
    if (!ref) throw new RegistryError('MANIFEST_INVALID', `invalid reference "${reference}": use a tag or a digest`);
    await this.repos.requireRepository(name);
    const digest = ref.kind === 'digest' ? ref.digest : await this.repos.resolveTag(name, ref.tag);
    const record = digest === undefined ? undefined : await this.repos.getManifest(name, digest);
    if (digest === undefined || !record) {
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown to registry: "${name}:${reference}" does not exist`, { detail: { name, reference } });
    }
    return { digest, mediaType: record.mediaType, size: record.size, path: this.blobs.blobPath(digest) };
  }

  async deleteManifest(name: string, reference: string): Promise<void> {
    const ref = parseManifestReference(reference);
    if (!ref) throw new RegistryError('MANIFEST_INVALID', `invalid reference "${reference}": use a tag or a digest`);
    await this.repos.requireRepository(name);
    const found = ref.kind === 'tag' ? await this.repos.deleteTag(name, ref.tag) : await this.repos.deleteManifest(name, ref.digest);
    if (!found) throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown to registry: "${name}:${reference}" does not exist`);
  }

  async listTags(name: string): Promise<string[]> {
    await this.repos.requireRepository(name);
    return this.repos.listTags(name);
  }

  /** The referrers API's image index for `subject` (spec: "Listing Referrers"). */
  async referrers(name: string, subject: string, artifactType?: string): Promise<{ schemaVersion: 2; mediaType: string; manifests: Descriptor[] }> {
    const manifests: Descriptor[] = [];
    if (await this.repos.exists(name)) {
      for (const digest of await this.repos.listReferrers(name, subject)) {
        const r = await this.repos.getManifest(name, digest);
        if (!r) continue;
        if (artifactType !== undefined && r.artifactType !== artifactType) continue;
        manifests.push({
          mediaType: r.mediaType,
          digest,
          size: r.size,
          ...(r.artifactType !== undefined ? { artifactType: r.artifactType } : {}),
          ...(r.annotations !== undefined ? { annotations: r.annotations } : {}),
        });
      }
    }
    return { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
  }
}

function sha(bytes: Buffer, algorithm: 'sha256' | 'sha512'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** The spec's artifactType for referrers: the manifest's own, else (image manifests) the config's media type. */
function artifactTypeOf(m: ParsedManifest): string | undefined {
  if (m.manifest.artifactType) return m.manifest.artifactType;
  return m.kind === 'image' ? m.manifest.config.mediaType : undefined;
}
