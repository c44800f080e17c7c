// Giving a paused QEMU's guest RAM back to the host (MicroVm.reclaimMemory,
// for hot standby), and reading what it holds. Guest RAM of
// a booted or stateful VM is a MAP_SHARED file, so once the VM is paused its
// pages can go back to that file: fsync writes the dirty ones, and
// `memory.force_empty` on the VM's own v1 memory cgroup makes the kernel drop
// every page charged to it that it can (page cache; anonymous memory stays,
// there is no swap). `process_madvise(MADV_PAGEOUT)` alone is not enough: the
// pages leave the process but stay in the page cache, charged (measured).
// Kernel interface: https://docs.kernel.org/admin-guide/cgroup-v1/memory.html
//
// The cgroup is the jail's `<flickd's group>/flick/<vm id>-<hash>` when QEMU
// runs in a jail (jail.ts made it and removes it). Without a jail
// (FLICK_JAIL=off) this module makes that same group, moves QEMU in with its
// charges, and removes it once the VM is gone.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ReclaimResult } from '../driver.js';
import { CGROUP_PARENT } from './jail.js';
import { cgroupDirs } from '../../security/cgroup-v1.js';

export class MemoryReclaimer {
  readonly #root: string;
  /** Groups this module made (no jail): removed when their VM is gone. */
  readonly #made = new Map<string, string>();

  constructor(opts: { cgroupRoot?: string } = {}) {
    this.#root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  }

  /** The memory cgroup folder QEMU `pid` is in, if it is a per-VM group (`…/flick/<vmId>…`); else makes one and moves it in. */
  groupOf(vmId: string, pid: number): string | undefined {
    const own = memoryGroupOf(pid);
    if (own === undefined) return undefined; // the process is gone: nothing to make a group for
    // The jail names its group `<vm id>-<hash of the run folder>`; this module's own is `<vm id>`.
    const name = path.basename(own);
    if ((name === vmId || name.startsWith(`${vmId}-`)) && path.basename(path.dirname(own)) === CGROUP_PARENT) return path.join(this.#root, 'memory', own);
    let dir: string | undefined;
    try {
      dir = cgroupDirs(path.join(CGROUP_PARENT, vmId), this.#root).memory;
      fs.mkdirSync(dir, { recursive: true });
      this.#made.set(vmId, dir);
      // Charges move with the task (anonymous 1 + file 2), so the group holds what QEMU already uses.
      try {
        fs.writeFileSync(path.join(dir, 'memory.move_charge_at_immigrate'), '3');
      } catch {
        // not supported by this kernel: only new charges land in the group
      }
      fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
      return dir;
    } catch {
      if (dir !== undefined) void this.forget(vmId);
      return undefined;
    }
  }

  /** Host RAM charged to the VM's group now, or undefined if it has none. */
  usageBytes(vmId: string, pid: number): number | undefined {
    const dir = this.groupOf(vmId, pid);
    return dir === undefined ? undefined : readNumber(path.join(dir, 'memory.usage_in_bytes'));
  }

  /**
   * Precondition: the VM is paused (a running guest would fault its RAM straight
   * back in). Writes back `memoryFile` (when the VM's RAM is its own file), then
   * gives the group's page cache back down to `keepBytes` of it: with 0 the
   * group is emptied (`memory.force_empty`); otherwise its limit is lowered to
   * anonymous memory + `keepBytes` for a moment, so the kernel reclaims the
   * least recently used pages first and what the guest touched last (its next
   * wake's working set) stays, then the limit is lifted again (a paused VM
   * faults nothing back in).
   */
  async pageOut(vmId: string, pid: number, memoryFile: string | undefined, keepBytes = 0): Promise<ReclaimResult> {
    const t0 = performance.now();
    const dir = this.groupOf(vmId, pid);
    const beforeBytes = dir === undefined ? undefined : readNumber(path.join(dir, 'memory.usage_in_bytes'));
    if (memoryFile !== undefined) {
      const fh = await fsp.open(memoryFile, 'r+').catch(() => undefined);
      if (fh) {
        await fh.sync().catch(() => {});
        await fh.close();
      }
    }
    if (dir !== undefined) {
      const anon = keepBytes > 0 ? anonymousBytes(dir) : undefined;
      if (anon === undefined) await fsp.writeFile(path.join(dir, 'memory.force_empty'), '0').catch(() => {});
      else if (beforeBytes !== undefined && beforeBytes > anon + keepBytes) await squeeze(dir, anon + keepBytes);
    }
    const afterBytes = dir === undefined ? undefined : readNumber(path.join(dir, 'memory.usage_in_bytes'));
    return { beforeBytes, afterBytes, durationMs: performance.now() - t0 };
  }

  /** The VM is gone: remove a group this module made (the jail removes its own). Safe to call twice. */
  async forget(vmId: string): Promise<void> {
    const dir = this.#made.get(vmId);
    if (dir === undefined) return;
    this.#made.delete(vmId);
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await fsp.rmdir(dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY') return;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

/** The memory hierarchy path of `pid` from /proc/<pid>/cgroup ("4:memory:/a/b"). */
function memoryGroupOf(pid: number): string | undefined {
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
      const [, list, p] = line.split(':', 3);
      if (list?.split(',').includes('memory') && p !== undefined) return p;
    }
  } catch {
    // gone
  }
  return undefined;
}

/** Anonymous memory charged to the group (`rss` in memory.stat: it cannot go, there is no swap). */
function anonymousBytes(dir: string): number | undefined {
  try {
    const m = /^rss (\d+)$/m.exec(fs.readFileSync(path.join(dir, 'memory.stat'), 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Lowers the group's limit to `bytes` (the kernel reclaims, LRU first, until
 * usage fits or it gives up with EBUSY, which leaves the limit as it was),
 * then lifts it. Page alignment: the kernel rounds the limit down itself.
 */
async function squeeze(dir: string, bytes: number): Promise<void> {
  const limit = path.join(dir, 'memory.limit_in_bytes');
  const before = await fsp.readFile(limit, 'utf8').catch(() => undefined);
  if (before === undefined) return;
  try {
    await fsp.writeFile(limit, String(bytes));
  } catch {
    // EBUSY: could not reclaim that far; what was reclaimed stays reclaimed
  } finally {
    await fsp.writeFile(limit, before.trim()).catch(() => {});
  }
}

function readNumber(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
