// One QEMU process and nothing else: how it starts (optionally inside a
// network namespace), how its end is observed, how it is killed. The process
// is started in its own session so a signal to flickd's process group (Ctrl-C)
// does not take the VMs with it, and its stderr goes to a file, not a pipe, so
// it survives a flickd restart (and can be adopted). Files in the run folder
// belong to the MicroVm that owns this process.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { VmmError } from '../driver.js';
import { prepareJail, type Jail, type JailConfig } from './jail.js';

export const QEMU_BINARY = process.env.FLICK_QEMU ?? 'qemu-system-x86_64';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Network namespace (name under /run/netns) to run QEMU in. */
  netns?: string;
  /** QEMU's stderr goes here (appended). */
  stderrPath: string;
  /** Run QEMU in a jail of its own (jail.ts), removed once the process is gone. */
  jail?: JailConfig;
}

/** How often an adopted process (not our child: no exit event) is checked. */
const ADOPTED_POLL_MS = 50;

export class QemuProcess {
  readonly pid: number;
  /** Settles once the process is gone. Never rejects. */
  readonly exited: Promise<ProcessExit>;
  #child: ChildProcess | undefined;
  #exit: ProcessExit | undefined;

  private constructor(pid: number, exited: Promise<ProcessExit>, child?: ChildProcess) {
    this.pid = pid;
    this.#child = child;
    this.exited = exited.then((e) => (this.#exit = e));
  }

  /** Starts QEMU with `args`. Rejects (BOOT_FAILED) only if it cannot be started at all. */
  static async spawn(args: string[], opts: SpawnOptions): Promise<QemuProcess> {
    let jail: Jail | undefined;
    try {
      jail = opts.jail ? await prepareJail(opts.jail) : undefined;
    } catch (cause) {
      throw new VmmError('BOOT_FAILED', `cannot jail QEMU: ${(cause as Error).message}`, { cause });
    }
    const stderr = fs.openSync(opts.stderrPath, 'a');
    const qemu = [QEMU_BINARY, ...args, ...(jail?.qemuArgs ?? [])];
    // nsenter only setns()es and execs, so the pid we get is QEMU's (`ip netns exec` also remounts /sys).
    // The jail's wrapper execs in place too.
    const inner = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, '--', ...qemu] : qemu;
    const { command: cmd, args: argv } = jail ? jail.wrap(inner) : { command: inner[0] as string, args: inner.slice(1) };
    try {
      const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', stderr], detached: true });
      const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      // QEMU starts up paused while it is moved into its cgroups (a v1 migration takes ~10 ms):
      // done before the caller's first QMP command, so no guest code runs outside them.
      if (jail) await jail.enter(child.pid as number).catch(async (err: unknown) => {
        child.kill('SIGKILL');
        await exited;
        throw err;
      });
      return new QemuProcess(child.pid as number, afterJail(exited, jail), child);
    } catch (cause) {
      await jail?.cleanup().catch(() => {});
      throw new VmmError('BOOT_FAILED', `cannot start ${cmd}: ${(cause as Error).message}; is qemu-system-x86 installed (scripts/setup.sh)?`, {
        cause,
      });
    } finally {
      fs.closeSync(stderr);
    }
  }

  /** Watches a QEMU started by an earlier flickd. The caller has checked that `pid` is that QEMU. */
  static adopt(pid: number, jail?: Jail): QemuProcess {
    const exited = new Promise<ProcessExit>((resolve) => {
      const timer = setInterval(() => {
        if (isAlive(pid)) return;
        clearInterval(timer);
        resolve({ code: null, signal: null }); // not our child: its status went to whoever reaped it
      }, ADOPTED_POLL_MS);
      timer.unref();
    });
    return new QemuProcess(pid, afterJail(exited, jail));
  }

  get running(): boolean {
    return this.#exit === undefined && isAlive(this.pid);
  }

  /** SIGKILL and wait until it is gone. Safe to call twice and after exit. */
  async kill(): Promise<ProcessExit> {
    if (this.#exit) return this.#exit;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // Already gone; `exited` settles on its own.
    }
    return this.exited;
  }
}

/** `exited`, settling only once the jail (if any) is gone too: its cgroups, chroot folder and uid. */
function afterJail(exited: Promise<ProcessExit>, jail: Jail | undefined): Promise<ProcessExit> {
  return jail ? exited.then(async (e) => (await jail.cleanup().catch(() => {}), e)) : exited;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers signal 0; it is gone for our purposes.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The command line of `pid` (NUL-separated in /proc), or undefined if it is gone. */
export function processArgs(pid: number): string[] | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch {
    return undefined;
  }
}

/** The last `max` characters of a log file, for error messages. */
export function tail(file: string, max = 600): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-max).trim();
  } catch {
    return '';
  }
}
