// The console's image list: each image the host registry holds with its size
// counted as `flick images` counts it (root filesystem, config and manifest;
// the kernel and initrd every image shares apart) beside the container image it
// was built from (the dev.flick.source-image-bytes annotation), read from the
// manifest as pushed.
import fsp from 'node:fs/promises';
import { FLICK_INITRD, FLICK_KERNEL, ANNOTATION_SOURCE_IMAGE, ANNOTATION_SOURCE_IMAGE_BYTES, ANNOTATION_CREATED } from '../image/media-types.js';
import type { FlickImageSummary } from '../registry/image-store.js';
import type { ConsoleImageView } from './wire.js';

export interface ConsoleImageSources {
  list(): Promise<FlickImageSummary[]>;
  /** Where the manifest's bytes (as pushed) are: the registry's getManifest(...).path. */
  manifestPath(name: string, digest: string): Promise<string>;
}

interface ManifestShape {
  config?: { size?: number };
  layers?: Array<{ mediaType?: string; size?: number }>;
  annotations?: Record<string, string>;
}

export async function consoleImages(src: ConsoleImageSources): Promise<ConsoleImageView[]> {
  const list = await src.list();
  return Promise.all(
    list.map(async (i): Promise<ConsoleImageView> => {
      const base = { ref: i.ref, name: i.name, tag: i.tag, digest: i.digest, ready: i.ready };
      try {
        const bytes = await fsp.readFile(await src.manifestPath(i.name, i.digest));
        const m = JSON.parse(bytes.toString('utf8')) as ManifestShape;
        const layers = m.layers ?? [];
        const sum = (ls: typeof layers) => ls.reduce((n, l) => n + (l.size ?? 0), 0);
        const own = layers.filter((l) => l.mediaType !== FLICK_KERNEL && l.mediaType !== FLICK_INITRD);
        const fixed = (m.config?.size ?? 0) + bytes.length;
        const srcBytes = m.annotations?.[ANNOTATION_SOURCE_IMAGE_BYTES];
        return {
          ...base,
          size_bytes: sum(own) + fixed,
          total_bytes: sum(layers) + fixed,
          source_image: m.annotations?.[ANNOTATION_SOURCE_IMAGE] ?? null,
          source_image_bytes: srcBytes === undefined ? null : Number(srcBytes),
          created: m.annotations?.[ANNOTATION_CREATED] ?? null,
        };
      } catch {
        // Deleted between the list and the read: shown without sizes rather than failing the whole list.
        return { ...base, size_bytes: null, total_bytes: null, source_image: null, source_image_bytes: null, created: null };
      }
    }),
  );
}
