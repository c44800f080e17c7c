// The primed pool's folders: `<dataDir>/primed/<vm id>/` holds `vm.json` (the VM's config, written
// before its QEMU starts) and `run/` (its run folder, for the VM's whole life: the jail bind-mounts
// it at its own path, so it never moves). Until an instance takes the VM the pool owns the folder;
// from then on the instance does (its record's `status.vm.runDir` names it), and when the VM ends
// its console log is appended to the instance's own and the folder goes (`foldIntoInstance`).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { VmConfig } from '../../vmm/driver.js';
import { isAlive } from '../../vmm/qemu/qemu-process.js';

export const PRIMED_DIR = 'primed';

/** The pool's root folder under a data dir. */
export function primedRoot(dataDir: string): string {
  return path.join(dataDir, PRIMED_DIR);
}

/** A primed VM's own folder and its run folder. */
export function primedFolder(root: string, vmId: string): { dir: string; runDir: string; meta: string } {
  const dir = path.join(root, vmId);
  return { dir, runDir: path.join(dir, 'run'), meta: path.join(dir, 'vm.json') };
}

/** The pool folder a run folder lives in, if it is a primed VM's (else undefined). */
export function primedFolderOf(root: string, runDir: string | undefined): string | undefined {
  if (runDir === undefined) return undefined;
  const dir = path.dirname(path.resolve(runDir));
  return path.dirname(dir) === path.resolve(root) && path.basename(runDir) === 'run' ? dir : undefined;
}

/** Writes the folder and its config before the VM's QEMU starts (so a sweep after a crash can find it). */
export async function preparePrimedFolder(root: string, config: VmConfig): Promise<void> {
  const f = primedFolder(root, config.id);
  await fsp.mkdir(f.runDir, { recursive: true });
  await fsp.writeFile(f.meta, `${JSON.stringify({ version: 1, config }, null, 2)}\n`);
}

/** The config a leftover folder's VM ran with, or undefined (unreadable: the VM never started). */
export function readPrimedConfig(dir: string): VmConfig | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'vm.json'), 'utf8')) as { version?: number; config?: VmConfig };
    return m.version === 1 ? m.config : undefined;
  } catch {
    return undefined;
  }
}

/** Every folder in the pool's root (bound or not). */
export async function listPrimedFolders(root: string): Promise<string[]> {
  const names = await fsp.readdir(root).catch(() => [] as string[]);
  return names.map((n) => path.join(root, n));
}

/** The pid of the QEMU whose monitor is in `runDir`, found by its command line (none: undefined). */
export function findQemuOf(runDir: string, procDir = '/proc'): number | undefined {
  const needle = `path=${path.join(runDir, 'qmp.sock')},`;
  let names: string[];
  try {
    names = fs.readdirSync(procDir);
  } catch {
    return undefined;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const args = fs.readFileSync(path.join(procDir, n, 'cmdline'), 'utf8').split('\0');
      if (args.some((a) => a.includes(needle)) && args.some((a) => a.includes('qemu-system'))) return Number(n);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/**
 * A bound primed VM has ended: its console output joins the instance's own log
 * (`<instanceRunDir>/console.log`, when the instance still exists), then its folder goes.
 */
export async function foldIntoInstance(folder: string, instanceRunDir: string | undefined): Promise<void> {
  const consoleLog = path.join(folder, 'run', 'console.log');
  if (instanceRunDir !== undefined) {
    const out = await fsp.readFile(consoleLog).catch(() => undefined);
    if (out !== undefined && out.length > 0) {
      await fsp.mkdir(instanceRunDir, { recursive: true });
      await fsp.appendFile(path.join(instanceRunDir, 'console.log'), out);
    }
  }
  await fsp.rm(folder, { recursive: true, force: true });
}

/**
 * SIGKILLs a QEMU that could not be adopted and waits (polling, up to `waitMs`) until it is dead:
 * a dying QEMU releases its disk lock late, so its folder goes only after. False: still alive.
 */
export async function killAndWait(pid: number, waitMs = 5000): Promise<boolean> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return true; // gone
  }
  for (const until = Date.now() + waitMs; isAlive(pid) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
  return !isAlive(pid);
}
