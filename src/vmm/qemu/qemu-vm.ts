// One running QEMU microVM as the controller sees it (MicroVm). It owns the
// QEMU process, its QMP connection, its control-port connection and the run
// folder's transient files: when the process ends, for any reason, it closes
// the connections and removes the files, then settles `exited`.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { ControlChannel } from '../../guest/control.js';
import { VmmError, type Accelerator, type DiskErrorReport, type HealthReport, type MicroVm, type ReclaimResult, type RunTimes, type Snapshot, type VmConfig, type VmExit } from '../driver.js';
import type { MemoryReclaimer } from './memory-reclaim.js';
import { switchDiskOverlay } from './disk-switch.js';
import { BlockIoErrorDataSchema, MigrationEventDataSchema } from './qmp-schema.js';
import type { QmpClient } from './qmp-client.js';
import type { QemuProcess } from './qemu-process.js';
import { receiveStream } from './migration-stream.js';
import { cleanRunDir, type RunDir } from './run-dir.js';

/** A VM is running, paused, or saved (paused, its RAM handed to a snapshot: it must not run again). */
export type VmRunPhase = 'running' | 'paused' | 'saved' | 'exited';

export interface SnapshotOptions {
  /**
   * Keep this VM usable after the snapshot: its RAM file is copied (sparse)
   * instead of hard-linked into the snapshot. Default false: the snapshot takes
   * the RAM file and this VM can only be stopped or killed.
   */
  keepRunning?: boolean;
}

export interface QemuVmParts {
  config: VmConfig;
  accel: Accelerator;
  process: QemuProcess;
  qmp: QmpClient;
  control: ControlChannel | undefined;
  runDir: RunDir;
  state: 'running' | 'paused';
  /** Booted here (not restored or adopted): the guest's `started` message is still to come. */
  freshBoot: boolean;
  /** The RAM file when it is not the run folder's `mem`. */
  ramFile?: string;
  /** Whether guest RAM is this VM's own file (MAP_SHARED) rather than a private map of a template. */
  ownsMemory: boolean;
  /** A restore that let the guest run: when it ran and took its clock. */
  restoreTimes?: RunTimes;
  /** The driver's: pages guest RAM out through the VM's memory cgroup. */
  reclaimer: MemoryReclaimer;
}

const CONNECT_ATTEMPT_MS = 250;
/** The most the guest's wall clock may lag the host's before resume() sets it. */
const CLOCK_SLACK_MS = 200;
/**
 * How long a woken guest may take to answer the clock line. It answers after ~1-2 ms of guest
 * work, but a restored guest's first run under TCG retranslates its code, and on a loaded host
 * that took over 2 s (the density ramp at load ~17, 405 VMs up): a wake must wait, not fail.
 */
export const CLOCK_ANSWER_MS = 10_000;
const CONNECT_RETRY_MS = 5;

export class QemuMicroVm implements MicroVm {
  readonly id: string;
  readonly pid: number;
  readonly accel: Accelerator;
  readonly config: VmConfig;
  readonly exited: Promise<VmExit>;
  readonly restoreTimes: RunTimes | undefined;
  readonly #p: QemuVmParts;
  #state: VmRunPhase;
  #guestExitCode: number | undefined;
  #released = false;
  #pausedAt = Date.now();
  /** How far the guest's clock may be behind the host's: paused time since the last sync. */
  #clockLagMs = 0;

  constructor(parts: QemuVmParts) {
    this.#p = parts;
    this.id = parts.config.id;
    this.pid = parts.process.pid;
    this.accel = parts.accel;
    this.config = parts.config;
    this.#state = parts.state;
    this.restoreTimes = parts.restoreTimes;
    // Adopted while paused, or restored paused (primed): the guest's clock is stale by an unknown
    // amount, so the next resume sets it.
    if (parts.state === 'paused') this.#clockLagMs = CLOCK_SLACK_MS;
    parts.control?.on('message', (m) => {
      if (m.type === 'exit') this.#guestExitCode = m.code;
      // The init greets once it listens: the first moment the guest can take the host's clock.
      if (m.type === 'hello') parts.control?.syncClock().catch(() => {});
    });
    this.exited = parts.process.exited.then(async (e) => {
      this.#state = 'exited';
      parts.qmp.close();
      parts.control?.close();
      if (!this.#released) void parts.reclaimer.forget(this.id);
      // A released VM's files belong to whoever adopted it.
      if (!this.#released) await cleanRunDir(parts.runDir).catch(() => {});
      return { guestExitCode: this.#guestExitCode, processCode: e.code, processSignal: e.signal };
    });
    // If QMP goes away the process is dying; make sure it finishes.
    void parts.qmp.closed.then(() => {
      if (this.#state !== 'exited' && !this.#released) setTimeout(() => void parts.process.kill(), 1000).unref();
    });
  }

  onHealth(listener: (report: HealthReport) => void): () => void {
    const control = this.#p.control;
    if (!control) return () => {};
    const on = (m: { type: string }): void => {
      if (m.type === 'healthy' || m.type === 'unhealthy') listener({ status: m.type });
    };
    control.on('message', on);
    return () => void control.off('message', on);
  }

  /** BLOCK_IO_ERROR with action `stop` (volumes are opened werror=enospc: args.ts driveArgs, ids `vol<i>`). */
  onDiskError(listener: (report: DiskErrorReport) => void): () => void {
    return this.#p.qmp.onEvent('BLOCK_IO_ERROR', (e) => {
      const d = BlockIoErrorDataSchema.safeParse(e.data);
      if (!d.success || d.data.action !== 'stop') return;
      const m = /^vol(\d+)$/.exec(d.data.device);
      listener({ drive: m ? Number(m[1]) : undefined, noSpace: d.data.nospace === true, reason: d.data.reason ?? 'an I/O error' });
    });
  }

  /** blockdev-add + blockdev-snapshot of an overlay QEMU opens in its jail (disk-switch.ts). */
  switchDisk(file: string, overlay: string): Promise<void> {
    if (this.#state !== 'paused') return Promise.reject(new VmmError('INVALID_STATE', `VM ${this.id} is ${this.#state}: pause it before switching a disk`));
    return switchDiskOverlay(this.#p.qmp, this.#p.runDir.dir, this.config.drives ?? [], file, overlay);
  }

  get state(): VmRunPhase {
    return this.#state;
  }

  get booted(): boolean {
    return this.#p.freshBoot;
  }

  /**
   * A VM booted in its process under TCG keeps its boot's translations: in hot
   * standby it holds ~40 MB (minimal) / ~60 MB (node) more than one restored from
   * a snapshot (measured, paged out: 92 vs 52 MiB, 152 vs 92 MiB).
   */
  get heavyWhenPaused(): boolean {
    return this.#p.freshBoot && this.accel === 'tcg';
  }

  /** Through the VM's memory cgroup (memory-reclaim.ts); its own RAM file (if any) is written back first. */
  reclaimMemory(keepBytes: number): Promise<ReclaimResult> {
    const ownFile = path.join(this.config.runDir, 'mem');
    return this.#p.reclaimer.pageOut(this.id, this.pid, fs.existsSync(ownFile) ? ownFile : undefined, keepBytes);
  }

  memoryUsage(): number | undefined {
    return this.#p.reclaimer.usageBytes(this.id, this.pid);
  }

  async waitForPort(port: number, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    const host = this.config.network?.hostReachableIp;
    if (!host) throw new VmmError('UNSUPPORTED', `VM ${this.id} has no network: attach one (src/network) to reach its ports`);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    if (this.#p.freshBoot && this.#p.control) {
      // Until the init has started the app nothing can listen, and before the guest's NIC is up a
      // connect attempt hangs instead of being refused; the `started` message saves those stalls.
      const exited = this.exited.then(() => undefined);
      await Promise.race([this.#p.control.waitFor('started', { timeoutMs, signal: opts.signal }).catch(() => undefined), exited]);
    }
    for (;;) {
      this.#mustBeAlive('wait for a port');
      opts.signal?.throwIfAborted();
      if (await tryConnect(host, port, Math.min(CONNECT_ATTEMPT_MS, Math.max(1, deadline - Date.now())))) return this.#healthy(deadline, opts.signal);
      if (Date.now() >= deadline) {
        throw new VmmError('NOT_READY', `VM ${this.id}: nothing accepted connections on ${host}:${port} within ${timeoutMs} ms: check the app listens on port ${port} (see ${this.#p.runDir.consoleLog})`);
      }
      await new Promise((r) => setTimeout(r, CONNECT_RETRY_MS));
    }
  }

  /** With a HEALTHCHECK, a freshly booted guest is ready once the init reports its first success (restored ones already were). */
  async #healthy(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    if (!this.config.guest.healthcheck || !this.#p.freshBoot || !this.#p.control) return;
    const exited = this.exited.then(() => {
      throw new VmmError('NOT_READY', `VM ${this.id} ended before its HEALTHCHECK passed (see ${this.#p.runDir.consoleLog})`);
    });
    await Promise.race([
      this.#p.control.waitFor('healthy', { timeoutMs: Math.max(1, deadline - Date.now()), ...(signal ? { signal } : {}) }).catch((err: unknown) => {
        throw new VmmError('NOT_READY', `VM ${this.id}: its HEALTHCHECK ${JSON.stringify(this.config.guest.healthcheck!.argv)} did not pass in time (${(err as Error).message})`, { cause: err });
      }),
      exited,
    ]);
  }

  async pause(): Promise<void> {
    this.#need('running', 'pause');
    await this.#p.qmp.execute('stop');
    this.#pausedAt = Date.now();
    this.#state = 'paused';
  }

  async resume(): Promise<RunTimes> {
    this.#need('paused', 'resume');
    // The guest's clock stands still while paused, so it falls behind by every pause. Once the
    // lag could reach CLOCK_SLACK_MS the clock is set: the command is queued in the port before
    // cont, so the guest reads it right after (about 1-2 ms of guest work under TCG), and resume
    // resolves only on the guest's answer: the caller may send the app a request at once, and
    // the app must not see a stale clock. Shorter pauses only add to the lag.
    this.#clockLagMs += Date.now() - this.#pausedAt;
    let clock: Promise<void> | undefined;
    if (this.#clockLagMs >= CLOCK_SLACK_MS && this.#p.control) {
      this.#clockLagMs = 0;
      clock = this.#p.control.syncClock(CLOCK_ANSWER_MS);
      clock.catch(() => {});
    }
    await this.#p.qmp.execute('cont');
    this.#state = 'running';
    const runningAt = performance.now();
    if (!clock) return { runningAt };
    await this.#clockAnswer(clock);
    return { runningAt, clockAt: performance.now() };
  }

  async createSnapshot(dir: string, opts: SnapshotOptions = {}): Promise<Snapshot> {
    this.#need('paused', 'snapshot');
    const { qmp, runDir } = this.#p;
    await fsp.mkdir(dir, { recursive: true });
    const stateFile = path.join(dir, 'state');
    const memoryFile = path.join(dir, 'mem');
    const stream = await receiveStream(runDir.migrateSocket, stateFile);
    const finished = qmp.waitForEvent('MIGRATION', {
      predicate: (e) => ['completed', 'failed', 'cancelled'].includes(MigrationEventDataSchema.parse(e.data).status),
    });
    try {
      await qmp.execute('migrate', { uri: `unix:${runDir.migrateSocket}` });
      const status = MigrationEventDataSchema.parse((await finished).data).status;
      if (status !== 'completed') throw new VmmError('SNAPSHOT_FAILED', `snapshot of VM ${this.id}: QEMU reported migration ${status}; see ${runDir.qemuLog}`);
      await stream.done;
    } catch (err) {
      stream.abort();
      finished.catch(() => {});
      await stream.done.catch(() => {});
      throw err instanceof VmmError && err.code === 'SNAPSHOT_FAILED'
        ? err
        : new VmmError('SNAPSHOT_FAILED', `snapshot of VM ${this.id} failed: ${(err as Error).message}`, { cause: err });
    }
    await fsp.rm(memoryFile, { force: true });
    if (!this.#p.ownsMemory) {
      // A clone's RAM is private memory, so it went into the stream; the snapshot needs only an empty RAM file to load it into.
      await fsp.writeFile(memoryFile, '');
      await fsp.truncate(memoryFile, this.config.memoryMb * 1024 * 1024);
    } else if (opts.keepRunning) {
      await copySparse(this.#ramFile(), memoryFile);
    } else {
      // Instant; from here the VM's RAM is the snapshot's, so this VM must never run again.
      // (Across filesystems a link is impossible and the RAM file is copied instead.)
      await fsp.link(this.#ramFile(), memoryFile).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EXDEV') throw err;
        return copySparse(this.#ramFile(), memoryFile);
      });
      this.#state = 'saved';
    }
    const snapshot: Snapshot = {
      dir,
      stateFile,
      memoryFile,
      memoryMb: this.config.memoryMb,
      vcpus: this.config.vcpus,
      createdAt: new Date().toISOString(),
      ...(this.#p.ownsMemory ? {} : { ramInStream: true }),
    };
    await fsp.writeFile(path.join(dir, 'snapshot.json'), `${JSON.stringify({ version: 1, ...snapshot }, null, 2)}\n`);
    return snapshot;
  }

  async #clockAnswer(clock: Promise<void>): Promise<void> {
    try {
      await clock;
    } catch (cause) {
      throw new VmmError('CLOCK_FAILED', `VM ${this.id}: the guest did not take the clock: ${(cause as Error).message}`, { cause });
    }
  }

  async syncClock(): Promise<void> {
    this.#mustBeAlive('sync the clock');
    const control = this.#p.control;
    if (!control) throw new VmmError('CLOCK_FAILED', `VM ${this.id} has no control-port connection: restart it`);
    try {
      await control.syncClock();
      this.#clockLagMs = 0;
    } catch (cause) {
      throw new VmmError('CLOCK_FAILED', `VM ${this.id}: the guest did not take the clock: ${(cause as Error).message}`, { cause });
    }
  }

  async stop(opts: { timeoutMs?: number } = {}): Promise<VmExit> {
    if (this.#state === 'exited' || this.#state === 'saved') return this.kill();
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const timer = setTimeout(() => void this.#p.process.kill(), timeoutMs);
    try {
      if (this.#state === 'paused') await this.resume();
      await this.#p.control?.poweroff(Math.min(timeoutMs, 2000));
    } catch {
      // No answer from the guest: the timer (or the kill below) ends it.
      await this.#p.process.kill();
    }
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  async kill(): Promise<VmExit> {
    await this.#p.process.kill();
    return this.exited;
  }

  release(): void {
    if (this.#state === 'exited') return;
    this.#released = true;
    this.#p.qmp.close();
    this.#p.control?.close();
  }

  /** The file backing guest RAM: the run folder's `mem`, or (restored across filesystems) the snapshot's. */
  #ramFile(): string {
    return this.#p.ramFile ?? this.#p.runDir.memory;
  }

  #need(state: VmRunPhase, what: string): void {
    this.#mustBeAlive(what);
    if (this.#state !== state) {
      throw new VmmError('INVALID_STATE', `cannot ${what} VM ${this.id}: it is ${this.#state}, not ${state}`);
    }
  }

  #mustBeAlive(what: string): void {
    if (this.#state === 'exited') throw new VmmError('VM_EXITED', `cannot ${what} VM ${this.id}: its QEMU process has exited`);
  }
}

function tryConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => finish(false), timeoutMs);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}

/** `cp --sparse=always`: copies only the RAM pages the guest touched. */
function copySparse(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('cp', ['--sparse=always', from, to], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new VmmError('SNAPSHOT_FAILED', `copying ${from} failed (cp exit ${code})`))));
  });
}

export function fileExists(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.R_OK);
    return true;
  } catch {
    return false;
  }
}
