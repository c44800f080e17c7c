// The host side of a volume's disk: a qcow2 file holding ext4, made with
// e2fsprogs' mkfs.ext4 and QEMU's qemu-img (https://www.qemu.org/docs/master/tools/qemu-img.html,
// qcow2 format: https://www.qemu.org/docs/master/interop/qcow2.html). A clone is
// a qcow2 overlay whose backing file is a frozen *layer*: a few hundred KiB
// until written. Layers are read-only by convention: nothing opens them rw.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { promisify } from 'node:util';
import { VolumeError } from './volume-error.js';

const exec = promisify(execFile);

async function tool(cmd: string, args: string[], what: string): Promise<string> {
  try {
    return (await exec(cmd, args, { maxBuffer: 16 * 2 ** 20 })).stdout;
  } catch (cause) {
    const e = cause as NodeJS.ErrnoException & { stderr?: string };
    const why = e.code === 'ENOENT' ? `${cmd} is not installed: run 'bash scripts/setup.sh'` : (e.stderr || e.message).trim().split('\n').slice(-3).join('; ');
    throw new VolumeError('VOLUME_FAILED', `${what}: ${why}`, { cause });
  }
}

/**
 * Writes a new qcow2 disk of `sizeBytes` holding an empty ext4 at `out`: mkfs
 * on a sparse raw file beside it, then a sparse-aware convert (zero clusters
 * stay unallocated: ~1.3 MiB for 1 GiB). The raw file is removed on every path.
 * Inode tables are left uninitialized (lazy_itable_init): the guest mounts with
 * noinit_itable, so no background thread fills them in either.
 */
export async function makeExt4Qcow2(out: string, sizeBytes: number, label: string): Promise<void> {
  const raw = `${out}.raw`;
  try {
    const fh = await fsp.open(raw, 'wx', 0o600);
    await fh.truncate(sizeBytes);
    await fh.close();
    await tool('mkfs.ext4', ['-q', '-F', '-L', label.slice(0, 16), '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0', raw], `mkfs.ext4 of volume "${label}"`);
    await tool('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, out], `qemu-img convert of volume "${label}"`);
    await fsp.chmod(out, 0o600);
    await syncFile(out);
  } finally {
    await fsp.rm(raw, { force: true });
  }
}

/** A qcow2 overlay at `out` on top of `backing` (absolute path), same virtual size. */
export async function makeOverlay(out: string, backing: string, label: string): Promise<void> {
  await tool('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', out], `qemu-img create of volume "${label}"`);
  await fsp.chmod(out, 0o600);
  await syncFile(out);
}

/** `cp --sparse=always` (holes stay holes; reflinked where the filesystem can). */
export async function copySparse(from: string, to: string, label: string): Promise<void> {
  await tool('cp', ['--reflink=auto', '--sparse=always', from, to], `copying the disk of ${label}`);
  await fsp.chmod(to, 0o600);
}

/** The files a disk reads through: itself, then its backing files, top down. */
export async function backingChain(file: string): Promise<string[]> {
  // -U: a running QEMU holds its write lock on the head; reading the header is still safe.
  const out = await tool('qemu-img', ['info', '-U', '--backing-chain', '--output=json', file], `qemu-img info of ${file}`);
  const parsed = JSON.parse(out) as Array<{ filename: string }> | { filename: string };
  return (Array.isArray(parsed) ? parsed : [parsed]).map((i) => i.filename);
}

/** Bytes the file takes on the host disk (allocated blocks, not its apparent size). */
export function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

export async function syncFile(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
