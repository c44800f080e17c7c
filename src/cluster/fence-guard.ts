// The fence for a flickd that is gone (killed -9, crashed, stopped): a small
// watchdog process (fence-guard-main.ts) that a cluster host's flickd starts and
// feeds over a pipe, and that outlives it. flickd tells it, as they change, the
// VM processes of its stateless instances (the ones a failover starts on another
// host) and when its lease was last renewed. When the pipe closes (flickd ended,
// however), the guard waits until just before the lease would lapse (the other
// hosts start a moved copy a second after it does: agent.ts, FENCE_GRACE_MS) and
// kills those processes, so a dead host never runs an instance beside its moved
// copy. A flickd started again within the lease's TTL (it keeps the lease, so
// nothing moves) stands the previous guard down first, and its VMs stay its own;
// one still starting when the guard would kill (a flickd on the same data dir
// runs) is left to take them over. A stopping flickd renews its lease last.
// If the lease had already lapsed when flickd ended, the guard does nothing:
// either the host's own fence (fence.ts) acted while it was cut off, or etcd is
// down for every host and nothing can move, so what the host holds serves on.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processArgs } from '../vmm/qemu/qemu-process.js';

/** `<data-dir>/cluster-guard.pid`: the running guard, for the next flickd to stand down. */
export const GUARD_PID_FILE = 'cluster-guard.pid';
/** `<data-dir>/cluster-guard.log`: what the guard did (it has no flickd to log through). */
export const GUARD_LOG_FILE = 'cluster-guard.log';
/** The guard kills this long before the lease's end, for the renewal's round trip to etcd. */
export const KILL_MARGIN_MS = 500;
const FEED_MS = 200;

export interface GuardTarget {
  name: string;
  pid: number;
  /** The process's start time (/proc/<pid>/stat field 22): a reused pid does not share it. */
  start: string;
}

/** What flickd last told its guard (one JSON line each). */
export interface GuardState {
  renewedAt: number;
  ttlMs: number;
  targets: GuardTarget[];
}

export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * When the guard kills its targets, flickd having gone at `goneAt`: just before
 * the lease's end, or undefined when there is nothing to do (no targets, or the
 * lease had lapsed already).
 */
export function killAt(state: GuardState | undefined, goneAt: number): number | undefined {
  if (!state || state.targets.length === 0) return undefined;
  const lapse = state.renewedAt + state.ttlMs;
  if (goneAt > lapse) return undefined;
  return Math.max(goneAt, lapse - KILL_MARGIN_MS);
}

/** Whether a flickd other than `parent` (the one that started the guard) runs on `dataDir`: started again, it takes the VMs over. */
export function successorRunning(dataDir: string, parent: number): boolean {
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== parent && Number(p) !== process.pid);
  } catch {
    return false;
  }
  return pids.some((pid) => {
    const argv = processArgs(Number(pid)) ?? [];
    const onDir = argv.some((a, i) => (a === '--data-dir' && argv[i + 1] === dataDir) || a === `--data-dir=${dataDir}`);
    return onDir && argv.some((a) => /(^|\/)flickd(\.js)?$|\/daemon\/main\.js$/.test(a));
  });
}

/** Stands down the guard a previous flickd of this data dir left (this one takes over its VMs). */
export function standDownGuard(dataDir: string, log: (line: string) => void): void {
  const file = path.join(dataDir, GUARD_PID_FILE);
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return;
  }
  try {
    if (pid > 0 && processArgs(pid)?.some((a) => a.includes('fence-guard-main'))) {
      process.kill(pid, 'SIGTERM');
      log(`cluster: stood down the fence guard (pid ${pid}) of the flickd before this one`);
    }
  } catch {
    // gone already
  }
  fs.rmSync(file, { force: true });
}

export interface FenceGuard {
  /** Ends the feed: the guard then acts as for a flickd that is gone (a stop leaves the lease to lapse). */
  close(): void;
}

export function startFenceGuard(c: {
  dataDir: string;
  ttlMs: number;
  lease: { readonly lastRenewedAt: number };
  /** This host's VM processes a failover would start elsewhere. */
  targets: () => Array<{ name: string; pid: number }>;
  log: (line: string) => void;
}): FenceGuard {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fence-guard-main.js');
  const logFd = fs.openSync(path.join(c.dataDir, GUARD_LOG_FILE), 'a');
  const child = spawn(process.execPath, [script, c.dataDir], { stdio: ['pipe', 'ignore', logFd], detached: true });
  fs.closeSync(logFd);
  child.unref();
  const stdin = child.stdin as net.Socket;
  stdin.unref();
  stdin.on('error', () => {}); // the guard gone: nothing to feed
  child.once('exit', (code, signal) => {
    if (!closed) c.log(`cluster: the fence guard ended (${signal ?? `exit ${code}`}) while flickd runs`);
  });
  if (child.pid) {
    const file = path.join(c.dataDir, GUARD_PID_FILE);
    fs.writeFileSync(`${file}.tmp`, `${child.pid}\n`);
    fs.renameSync(`${file}.tmp`, file);
  }
  const starts = new Map<number, string>();
  let last = '';
  let closed = false;
  const feed = () => {
    if (closed) return;
    const targets: GuardTarget[] = [];
    const seen = new Set<number>();
    let listed: Array<{ name: string; pid: number }>;
    try {
      listed = c.targets();
    } catch (err) {
      c.log(`cluster: listing the fence guard's VMs: ${String(err)}`);
      return;
    }
    for (const t of listed) {
      seen.add(t.pid);
      let start = starts.get(t.pid);
      if (start === undefined) {
        start = processStart(t.pid);
        if (start === undefined) continue;
        starts.set(t.pid, start);
      }
      targets.push({ name: t.name, pid: t.pid, start });
    }
    for (const pid of starts.keys()) if (!seen.has(pid)) starts.delete(pid);
    const line = JSON.stringify({ renewedAt: c.lease.lastRenewedAt, ttlMs: c.ttlMs, targets } satisfies GuardState);
    if (line !== last && stdin.writable) stdin.write(`${line}\n`);
    last = line;
  };
  feed();
  const timer = setInterval(feed, FEED_MS);
  timer.unref();
  return {
    close() {
      if (closed) return;
      feed();
      closed = true;
      clearInterval(timer);
      stdin.end();
    },
  };
}
