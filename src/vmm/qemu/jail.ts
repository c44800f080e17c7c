// The jail around one QEMU process (what Firecracker's jailer does for its VMM):
//
// - seccomp: QEMU's own `-sandbox` filter (https://www.qemu.org/docs/master/system/invocation.html,
//   "-sandbox"): obsolete calls, spawning (fork/exec) and resource control denied.
//   `elevateprivileges` stays `allow` because QEMU 7.2 loads the filter before
//   `-runas` calls setgid/setuid, and a deny kills it there (SIGSYS, measured).
//   After the drop it cannot regain anything: no capabilities, no exec (spawn=deny),
//   no_new_privs set by the filter, and only its own ids to switch between.
// - its own uid and gid (uid-pool.ts): `-runas uid:gid`. QEMU opens everything it
//   is given on the command line (tap, kernel, disks, memory file, log, its QMP and
//   control sockets) as root first, then chroots and drops. So those files stay
//   root-owned; the VMM only ever opens the migration sockets afterwards.
// - a chroot (`-chroot`) holding nothing but the VM's run folder, bind-mounted
//   at its own host path inside a mount namespace of its own (unshare), so the
//   paths flickd gives QEMU over QMP mean the same inside and out and the mount
//   vanishes with the process: nothing to unmount on any path. The run folder is
//   root:<vm gid> 01730: the VMM can create its incoming-migration socket there,
//   but, sticky, cannot replace or rename the root-owned files flickd later opens.
// - cgroups (cgroup-v1.ts) sized from the VM. flickd moves the process in
//   (`enter`) while QEMU starts up, paused (-S): a v1 migration waits for an RCU
//   grace period (~10 ms measured), which would otherwise delay every wake.
//   The owner awaits it before its first QMP command, so no guest code runs
//   outside the groups; only QEMU's own start-up allocations stay charged to
//   flickd's group.
//
// Per spawn this costs a few mkdir/write calls (~1.5 ms) and one extra exec
// (the static helper src/security/jailer.c makes the mount namespace and the
// bind mount); bench/jail.ts measures it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FlickError } from '../../errors.js';
import { cgroupDirs, CONTROLLERS, createGroups, limitsFor, readPids, removeGroups, type CgroupLimits, type Controller } from '../../security/cgroup-v1.js';
import { ensureJailer } from '../../security/jailer.js';
import { UidPool } from '../../security/uid-pool.js';

export type JailErrorCode = 'JAIL_SETUP_FAILED';
export class JailError extends FlickError<JailErrorCode> {}

/** QEMU's seccomp policy for every VMM (see the module comment for elevateprivileges). */
export const SANDBOX_POLICY = 'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny';
/** Jail state: uid claims and per-VM chroot folders. tmpfs: nothing jailed outlives a reboot. */
export const DEFAULT_JAIL_DIR = process.env.FLICK_JAIL_DIR ?? '/run/flick/jail';
/** Groups are `<flickd's own group>/<CGROUP_PARENT>/<vm id>` in each hierarchy. */
export const CGROUP_PARENT = 'flick';

/** Jailing is the default; FLICK_JAIL=off turns it off (a host without cgroup v1, a debugging session). */
export function jailByDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.FLICK_JAIL !== 'off';
}

export interface JailConfig {
  /** The VM's id ([a-z0-9-]); names its cgroups, chroot folder and uid claim. */
  id: string;
  /** The VM's run folder (absolute); the only thing its VMM sees after the chroot. */
  runDir: string;
  memoryMb: number;
  vcpus: number;
  /** TCG translation buffer in MiB (0 under KVM): part of the VMM's memory. */
  tbSizeMb: number;
}

export interface JailOptions {
  /** Default DEFAULT_JAIL_DIR. */
  stateDir?: string;
  /** Where the cgroup v1 hierarchies are mounted. Default /sys/fs/cgroup. */
  cgroupRoot?: string;
}

/** What was set up, as recorded in `<stateDir>/vm/<id>/jail.json` (found again after a flickd restart). */
export interface JailState {
  version: 1;
  /** jailKey(id, runDir): names the cgroups, the chroot folder and the uid claim. */
  key: string;
  id: string;
  runDir: string;
  uid: number;
  gid: number;
  root: string;
  cgroups: Record<Controller, string>;
  limits: CgroupLimits;
}

export interface Jail extends JailState {
  /** Arguments to append to QEMU's own. */
  readonly qemuArgs: string[];
  /** The command that runs `argv` (QEMU, possibly behind nsenter) inside the jail. */
  wrap(argv: string[]): { command: string; args: string[] };
  /**
   * Moves the started process into the jail's cgroups. Start it right after the
   * spawn (it overlaps QEMU's start-up) and await it before the first QMP command.
   */
  enter(pid: number): Promise<void>;
  /** Removes the cgroups (killing stragglers), the chroot folder and the uid claim. Call once the process is gone; safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * The shell form of src/security/jailer.c, for a host without a C compiler:
 * makes the bind mount in a mount namespace of its own and execs the rest, in
 * place (unshare, sh and nsenter all exec, so the pid is QEMU's). No core
 * dumps: one would hold guest RAM. Three execs and a fork more than the helper.
 */
const WRAPPER = [
  'set -e',
  'ulimit -c 0',
  'mount --bind "$1" "$2"',
  'shift 2',
  'exec "$@"',
].join('\n');

export function jailQemuArgs(s: Pick<JailState, 'uid' | 'gid' | 'root'>): string[] {
  return ['-sandbox', SANDBOX_POLICY, '-runas', `${s.uid}:${s.gid}`, '-chroot', s.root];
}

/** The command that runs `argv` in the jail: through the built helper `jailer`, or the shell form without one. */
export function wrapArgv(s: Pick<JailState, 'runDir' | 'root'>, argv: string[], jailer?: string): { command: string; args: string[] } {
  if (jailer) return { command: jailer, args: [s.runDir, mountPoint(s.root, s.runDir), '--', ...argv] };
  return {
    command: 'unshare',
    args: ['--mount', '--propagation', 'private', '--', 'sh', '-c', WRAPPER, 'flick-jail', s.runDir, mountPoint(s.root, s.runDir), ...argv],
  };
}

/** Moves process `pid` (all its threads) into the groups, all three at once. */
export async function enterGroups(s: Pick<JailState, 'cgroups'>, pid: number): Promise<void> {
  try {
    await Promise.all(CONTROLLERS.map((c) => fsp.writeFile(path.join(s.cgroups[c], 'cgroup.procs'), String(pid))));
  } catch (cause) {
    throw new JailError('JAIL_SETUP_FAILED', `cannot move process ${pid} into its cgroups: ${(cause as Error).message}`, { cause });
  }
}

function mountPoint(root: string, runDir: string): string {
  return path.join(root, runDir);
}

function vmDir(stateDir: string, key: string): string {
  return path.join(stateDir, 'vm', key);
}

/**
 * What names a jail: the VM id plus a hash of its run folder. Ids are unique per
 * flickd, not per machine (two test runs both boot a VM "server"); run folders are.
 */
export function jailKey(id: string, runDir: string): string {
  return `${id}-${crypto.createHash('sha256').update(runDir).digest('hex').slice(0, 8)}`;
}

/**
 * Sets up (or finds, after a flickd restart) the jail of VM `config.id`: its
 * uid, cgroups with the VM's limits, the chroot folder, the run folder's owner
 * and mode. Call before each spawn; `cleanup()` after the process is gone.
 */
export async function prepareJail(config: JailConfig, opts: JailOptions = {}): Promise<Jail> {
  if (!path.isAbsolute(config.runDir)) throw new JailError('JAIL_SETUP_FAILED', `jail for VM ${config.id}: run folder "${config.runDir}" must be an absolute path`);
  const stateDir = opts.stateDir ?? DEFAULT_JAIL_DIR;
  sweepDeadJailsNowAndThen(stateDir);
  const key = jailKey(config.id, config.runDir);
  const dir = vmDir(stateDir, key);
  const pool = new UidPool(path.join(stateDir, 'uids'));
  const recorded = readState(dir);
  const uid = pool.claim(key);
  const root = path.join(dir, 'root');
  const limits = limitsFor(config.memoryMb, config.vcpus, config.tbSizeMb);
  // Built once per host (cached); without a C compiler the shell form does the same, slower.
  const jailer = await ensureJailer().catch(() => undefined);
  let state: JailState | undefined;
  try {
    // A flickd restarted in another cgroup still finds the groups it made before.
    const cgroups = recorded?.cgroups ?? cgroupDirs(path.join(CGROUP_PARENT, key), opts.cgroupRoot);
    state = { version: 1, key, id: config.id, runDir: config.runDir, uid, gid: uid, root, cgroups, limits };
    for (const d of [stateDir, path.join(stateDir, 'vm'), dir]) await fsp.mkdir(d, { recursive: true, mode: 0o700 });
    await fsp.writeFile(path.join(dir, 'jail.json'), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await makeMirror(root, config.runDir);
    await fsp.mkdir(config.runDir, { recursive: true });
    await fsp.chown(config.runDir, 0, uid);
    await fsp.chmod(config.runDir, 0o1730);
    await createGroups(cgroups, limits);
  } catch (cause) {
    if (state) await cleanupState(state, stateDir, pool).catch(() => {});
    else pool.release(key, uid);
    if (cause instanceof FlickError) throw cause;
    throw new JailError('JAIL_SETUP_FAILED', `jail for VM ${config.id}: ${(cause as Error).message}; run flickd as root, or with FLICK_JAIL=off`, { cause });
  }
  return handle(state, stateDir, pool, jailer);
}

function handle(state: JailState, stateDir: string, pool: UidPool, jailer?: string): Jail {
  let done: Promise<void> | undefined;
  return {
    ...state,
    qemuArgs: jailQemuArgs(state),
    wrap: (argv) => wrapArgv(state, argv, jailer),
    enter: (pid) => enterGroups(state, pid),
    cleanup: () => (done ??= cleanupState(state, stateDir, pool)),
  };
}

/** The empty folders down to the run folder's mount point: root-only above the chroot, traversable inside it. */
async function makeMirror(root: string, runDir: string): Promise<void> {
  await fsp.mkdir(root, { recursive: true, mode: 0o711 });
  let at = root;
  for (const part of runDir.split('/').filter((p) => p !== '')) {
    at = path.join(at, part);
    await fsp.mkdir(at, { mode: 0o711 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
}

async function cleanupState(state: JailState, stateDir: string, pool: UidPool): Promise<void> {
  await removeGroups(CONTROLLERS.map((c) => state.cgroups[c]));
  // rmdir, never a recursive rm: if a bind mount ever leaked onto the host, the run folder behind it stays intact.
  let at = mountPoint(state.root, state.runDir);
  while (at.startsWith(state.root)) {
    await fsp.rmdir(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    if (at === state.root) break;
    at = path.dirname(at);
  }
  const dir = vmDir(stateDir, state.key);
  await fsp.rm(path.join(dir, 'jail.json'), { force: true });
  await fsp.rmdir(dir).catch(() => {});
  pool.release(state.key, state.uid);
  // Back to root-only: the logs stay for `flick logs`, nobody else needs in.
  try {
    fs.chownSync(state.runDir, 0, 0);
    fs.chmodSync(state.runDir, 0o700);
  } catch {
    // the run folder is already gone
  }
}

function readState(dir: string): JailState | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'jail.json'), 'utf8')) as JailState;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The jail of VM `id` in `runDir` (a flickd restart adopting it), if any, without changing it. */
export function findJail(id: string, runDir: string, opts: JailOptions = {}): Jail | undefined {
  const stateDir = opts.stateDir ?? DEFAULT_JAIL_DIR;
  return openState(stateDir, jailKey(id, runDir));
}

function openState(stateDir: string, key: string): Jail | undefined {
  const recorded = readState(vmDir(stateDir, key));
  // The folder's name is the key, whatever the record says.
  const state = recorded && { ...recorded, key };
  return state ? handle(state, stateDir, new UidPool(path.join(stateDir, 'uids'))) : undefined;
}

/** The keys of the jails recorded under `stateDir` (none if it does not exist yet). */
function jailKeys(stateDir: string): string[] {
  try {
    return fs.readdirSync(path.join(stateDir, 'vm'));
  } catch {
    return [];
  }
}

/**
 * Cleans the jails in `stateDir` whose run folder is under `under` and not in
 * `keep` (what a crash left; `under` keeps one flickd from sweeping another's).
 * Returns their keys.
 */
export async function sweepJails(under: string, keep: ReadonlySet<string>, opts: JailOptions = {}): Promise<string[]> {
  const stateDir = opts.stateDir ?? DEFAULT_JAIL_DIR;
  const swept: string[] = [];
  for (const key of jailKeys(stateDir)) {
    const jail = openState(stateDir, key);
    if (!jail || !jail.runDir.startsWith(`${path.resolve(under)}/`) || keep.has(jail.runDir)) continue;
    await jail.cleanup();
    swept.push(key);
  }
  return swept;
}

/** A jail this old with no process in it is dead: a prepared jail is joined within milliseconds. */
const DEAD_AFTER_MS = 60_000;
const SWEEP_EVERY_MS = 10 * 60_000;
let lastSweep = 0;

/**
 * Removes jails with no process left whose owner never cleaned them (its flickd
 * was SIGKILLed and the VM died before any flickd adopted it). Returns their keys.
 */
export async function sweepDeadJails(opts: JailOptions = {}): Promise<string[]> {
  const stateDir = opts.stateDir ?? DEFAULT_JAIL_DIR;
  const swept: string[] = [];
  for (const key of jailKeys(stateDir)) {
    const jail = openState(stateDir, key);
    if (!jail || CONTROLLERS.some((c) => readPids(jail.cgroups[c]).length > 0)) continue;
    try {
      if (Date.now() - fs.statSync(path.join(vmDir(stateDir, key), 'jail.json')).mtimeMs < DEAD_AFTER_MS) continue;
    } catch {
      continue;
    }
    await jail.cleanup();
    swept.push(key);
  }
  return swept;
}

/** Off the start path: at most every ten minutes, not awaited. */
function sweepDeadJailsNowAndThen(stateDir: string): void {
  if (Date.now() - lastSweep < SWEEP_EVERY_MS) return;
  lastSweep = Date.now();
  void sweepDeadJails({ stateDir }).catch(() => {});
}
