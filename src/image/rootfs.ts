// Stages a root filesystem for packing: either all of the built image or only
// a KeepSet, copied with tar so owners, modes and symlinks survive, then fixed
// up for the guest (buildah's RUN mounts leave empty files behind).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { KeepSet } from './closure.js';
import { run, runTool } from './exec.js';
import { isElf } from './elf.js';

/** Where `flick build` bind-mounts host files into RUN steps; an empty leftover is removed. */
export const RUN_MOUNT_TARGETS = ['/etc/ssl/certs/ca-certificates.crt', '/etc/npmrc', '/root/.npmrc', '/usr/etc/npmrc'];
/** Mount points the guest init needs to exist. */
const GUEST_DIRS = ['proc', 'sys', 'dev', 'tmp', 'run', 'etc'];

async function tarPipe(root: string, stage: string, listArgs: string[], input?: string): Promise<void> {
  // Two tars through a shell pipe: the kernel moves the bytes, node only waits.
  const create = ['tar', '-C', root, '--numeric-owner', '--exclude=./dev/*', ...listArgs, '-cf', '-'].map(shellQuote).join(' ');
  const extract = ['tar', '-C', stage, '--numeric-owner', '-xpf', '-'].map(shellQuote).join(' ');
  await run('bash', ['-c', `set -o pipefail; ${create} | ${extract}`], input === undefined ? {} : { input });
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Copies the whole image root into `stage`. */
export async function stageFull(root: string, stage: string): Promise<void> {
  await tarPipe(root, stage, ['.']);
  await fixUp(stage);
}

/** Copies only the kept paths into `stage` (parents first, so their modes are kept too). */
export async function stageKept(root: string, stage: string, keep: KeepSet): Promise<void> {
  const list = [...keep.paths].sort().map((p) => `.${p}`);
  await tarPipe(root, stage, ['--no-recursion', '--null', '-T', '-'], list.join('\0') + '\0');
  await fixUp(stage);
}

async function fixUp(stage: string): Promise<void> {
  for (const t of RUN_MOUNT_TARGETS) {
    const p = path.join(stage, t);
    const st = await fsp.lstat(p).catch(() => undefined);
    if (st?.isFile() && st.size === 0) await fsp.rm(p);
  }
  for (const d of GUEST_DIRS) await fsp.mkdir(path.join(stage, d), { recursive: true, mode: d === 'tmp' ? 0o1777 : 0o755 });
  // buildah leaves /etc/hosts empty; the init rewrites it with the hostname, but a
  // read of the image alone should still resolve localhost.
  const hosts = path.join(stage, 'etc/hosts');
  const hst = await fsp.lstat(hosts).catch(() => undefined);
  if (!hst || (hst.isFile() && hst.size === 0)) await fsp.writeFile(hosts, '127.0.0.1\tlocalhost\n::1\tlocalhost\n');
  // An empty resolv.conf is a build leftover; without it the init writes the guest's own.
  const resolv = path.join(stage, 'etc/resolv.conf');
  const rst = await fsp.lstat(resolv).catch(() => undefined);
  if (rst?.isFile() && rst.size === 0) await fsp.rm(resolv);
}

/**
 * Strips symbol tables and debug info from large ELF files in `stage`
 * (node ships with debug info: 98.9 MB → 86.3 MB). Only code the loader never
 * reads goes; dynamic symbols stay, so the boot check still proves it runs.
 */
export async function stripLargeElfs(stage: string, minBytes = 1 << 20): Promise<number> {
  let saved = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await fsp.stat(p);
        if (st.size < minBytes) continue;
        const fd = fs.openSync(p, 'r');
        const head = Buffer.alloc(4);
        fs.readSync(fd, head, 0, 4, 0);
        fs.closeSync(fd);
        if (!isElf(head)) continue;
        const r = await runTool('strip', ['--strip-unneeded', '-p', p]);
        if (r.code !== 0) continue; // not a file strip understands: keep it as it is
        const after = await fsp.stat(p);
        await fsp.chown(p, st.uid, st.gid);
        await fsp.chmod(p, st.mode & 0o7777);
        saved += st.size - after.size;
      }
    }
  };
  await walk(stage);
  return saved;
}

/** Total bytes of regular files under `dir` (what the root filesystem holds before compression). */
export async function treeBytes(dir: string): Promise<number> {
  const r = await run('du', ['-sb', '--apparent-size', dir]);
  return Number(r.stdout.split(/\s/)[0]);
}
