// Test support (not product code): writes small OCI image layouts by hand, so
// registry tests need no network and no container engine to make images.
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import tar from 'tar-stream';
import { ANNOTATION_REF_NAME, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST } from '../image/media-types.js';
import type { Descriptor } from './manifest-schema.js';

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** An uncompressed tar holding the given files (so its digest is also its diff_id). */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644, mtime: new Date(0) }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

export interface TestImage {
  layers: Array<{ mediaType?: string; data: Buffer }>;
  config?: Record<string, unknown>;
  artifactType?: string;
  architecture?: string;
}

async function putBlob(dir: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const file = path.join(dir, 'blobs', 'sha256', digest.slice(7));
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
  return digest;
}

/** Writes an image's blobs into the layout at `dir`; returns its manifest descriptor (not yet in index.json). */
export async function writeImage(dir: string, image: TestImage): Promise<Descriptor & { manifest: Buffer }> {
  const layers: Descriptor[] = [];
  for (const l of image.layers) layers.push({ mediaType: l.mediaType ?? OCI_LAYER_TAR, digest: await putBlob(dir, l.data), size: l.data.length });
  const config = Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/app'], Env: ['PATH=/bin'], ...image.config },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      ...(image.artifactType ? { artifactType: image.artifactType } : {}),
      config: { mediaType: OCI_CONFIG, digest: await putBlob(dir, config), size: config.length },
      layers,
    }),
  );
  return { mediaType: OCI_MANIFEST, digest: await putBlob(dir, manifest), size: manifest.length, manifest };
}

/** Writes an index of the given manifests (with platforms) into the layout. */
export async function writeIndex(dir: string, manifests: Array<Descriptor & { architecture: string }>): Promise<Descriptor> {
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: manifests.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { architecture: m.architecture, os: 'linux' } })),
    }),
  );
  return { mediaType: OCI_INDEX, digest: await putBlob(dir, index), size: index.length };
}

/** Names descriptors in the layout's index.json (`refs`: ref name → descriptor). */
export async function writeLayoutIndex(dir: string, refs: Record<string, Descriptor>): Promise<void> {
  await fsp.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const manifests = Object.entries(refs).map(([ref, d]) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: { [ANNOTATION_REF_NAME]: ref } }));
  await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
}
