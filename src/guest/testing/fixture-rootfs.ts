// Test fixtures for guest and VMM integration tests: tiny root filesystems
// holding one static program from guest/testing/ (see each .c file for what
// it does) plus a minimal /etc. Built with mkfs.erofs (or mksquashfs) and
// cached under <cache>/fixtures/<key>.<format>, keyed by the source, the
// compiler and this recipe, so a second call is a stat().
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { GUEST_SOURCE_DIR, cacheDir } from '../../paths.js';
import { InitError, staticCompiler } from '../init.js';

const RECIPE_VERSION = '1';
const run = promisify(execFile);

export type FixtureKind = 'hello-server' | 'exit-code' | 'prober';

export interface FixtureOptions {
  kind: FixtureKind;
  /** erofs (default) or squashfs, to exercise the init's fallback. */
  format?: 'erofs' | 'squashfs';
}

/** Where each fixture's program sits inside its rootfs (also reachable by name through PATH). */
export const FIXTURE_PROGRAM: Record<FixtureKind, string> = {
  'hello-server': '/bin/hello-server',
  'exit-code': '/bin/exit-code',
  prober: '/bin/prober',
};

const ETC: Record<string, string> = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  group: 'root:x:0:\nnogroup:x:65534:\n',
  // Left empty on purpose: the init writes /etc/hosts always, resolv.conf when empty.
  hosts: '',
  'resolv.conf': '',
};

/** Builds (or finds in the cache) a fixture rootfs image and returns its path. */
export async function buildFixtureRootfs(opts: FixtureOptions): Promise<string> {
  const format = opts.format ?? 'erofs';
  const source = path.join(GUEST_SOURCE_DIR, 'testing', `${opts.kind}.c`);
  const compiler = staticCompiler();
  const h = crypto.createHash('sha256');
  h.update(`recipe ${RECIPE_VERSION}\ncompiler ${compiler.identity}\nformat ${format}\n${JSON.stringify(ETC)}\n`);
  h.update(fs.readFileSync(source));
  const image = path.join(cacheDir(), 'fixtures', `${opts.kind}-${h.digest('hex').slice(0, 16)}.${format}`);
  if (fs.existsSync(image)) return image;

  await fsp.mkdir(path.dirname(image), { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(path.dirname(image), `.build-${opts.kind}-`));
  try {
    const root = path.join(scratch, 'root');
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root']) await fsp.mkdir(path.join(root, d), { recursive: true });
    await fsp.chmod(path.join(root, 'tmp'), 0o1777);
    for (const [name, text] of Object.entries(ETC)) await fsp.writeFile(path.join(root, 'etc', name), text);
    const program = path.join(root, FIXTURE_PROGRAM[opts.kind]);
    try {
      await run(compiler.path, ['-static', '-Os', '-s', '-Wall', '-o', program, source]);
    } catch (cause) {
      throw new InitError('INIT_BUILD_FAILED', `test fixture ${opts.kind}: compiling ${source} failed: ${(cause as Error).message}`, { cause });
    }
    const out = path.join(scratch, `image.${format}`);
    if (format === 'erofs') await run('mkfs.erofs', ['--quiet', '--all-root', '-T0', '-zlz4hc', out, root]);
    else await run('mksquashfs', [root, out, '-quiet', '-all-root', '-noappend', '-comp', 'xz', '-mkfs-time', '0']);
    // rename is atomic: a concurrent builder's identical image may win.
    await fsp.rename(out, image);
    return image;
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}
