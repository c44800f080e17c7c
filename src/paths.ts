// Where Flick keeps things on a host. Everything is under one of two roots so
// that an operator (or a test) can move all of it with one variable.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(from: string): string {
  let dir = from;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'guest'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find Flick's package root above ${from}`);
    dir = parent;
  }
}

/** The repository / package root (the folder holding package.json and guest/). */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Build caches shared by every flickd on the host: guest kernels, init binaries. */
export function cacheDir(): string {
  return process.env.FLICK_CACHE_DIR ?? '/var/cache/flick';
}

/** Source files of the guest (kernel config fragment, init C source). */
export const GUEST_SOURCE_DIR = path.join(PACKAGE_ROOT, 'guest');
