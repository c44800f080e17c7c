// The host's limits, checked before work starts: a full disk, an exhausted
// address pool, too little RAM for one more VM, or an instance quota reached
// end in one named error with a message that says what to do, never in a crash
// halfway (a half-written blob, a VM that dies booting). The checks are pure
// functions of what they are given; the probes (statfs, /proc/meminfo) are
// separate so tests pass numbers.
import fs from 'node:fs';
import { FlickError } from '../errors.js';

export type LimitCode = 'DISK_FULL' | 'RAM_EXHAUSTED' | 'QUOTA_EXCEEDED' | 'NO_ADDRESS';

export class LimitError extends FlickError<LimitCode> {}

/** Below this much free space flickd refuses new writes (builds, pushes, instances): snapshots and logs still need room. */
export const MIN_FREE_DISK_BYTES = 512 * 2 ** 20;
/** RAM kept for the host itself and for QEMU's own overhead beyond guest RAM. */
export const RAM_RESERVE_BYTES = 512 * 2 ** 20;
/** What a VM costs beyond its guest RAM (QEMU, TCG's translation cache): measured 40-90 MB. */
export const VM_OVERHEAD_BYTES = 64 * 2 ** 20;

export interface DiskSpace {
  /** Bytes an unprivileged writer may still use. */
  freeBytes: number;
  totalBytes: number;
}

/** Free and total space of the file system holding `dir` (the nearest existing parent). */
export function diskSpace(dir: string): DiskSpace {
  let d = dir;
  while (!fs.existsSync(d) && d !== '/') d = d.replace(/\/[^/]*\/?$/, '') || '/';
  const s = fs.statfsSync(d);
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
}

/** MemAvailable from /proc/meminfo (what can be had without swapping), in bytes. */
export function memAvailable(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.POSITIVE_INFINITY;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${Math.round(n / 2 ** 20)} MiB`;
  return `${Math.round(n / 1024)} KiB`;
}

/** DISK_FULL unless `dir` has `needBytes` plus the minimum free space left. */
export function checkDisk(what: string, dir: string, needBytes: number, space: DiskSpace, minFree = MIN_FREE_DISK_BYTES): void {
  if (space.freeBytes >= needBytes + minFree) return;
  throw new LimitError(
    'DISK_FULL',
    `not enough disk space for ${what}: ${formatBytes(space.freeBytes)} free under ${dir}, ${formatBytes(needBytes + minFree)} needed ` +
      `(${formatBytes(minFree)} is kept free): remove images or instances you no longer need ('flick rm', 'flickd gc') or free space on that disk, then try again`,
    { kind: 'user', details: { dir, free_bytes: space.freeBytes, need_bytes: needBytes + minFree } },
  );
}

/**
 * True for a write that failed with ENOSPC or EDQUOT (its errno), also as the
 * cause of a wrapping error; false for a DISK_FULL already said. A tool that
 * reports it only in its output is recognised where that output is read
 * (src/image/exec.ts), never here from a message.
 */
export function isDiskFull(err: unknown): boolean {
  if (err instanceof LimitError) return false;
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

/** The DISK_FULL error for a write that failed with ENOSPC while doing `what`. */
export function diskFullError(err: unknown, what: string, dir?: string): LimitError {
  return new LimitError(
    'DISK_FULL',
    `${what} failed: the disk${dir ? ` holding ${dir}` : ''} is full (${firstLine(err)}): remove images or instances you no longer need ('flick rm', 'flickd gc') or free space on that disk, then try again`,
    { kind: 'user', cause: err, ...(dir ? { details: { dir } } : {}) },
  );
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.split('\n').find((l) => /no space|ENOSPC|EDQUOT|quota/i.test(l)) ?? text.split('\n')[0] ?? '';
  return line.length > 160 ? `${line.slice(0, 157)}...` : line.trim();
}

/** QUOTA_EXCEEDED if one more instance would pass `max` (undefined: no quota). */
export function checkQuota(name: string, count: number, max: number | undefined): void {
  if (max === undefined || count < max) return;
  throw new LimitError(
    'QUOTA_EXCEEDED',
    `cannot create instance "${name}": this host allows at most ${max} instance${max === 1 ? '' : 's'} (flickd --max-instances) and has ${count}: remove some with 'flick rm', or raise the quota`,
    { kind: 'user', details: { max, count } },
  );
}

/** NO_ADDRESS if every address of the pool is held by a VM (`used`: VMs with a process). */
export function checkAddresses(used: number, poolSize: number): void {
  if (used < poolSize) return;
  throw new LimitError(
    'NO_ADDRESS',
    `no free VM address on this host: all ${poolSize} addresses of its pool are held by running VMs: stop instances you do not need ('flick stop'), let idle ones scale to zero, or start flickd with a larger pool (FLICK_NET_POOL, e.g. 10.211.0.0/16)`,
    { kind: 'user', details: { used, pool_size: poolSize } },
  );
}

/** RAM_EXHAUSTED unless the host can give a VM of `memoryMb` its RAM and overhead and still keep its reserve. */
export function checkRam(name: string, memoryMb: number, availableBytes: number, reserveBytes = RAM_RESERVE_BYTES): void {
  const need = memoryMb * 2 ** 20 + VM_OVERHEAD_BYTES;
  if (availableBytes - reserveBytes >= need) return;
  throw new LimitError(
    'RAM_EXHAUSTED',
    `cannot start instance "${name}" with ${memoryMb} MiB: the host has ${formatBytes(Math.max(0, availableBytes))} of RAM available, keeps ${formatBytes(reserveBytes)} in reserve, ` +
      `and a VM of this size needs ${formatBytes(need)}: stop instances you do not need ('flick stop'), let idle ones scale to zero (--scale-to-zero policy=on), or ask for less memory (-m)`,
    { kind: 'user', details: { memory_mb: memoryMb, available_bytes: availableBytes, reserve_bytes: reserveBytes } },
  );
}
