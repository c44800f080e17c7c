// The manifests the registry accepts, validated at the door: OCI image manifest
// and index (image-spec v1.1, https://github.com/opencontainers/image-spec/blob/main/manifest.md,
// .../image-index.md) and Docker's schema 2 manifest and manifest list
// (https://distribution.github.io/distribution/spec/manifest-v2-2/). The registry
// stores the client's exact bytes; these schemas only decide what the manifest
// names, so that nothing is accepted that points at content the registry lacks.
import { z } from 'zod';
import { DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2, OCI_INDEX, OCI_MANIFEST } from '../image/media-types.js';
import { isDigest } from './names.js';
import { RegistryError } from './registry-error.js';

/** The spec asks registries to take at least 4 MB; anything larger is refused with 413. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export const DescriptorSchema = z.object({
  mediaType: z.string().min(1).max(255),
  digest: z.string().refine(isDigest, 'not a sha256/sha512 digest'),
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  artifactType: z.string().optional(),
  platform: z
    .object({ architecture: z.string(), os: z.string(), variant: z.string().optional() })
    .passthrough()
    .optional(),
});
export type Descriptor = z.infer<typeof DescriptorSchema>;

const ImageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageManifest = z.infer<typeof ImageManifestSchema>;

const IndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ImageIndex = z.infer<typeof IndexSchema>;

export const MANIFEST_MEDIA_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST] as const;
export type ManifestMediaType = (typeof MANIFEST_MEDIA_TYPES)[number];

export type ParsedManifest =
  | { kind: 'image'; mediaType: ManifestMediaType; manifest: ImageManifest }
  | { kind: 'index'; mediaType: ManifestMediaType; manifest: ImageIndex };

function isManifestMediaType(t: string): t is ManifestMediaType {
  return (MANIFEST_MEDIA_TYPES as readonly string[]).includes(t);
}

/**
 * Parses manifest bytes sent with `contentType`. The manifest's own `mediaType`
 * wins when the Content-Type is missing or generic; a disagreement is refused,
 * since clients must set one to the other (spec: "Pushing Manifests").
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest invalid: the body is not JSON', { cause: err });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest invalid: the body is not a JSON object');
  }
  const declared = (json as { mediaType?: unknown }).mediaType;
  const header = contentType?.split(';')[0]?.trim().toLowerCase();
  const headerType = header && isManifestMediaType(header) ? header : undefined;
  if (typeof declared === 'string' && headerType !== undefined && declared !== headerType) {
    throw new RegistryError('MANIFEST_INVALID', `manifest invalid: mediaType ${declared} differs from Content-Type ${headerType}`);
  }
  let mediaType = headerType ?? (typeof declared === 'string' && isManifestMediaType(declared) ? declared : undefined);
  if (mediaType === undefined) {
    // An OCI manifest may omit mediaType; tell image from index by shape.
    const shape = json as Record<string, unknown>;
    if (Array.isArray(shape.manifests)) mediaType = OCI_INDEX;
    else if (shape.config !== undefined) mediaType = OCI_MANIFEST;
    else throw new RegistryError('MANIFEST_INVALID', 'manifest invalid: unsupported or missing media type');
  }
  if (mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST) {
    const r = IndexSchema.safeParse(json);
    if (!r.success) throw invalid(r.error);
    return { kind: 'index', mediaType, manifest: r.data };
  }
  const r = ImageManifestSchema.safeParse(json);
  if (!r.success) throw invalid(r.error);
  return { kind: 'image', mediaType, manifest: r.data };
}

function invalid(error: z.ZodError): RegistryError {
  const first = error.issues[0];
  const where = first ? first.path.join('.') || '(root)' : '(root)';
  return new RegistryError('MANIFEST_INVALID', `manifest invalid: ${where}: ${first?.message ?? 'bad shape'}`, {
    detail: error.issues.slice(0, 5).map((i) => ({ path: i.path.join('.'), message: i.message })),
  });
}

/** The blobs an image manifest needs in the repository (foreign layers with `urls` live elsewhere). */
export function referencedBlobs(m: ParsedManifest): string[] {
  if (m.kind !== 'image') return [];
  return [m.manifest.config, ...m.manifest.layers].filter((d) => d.urls === undefined || d.urls.length === 0).map((d) => d.digest);
}

/** The manifests an index needs in the repository. */
export function referencedManifests(m: ParsedManifest): string[] {
  return m.kind === 'index' ? m.manifest.manifests.map((d) => d.digest) : [];
}
