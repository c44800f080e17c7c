// Names the registry accepts, per the OCI distribution spec v1.1
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests):
// repository names, tags and digests. Every path the store builds from a
// request goes through these checks first, which is what keeps "..", absolute
// paths and odd unicode out of the data directory.

/** A repository name's path components, joined by "/" (spec regex, anchored). */
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
/** At most 128 characters. */
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** image-spec descriptor.md: algorithm ":" encoded. We store the registered algorithms only. */
const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** Clients limit host + "/" + name to 255 characters; we keep the name itself under 256. */
export const MAX_NAME_LENGTH = 255;

export type DigestAlgorithm = 'sha256' | 'sha512';

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function isTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function isDigest(digest: string): boolean {
  return DIGEST_RE.test(digest);
}

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

export function parseDigest(digest: string): ParsedDigest | undefined {
  if (!isDigest(digest)) return undefined;
  const [algorithm, hex] = digest.split(':') as [DigestAlgorithm, string];
  return { algorithm, hex };
}

/** A manifest reference is either a digest or a tag, never anything else. */
export type ManifestReference = { kind: 'digest'; digest: string } | { kind: 'tag'; tag: string };

export function parseManifestReference(ref: string): ManifestReference | undefined {
  if (ref.includes(':')) return isDigest(ref) ? { kind: 'digest', digest: ref } : undefined;
  return isTag(ref) ? { kind: 'tag', tag: ref } : undefined;
}

/**
 * An image reference as users type it: `name`, `name:tag` or `name@digest`
 * (name may carry a registry host, which the caller strips or keeps).
 */
export interface ImageReference {
  name: string;
  tag?: string;
  digest?: string;
}

/** Parses `name[:tag][@digest]`; the tag defaults to "latest" when neither is given. */
export function parseImageReference(ref: string): ImageReference | undefined {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isTag(tag)) return undefined;
  }
  if (!isRepositoryName(rest)) return undefined;
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { name: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

export function formatImageReference(ref: ImageReference): string {
  return `${ref.name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}
