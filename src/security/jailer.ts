// Builds (once per host, cached by content) the tiny static helper that starts
// a jailed VMM: jailer.c beside this file. Cached under <cache>/jailer/<key>/.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { FlickError } from '../errors.js';
import { staticCompiler } from '../guest/init.js';
import { PACKAGE_ROOT, cacheDir } from '../paths.js';

export type JailerErrorCode = 'JAILER_BUILD_FAILED';
export class JailerError extends FlickError<JailerErrorCode> {}

const run = promisify(execFile);
export const JAILER_SOURCE = path.join(PACKAGE_ROOT, 'src', 'security', 'jailer.c');
const CFLAGS = ['-static', '-Os', '-s', '-Wall', '-Werror'];

let built: Promise<string> | undefined;

/** The path of the built helper, building it on first use in this process if the cache lacks it. */
export function ensureJailer(): Promise<string> {
  built ??= build();
  built.catch(() => (built = undefined));
  return built;
}

async function build(): Promise<string> {
  const compiler = staticCompiler();
  const h = crypto.createHash('sha256');
  h.update(`compiler ${compiler.identity}\nflags ${CFLAGS.join(' ')}\n`).update(fs.readFileSync(JAILER_SOURCE));
  const binary = path.join(cacheDir(), 'jailer', h.digest('hex').slice(0, 16), 'flick-jailer');
  if (fs.existsSync(binary)) return binary;
  await fsp.mkdir(path.dirname(binary), { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    await run(compiler.path, [...CFLAGS, '-o', tmp, JAILER_SOURCE]);
    await fsp.chmod(tmp, 0o755);
    // rename is atomic: a concurrent builder's identical binary may win.
    await fsp.rename(tmp, binary);
    return binary;
  } catch (cause) {
    await fsp.rm(tmp, { force: true });
    throw new JailerError('JAILER_BUILD_FAILED', `building the VMM jailer from ${JAILER_SOURCE} failed: ${(cause as Error).message}; install musl-tools (scripts/setup.sh)`, { cause });
  }
}
