// The guest init and the initramfs that carries it. guest/init/*.c is
// compiled static (musl-gcc, else gcc) and packed as /init into a newc cpio,
// the format the kernel unpacks into its rootfs at boot
// (https://docs.kernel.org/driver-api/early-userspace/buffer-format.html).
// Cached under <cache>/init/<key>/, where the key hashes the source, the
// compiler's identity and flags and this recipe, so a second run is a stat().
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { FlickError } from '../errors.js';
import { GUEST_SOURCE_DIR, cacheDir } from '../paths.js';

/** Bump when the cpio layout below changes. */
const RECIPE_VERSION = '1';
export const INIT_SOURCE_DIR = path.join(GUEST_SOURCE_DIR, 'init');

/** The init's sources (C files and headers), sorted so the cache key is stable. */
function initSources(): string[] {
  return fs
    .readdirSync(INIT_SOURCE_DIR)
    .filter((f) => f.endsWith('.c') || f.endsWith('.h'))
    .sort()
    .map((f) => path.join(INIT_SOURCE_DIR, f));
}
const CFLAGS = ['-static', '-Os', '-Wall', '-Wextra', '-Werror', '-s'];

export type InitErrorCode = 'INIT_COMPILER_MISSING' | 'INIT_BUILD_FAILED' | 'INIT_NOT_BUILT';
export class InitError extends FlickError<InitErrorCode> {}

export interface InitrdArtifact {
  key: string;
  /** The newc cpio to pass as QEMU's -initrd. */
  initrd: string;
  /** The static init binary inside it. */
  init: string;
}

/** Finds an executable on PATH without spawning anything. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface Compiler {
  path: string;
  identity: string;
}

/** musl-gcc gives a ~100 KB init; glibc's static binaries work too but are larger. */
export function staticCompiler(): Compiler {
  for (const name of ['musl-gcc', 'gcc']) {
    const p = findOnPath(name);
    if (!p) continue;
    // size+mtime of the driver stands in for its version: it changes with every package upgrade.
    const st = fs.statSync(p);
    return { path: p, identity: `${name}:${st.size}:${Math.floor(st.mtimeMs)}` };
  }
  throw new InitError('INIT_COMPILER_MISSING', "guest init: no C compiler (musl-gcc or gcc) on PATH: install musl-tools (scripts/setup.sh does this)");
}

/** The cache key and paths of the initrd the current source describes. */
export function initrdArtifact(compiler: Compiler = staticCompiler()): InitrdArtifact {
  const h = crypto.createHash('sha256');
  h.update(`recipe ${RECIPE_VERSION}\ncompiler ${compiler.identity}\nflags ${CFLAGS.join(' ')}\n`);
  for (const f of initSources()) h.update(`${path.basename(f)}\n`).update(fs.readFileSync(f));
  const key = h.digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'init', key);
  return { key, initrd: path.join(dir, 'initrd.cpio'), init: path.join(dir, 'init') };
}

// ---- newc cpio ----------------------------------------------------------------

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

export interface CpioEntry {
  name: string;
  /** File type and permission bits (S_IFDIR | 0o755, ...). */
  mode: number;
  data?: Buffer;
  /** Device number of a character device node. */
  rdev?: { major: number; minor: number };
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** A newc archive: uid/gid 0, mtime 0, so the same entries give the same bytes. */
export function encodeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const push = (e: CpioEntry, ino: number) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const isDir = (e.mode & 0o170000) === S_IFDIR;
    const header =
      '070701' +
      [ino, e.mode, 0, 0, isDir ? 2 : 1, 0, data.length, 0, 0, e.rdev?.major ?? 0, e.rdev?.minor ?? 0, name.length, 0].map(hex).join('');
    parts.push(Buffer.from(header, 'latin1'), name, Buffer.alloc(pad4(110 + name.length)), data, Buffer.alloc(pad4(data.length)));
  };
  entries.forEach((e, i) => push(e, i + 1));
  push({ name: 'TRAILER!!!', mode: 0 }, 0);
  return Buffer.concat(parts);
}

/**
 * The initramfs: /init and the mount points it uses before it has a root
 * filesystem. /dev/console must exist in the archive: the kernel opens it for
 * init's stdin/stdout/stderr before /init runs (and before init mounts
 * devtmpfs), else init starts with no console ("unable to open an initial console").
 */
export function initramfsEntries(init: Buffer): CpioEntry[] {
  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  return [
    dir('dev'),
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } },
    dir('proc'),
    dir('sys'),
    dir('mnt'),
    dir('mnt/lower'),
    dir('mnt/rw'),
    dir('mnt/root'),
    { name: 'init', mode: S_IFREG | 0o755, data: init },
  ];
}

// ---- build ----------------------------------------------------------------------

/** The cached initrd, or an InitError saying how to build it. Never builds. */
export function requireInitrd(): InitrdArtifact {
  const a = initrdArtifact();
  if (!fs.existsSync(a.initrd)) {
    throw new InitError(
      'INIT_NOT_BUILT',
      `guest init ${a.key} is not built (${a.initrd} missing): run 'bin/flick guest build' (scripts/setup.sh does this)`,
    );
  }
  return a;
}

/**
 * Compiles the init and writes the initrd unless the cache already holds
 * them. Safe to call from two processes at once: each builds in its own
 * scratch folder and the first rename wins.
 */
export async function buildInitrd(): Promise<InitrdArtifact> {
  const compiler = staticCompiler();
  const a = initrdArtifact(compiler);
  if (fs.existsSync(a.initrd)) return a;
  const dir = path.dirname(a.initrd);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(path.dirname(dir), `.build-${a.key}-`));
  await fsp.chmod(scratch, 0o755);
  try {
    const init = path.join(scratch, 'init');
    try {
      await promisify(execFile)(compiler.path, [...CFLAGS, '-o', init, ...initSources().filter((f) => f.endsWith('.c'))]);
    } catch (cause) {
      const stderr = (cause as { stderr?: string }).stderr ?? '';
      throw new InitError('INIT_BUILD_FAILED', `guest init: ${path.basename(compiler.path)} failed on ${INIT_SOURCE_DIR}:\n${stderr.trim()}`, { cause });
    }
    await fsp.writeFile(path.join(scratch, 'initrd.cpio'), encodeCpio(initramfsEntries(await fsp.readFile(init))));
    try {
      await fsp.rename(scratch, dir);
    } catch (err) {
      // Another builder won the race; its initrd is the same.
      if (!fs.existsSync(a.initrd)) throw err;
    }
    return a;
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}
