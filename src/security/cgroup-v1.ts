// One cgroup (v1) per VMM process in the cpu, memory and pids hierarchies,
// with the limits that follow from the VM's size. Kernel interface:
// https://docs.kernel.org/admin-guide/cgroup-v1/ (cpu: sched-bwc, memory,
// pids). Groups nest under flickd's own group in each hierarchy, so a limit an
// operator puts on flickd's service (or a test harness on its processes) still
// bounds every VM. A group is created empty with its limits; flickd moves the
// VMM in by writing its pid to `cgroup.procs` (see jail.ts for when).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FlickError } from '../errors.js';

export type CgroupErrorCode = 'CGROUP_UNAVAILABLE' | 'CGROUP_SETUP_FAILED';
export class CgroupError extends FlickError<CgroupErrorCode> {}

export const CONTROLLERS = ['cpu', 'memory', 'pids'] as const;
export type Controller = (typeof CONTROLLERS)[number];

export interface CgroupLimits {
  /** memory.limit_in_bytes: guest RAM + the VMM's own memory, with headroom. */
  memoryBytes: number;
  /**
   * cpu.cfs_quota_us per cpu.cfs_period_us: the VM's vCPUs' worth of host CPU
   * time plus half a CPU for QEMU's own threads (device emulation, loading a
   * snapshot on a wake), so the main loop never waits behind a busy vCPU's quota.
   */
  cpuQuotaUs: number;
  cpuPeriodUs: number;
  /** cpu.shares: weight under contention, 1024 per vCPU. */
  cpuShares: number;
  /** pids.max: QEMU's threads (vCPUs, RCU, main loop, the block thread pool of up to 64). */
  pidsMax: number;
}

/** QEMU's own memory besides guest RAM and the TCG translation buffer (measured ~35-45 MiB; doubled). */
export const VMM_OVERHEAD_MB = 96;
export const CPU_PERIOD_US = 100_000;
/** QEMU's own threads' share of the quota, beside the vCPUs. */
export const VMM_CPU_US = 50_000;
export const PIDS_MAX = 128;

/** The limits of a VM with `memoryMb` of RAM and `vcpus`, whose TCG translation buffer is `tbSizeMb` (0 under KVM). */
export function limitsFor(memoryMb: number, vcpus: number, tbSizeMb: number): CgroupLimits {
  return {
    memoryBytes: (memoryMb + tbSizeMb + VMM_OVERHEAD_MB) * 1024 * 1024,
    cpuQuotaUs: vcpus * CPU_PERIOD_US + VMM_CPU_US,
    cpuPeriodUs: CPU_PERIOD_US,
    cpuShares: 1024 * vcpus,
    pidsMax: PIDS_MAX,
  };
}

/** What a limit becomes: file name and value, per controller. */
export function limitFiles(l: CgroupLimits): Record<Controller, Array<[string, string]>> {
  return {
    // Period before quota: a quota is checked against the current period.
    cpu: [
      ['cpu.cfs_period_us', String(l.cpuPeriodUs)],
      ['cpu.cfs_quota_us', String(l.cpuQuotaUs)],
      ['cpu.shares', String(l.cpuShares)],
    ],
    memory: [['memory.limit_in_bytes', String(l.memoryBytes)]],
    pids: [['pids.max', String(l.pidsMax)]],
  };
}

/**
 * The folder of `relative` (e.g. 'flick/web-1') in each hierarchy, under the
 * group this process is in. `root` is where the v1 hierarchies are mounted.
 */
export function cgroupDirs(relative: string, root = '/sys/fs/cgroup', self = readSelfCgroups()): Record<Controller, string> {
  const out = {} as Record<Controller, string>;
  for (const c of CONTROLLERS) {
    const own = self.get(c);
    const base = path.join(root, c);
    if (own === undefined || !fs.existsSync(path.join(base, 'cgroup.procs'))) {
      throw new CgroupError('CGROUP_UNAVAILABLE', `cgroup v1 "${c}" controller is not mounted at ${base}: mount it, or run flickd with the jail off (FLICK_JAIL=off)`);
    }
    out[c] = path.join(base, own, relative);
  }
  return out;
}

/** controller → this process's group path, from /proc/self/cgroup ("4:memory:/a/b"). */
export function readSelfCgroups(text = fs.readFileSync('/proc/self/cgroup', 'utf8')): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [, list, p] = line.split(':', 3) as [string, string | undefined, string | undefined];
    if (!list || p === undefined) continue;
    for (const c of list.split(',')) m.set(c, p);
  }
  return m;
}

/** Creates the groups (or finds them) and writes the limits. On failure removes what it created. */
export async function createGroups(dirs: Record<Controller, string>, limits: CgroupLimits): Promise<void> {
  const files = limitFiles(limits);
  const made: string[] = [];
  try {
    for (const c of CONTROLLERS) {
      const dir = dirs[c];
      if (!fs.existsSync(dir)) {
        await fsp.mkdir(dir, { recursive: true });
        made.push(dir);
      }
      for (const [name, value] of files[c]) await fsp.writeFile(path.join(dir, name), value);
    }
  } catch (cause) {
    await removeGroups(made);
    throw new CgroupError('CGROUP_SETUP_FAILED', `cannot create the VM's cgroups (${Object.values(dirs).join(', ')}): ${(cause as Error).message}`, { cause });
  }
}

/**
 * Kills whatever is left in the groups and removes them. Safe to call twice.
 * A group's last task can take a moment to leave after its exit was reported,
 * so rmdir's EBUSY is retried briefly.
 */
export async function removeGroups(dirs: Iterable<string>): Promise<void> {
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt++) {
      try {
        for (const pid of readPids(dir)) killQuietly(pid);
        await fsp.rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
}

export function readPids(dir: string): number[] {
  try {
    return fs
      .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}
