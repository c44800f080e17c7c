// Where built Flick images live on the machine that builds them: one OCI image
// layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md:
// `oci-layout`, `index.json`, `blobs/<alg>/<hex>`) for all images. Each image is
// an entry of index.json whose `org.opencontainers.image.ref.name` annotation is
// the full reference `name:tag` (e.g. `myapp:latest`). `flick build` writes here,
// `flick push` reads from here and `flick pull` writes here.
import os from 'node:os';
import path from 'node:path';

export function localImageLayoutDir(): string {
  return process.env.FLICK_IMAGES_DIR ?? path.join(os.homedir(), '.local', 'share', 'flick', 'images');
}
