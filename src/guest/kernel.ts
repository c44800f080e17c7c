// The guest kernel: Debian's linux-source-6.1 built with `make tinyconfig` plus
// Flick's fragment (guest/kernel/flick.config) into a PVH-bootable vmlinux,
// after applying guest/kernel/patches/*.patch (in name order) to the source.
// Cached under <cache>/kernel/<key>/vmlinux, where the key hashes the source
// tarball's identity, the fragment and this recipe's version, so a second run
// is a stat() and a change to the fragment builds a new kernel beside the old.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FlickError } from '../errors.js';
import { GUEST_SOURCE_DIR, cacheDir } from '../paths.js';

/** Bump when the build steps below change in a way that changes the output. */
const RECIPE_VERSION = '1';
const SOURCE_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
export const KERNEL_FRAGMENT = path.join(GUEST_SOURCE_DIR, 'kernel', 'flick.config');
const PATCH_DIR = path.join(GUEST_SOURCE_DIR, 'kernel', 'patches');

function kernelPatches(): string[] {
  try {
    return fs.readdirSync(PATCH_DIR).filter((f) => f.endsWith('.patch')).sort().map((f) => path.join(PATCH_DIR, f));
  } catch {
    return [];
  }
}

export type KernelErrorCode = 'KERNEL_SOURCE_MISSING' | 'KERNEL_CONFIG_REJECTED' | 'KERNEL_BUILD_FAILED' | 'KERNEL_NOT_BUILT';
export class KernelError extends FlickError<KernelErrorCode> {}

export interface KernelArtifact {
  key: string;
  vmlinux: string;
  config: string;
}

function sourceIdentity(): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(SOURCE_TARBALL);
  } catch (cause) {
    throw new KernelError(
      'KERNEL_SOURCE_MISSING',
      `guest kernel source ${SOURCE_TARBALL} is missing: install it with 'apt-get install linux-source-6.1' (scripts/setup.sh does this)`,
      { cause },
    );
  }
  // The Debian package version names the source exactly; size+mtime is a cheap stand-in that changes with it.
  return `${path.basename(SOURCE_TARBALL)}:${st.size}:${Math.floor(st.mtimeMs)}`;
}

/** The cache key and paths of the kernel the current fragment describes. */
export function kernelArtifact(): KernelArtifact {
  const h = crypto.createHash('sha256');
  h.update(`recipe ${RECIPE_VERSION}\n`);
  h.update(`source ${sourceIdentity()}\n`);
  h.update(fs.readFileSync(KERNEL_FRAGMENT));
  for (const p of kernelPatches()) h.update(`\npatch ${path.basename(p)}\n`).update(fs.readFileSync(p));
  const key = h.digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'kernel', key);
  return { key, vmlinux: path.join(dir, 'vmlinux'), config: path.join(dir, 'config') };
}

/** The built kernel, or a KernelError saying how to build it. Never builds. */
export function requireKernel(): KernelArtifact {
  const k = kernelArtifact();
  if (!fs.existsSync(k.vmlinux)) {
    throw new KernelError(
      'KERNEL_NOT_BUILT',
      `guest kernel ${k.key} is not built (${k.vmlinux} missing): run 'bash scripts/setup.sh' or 'bin/flick guest build'`,
    );
  }
  return k;
}

/** The `CONFIG_X=y` lines of the fragment, which must all survive olddefconfig. */
function requiredOptions(fragment: string): string[] {
  return fragment
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^CONFIG_[A-Z0-9_]+=/.test(l));
}

function run(cmd: string, args: string[], cwd: string, log: fs.WriteStream, onLine?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      if (!onLine) return;
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}`));
    });
  });
}

export interface BuildKernelOptions {
  /** Called with short progress lines ("CC kernel/fork.o  [412/1530]"). */
  progress?: (line: string) => void;
  jobs?: number;
}

/**
 * Builds the kernel unless the cache already holds it. Safe to call from two
 * processes at once: each builds in its own scratch folder and the first
 * rename wins.
 */
export async function buildKernel(opts: BuildKernelOptions = {}): Promise<KernelArtifact> {
  const k = kernelArtifact();
  if (fs.existsSync(k.vmlinux)) return k;
  const progress = opts.progress ?? (() => {});
  const dir = path.dirname(k.vmlinux);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(path.dirname(dir), `.build-${k.key}-`));
  const logPath = path.join(scratch, 'build.log');
  const failedLog = path.join(path.dirname(dir), `failed-${k.key}.log`);
  const log = fs.createWriteStream(logPath);
  try {
    progress(`guest kernel ${k.key}: unpacking ${SOURCE_TARBALL}`);
    await run('tar', ['-xJf', SOURCE_TARBALL, '-C', scratch, '--strip-components=1'], scratch, log);
    for (const p of kernelPatches()) {
      progress(`guest kernel: applying ${path.basename(p)}`);
      await run('patch', ['-p1', '--forward', '--batch', '-i', p], scratch, log);
    }
    progress('guest kernel: configuring (tinyconfig + guest/kernel/flick.config)');
    await run('make', ['tinyconfig'], scratch, log);
    await run('scripts/kconfig/merge_config.sh', ['-m', '.config', KERNEL_FRAGMENT], scratch, log);
    await run('make', ['olddefconfig'], scratch, log);
    const final = new Set((await fsp.readFile(path.join(scratch, '.config'), 'utf8')).split('\n'));
    const missing = requiredOptions(await fsp.readFile(KERNEL_FRAGMENT, 'utf8')).filter((o) => !final.has(o));
    if (missing.length > 0) {
      throw new KernelError(
        'KERNEL_CONFIG_REJECTED',
        `guest kernel config: Kconfig dropped ${missing.join(', ')} (a dependency is missing): add the dependency to guest/kernel/flick.config`,
      );
    }
    const jobs = opts.jobs ?? os.cpus().length;
    let compiled = 0;
    const started = Date.now();
    progress(`guest kernel: compiling vmlinux with ${jobs} jobs (about 6-12 minutes on 2 cores)`);
    let lastReport = 0;
    await run('make', [`-j${jobs}`, 'vmlinux'], scratch, log, (line) => {
      if (!/^\s+(CC|AS|LD|AR)\s/.test(line)) return;
      compiled++;
      const now = Date.now();
      if (now - lastReport > 5000) {
        lastReport = now;
        progress(`guest kernel: ${compiled} objects, ${Math.round((now - started) / 1000)} s: ${line.trim()}`);
      }
    });
    const stage = path.join(scratch, 'out');
    await fsp.mkdir(stage);
    await fsp.copyFile(path.join(scratch, 'vmlinux'), path.join(stage, 'vmlinux'));
    await fsp.copyFile(path.join(scratch, '.config'), path.join(stage, 'config'));
    try {
      await fsp.rename(stage, dir);
    } catch (err) {
      // Another builder won the race; its kernel is the same.
      if (!fs.existsSync(k.vmlinux)) throw err;
    }
    progress(`guest kernel: built ${k.vmlinux} in ${Math.round((Date.now() - started) / 1000)} s`);
    return k;
  } catch (err) {
    if (err instanceof KernelError) throw err;
    throw new KernelError('KERNEL_BUILD_FAILED', `guest kernel build failed: ${(err as Error).message}; the full log is in ${failedLog}`, {
      cause: err,
    });
  } finally {
    log.end();
    // Keep the log of a failed build for the user; drop the 1 GB source tree either way.
    if (!fs.existsSync(k.vmlinux)) await fsp.copyFile(logPath, failedLog).catch(() => {});
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}
