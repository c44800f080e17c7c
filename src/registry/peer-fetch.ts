// Images across a cluster: a host asked to run an image it does not hold fetches
// it from a peer that does, over the peers' OCI distribution API (GET manifest,
// GET blobs; https://github.com/opencontainers/distribution-spec/blob/main/spec.md),
// with the cluster's token, into its own registry, then runs it as if it had been
// pushed here. Everything is digest-verified: the manifest against the digest
// the peer names (and the one asked for, when the reference is a digest), each
// blob by the upload's own check in the blob store. One fetch per reference at a
// time, however many creates ask at once.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describeError } from '../errors.js';
import { isFlickManifest, ImageStoreError, type FlickImage, type FlickImageSummary, type ImageStore } from './image-store.js';
import { MANIFEST_MEDIA_TYPES, parseManifest } from './manifest-schema.js';
import { formatImageReference, parseImageReference } from './names.js';
import type { Registry } from './registry.js';

export interface Peer {
  name: string;
  /** Base URL of the peer's registry (its API address). */
  url: string;
}

export interface PeerFetchConfig {
  local: ImageStore;
  registry: Registry;
  /** The peers up now (the cluster's host directory). */
  peers: () => Peer[];
  /** The cluster's token, sent to peers as Bearer. */
  token: string;
  log?: (line: string) => void;
  timeoutMs?: number;
}

export class PeerFetchingImageStore implements ImageStore {
  readonly #c: PeerFetchConfig;
  readonly #inflight = new Map<string, Promise<FlickImage>>();

  constructor(config: PeerFetchConfig) {
    this.#c = config;
  }

  list(): Promise<FlickImageSummary[]> {
    return this.#c.local.list();
  }

  async resolve(ref: string): Promise<FlickImage> {
    try {
      return await this.#c.local.resolve(ref);
    } catch (err) {
      if (!(err instanceof ImageStoreError && err.code === 'IMAGE_NOT_FOUND')) throw err;
      const running = this.#inflight.get(ref);
      if (running) return running;
      const p = this.#fetchFromPeers(ref, err).finally(() => this.#inflight.delete(ref));
      this.#inflight.set(ref, p);
      return p;
    }
  }

  async #fetchFromPeers(ref: string, notHere: ImageStoreError): Promise<FlickImage> {
    const parsed = parseImageReference(ref)!; // local.resolve already refused an invalid reference
    const reference = parsed.digest ?? parsed.tag ?? 'latest';
    const tried: string[] = [];
    for (const peer of this.#c.peers()) {
      const started = Date.now();
      try {
        const found = await this.#fetchFrom(peer, parsed.name, reference);
        if (!found) {
          tried.push(`${peer.name}: not there`);
          continue;
        }
        this.#c.log?.(`images: fetched ${formatImageReference(parsed)} (${found.digest}, ${found.bytes} bytes) from ${peer.name} in ${Date.now() - started} ms`);
        return await this.#c.local.resolve(ref);
      } catch (err) {
        tried.push(`${peer.name}: ${describeError(err)}`);
      }
    }
    if (tried.length === 0) throw notHere;
    throw new ImageStoreError('IMAGE_NOT_FOUND', `image "${formatImageReference(parsed)}" is on no host of the cluster (${tried.join('; ')}): push it with 'flick push ${formatImageReference(parsed)}'`, {
      kind: 'user',
      cause: notHere,
    });
  }

  /** Copies name:reference from `peer` into the local registry; undefined if the peer lacks it. */
  async #fetchFrom(peer: Peer, name: string, reference: string): Promise<{ digest: string; bytes: number } | undefined> {
    const get = (path: string, accept?: string) =>
      fetch(`${peer.url}/v2/${name}/${path}`, {
        headers: { authorization: `Bearer ${this.#c.token}`, ...(accept ? { accept } : {}) },
        signal: AbortSignal.timeout(this.#c.timeoutMs ?? 120_000),
      });
    const res = await get(`manifests/${reference}`, MANIFEST_MEDIA_TYPES.join(', '));
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) throw new Error(`GET manifest answered ${res.status}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const named = res.headers.get('docker-content-digest');
    if ((reference.includes(':') && reference !== digest) || (named && named !== digest)) {
      throw new ImageStoreError('IMAGE_INVALID', `the manifest from ${peer.name} has digest ${digest}, not ${reference.includes(':') ? reference : named}: refused`);
    }
    const parsed = parseManifest(bytes, res.headers.get('content-type') ?? undefined);
    if (parsed.kind !== 'image' || !isFlickManifest(parsed.manifest)) throw new ImageStoreError('IMAGE_INVALID', `"${name}:${reference}" on ${peer.name} is not a Flick image`, { kind: 'user' });
    let total = bytes.length;
    const registry = this.#c.registry;
    for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
      if (await registry.mountBlob(name, undefined, blob.digest)) continue; // already here (another repository)
      const b = await get(`blobs/${blob.digest}`);
      if (b.status !== 200 || !b.body) throw new Error(`GET blob ${blob.digest} answered ${b.status}`);
      const id = await registry.startUpload(name);
      try {
        // The blob store hashes what arrived and refuses it unless it matches the digest.
        await registry.completeUpload(name, id, blob.digest, Readable.fromWeb(b.body as Parameters<typeof Readable.fromWeb>[0]));
      } catch (err) {
        await registry.cancelUpload(name, id).catch(() => {});
        throw err;
      }
      total += blob.size;
    }
    // The manifest last, under the reference asked for: its blobs are all here now.
    await registry.putManifest(name, reference, bytes, parsed.mediaType);
    return { digest, bytes: total };
  }
}
