// The VM side of the instance lifecycle, under the Controller's commands: the
// per-instance queue, persisted state transitions, boot → ready → running,
// stop and removal, watching VMs end, and the restart policy applied when one
// ends unasked. It is the InstanceHost scale to zero acts through.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord, NewInstanceRecord } from './state/instance-record.js';
import type { StateStore } from './state/state-store.js';
import type { MicroVm, RestoreOptions, Snapshot, VmConfig, VmExit, VmmDriver } from '../vmm/driver.js';
import { ConsoleLog, type ConsoleLogOptions } from './console-log.js';
import type { ControllerOptions } from './options.js';
import type { InstanceEventEmitter } from './events.js';
import type { InstanceHost, StatusPatch, WokenVm } from './instance-host.js';
import type { ControllerLogger, ImageResolver, InstanceVolumes, PreparedImage } from './seams.js';
import { VmNetworks } from './vm-networks.js';
import { hasVolumes, readinessPort, vmGuestConfig } from './spec.js';
import { ControllerError, assertTransition, hasProcess, type InstanceState } from './states.js';
import { RestartScheduler } from './restart.js';
import { watchHealth } from './health.js';
import { ScaleToZero } from './scale-to-zero.js';
import { DEFAULT_KEEP_RESIDENT, DEFAULT_PAGE_OUT_AFTER_MS } from './hot-standby.js';
import { DEFAULT_TEMPLATE_WARMUP_REQUESTS } from './template-warmup.js';
import { ControllerMetrics } from './metrics.js';
import { TemplateStore, templateKey } from './templates.js';
import { DiskErrors } from './disk-errors.js';
import { PrimedPool } from './primed/primed-pool.js';
import { primedRoot } from './primed/primed-dir.js';
import { ownPrimedFor, restoreForWake, retirePrimedVm } from './primed/bind.js';

/** A VMM process the controller owns, and whether its exit is expected (stop, suspend). */
interface LiveVm {
  vm: MicroVm;
  expectExit: boolean;
}

const silent: ControllerLogger = { info() {}, warn() {} };

export class Lifecycle implements InstanceHost {
  readonly events: InstanceEventEmitter;
  readonly store: StateStore;
  readonly driver: VmmDriver;
  readonly images: ImageResolver;
  readonly networks: VmNetworks;
  readonly volumes: InstanceVolumes | undefined;
  readonly log: ControllerLogger;
  readonly #readyTimeoutMs: number;
  readonly #stopTimeoutMs: number;
  readonly #consoleOpts: ConsoleLogOptions;
  readonly #accel: VmConfig['accel'];
  readonly live = new Map<string, LiveVm>();
  /** One queue per instance: lifecycle operations on one instance never interleave. */
  readonly #locks = new Map<string, Promise<void>>();
  /** Aborts an in-flight boot when the instance is stopped or removed meanwhile. */
  readonly booting = new Map<string, AbortController>();
  readonly restarts: RestartScheduler;
  readonly #rotateTimer: NodeJS.Timeout;
  readonly scaleToZero: ScaleToZero;
  readonly templates: TemplateStore;
  readonly metrics: ControllerMetrics;
  readonly primed: PrimedPool; // VMs restored paused ahead of cold wakes (primed/); empty without a budget
  readonly ownPrimed: ReturnType<typeof ownPrimedFor>; // the same for stateful instances, each from its own saved state
  readonly #diskErrors: DiskErrors;
  readonly #templateWarmupRequests: number;
  #disposed = false;

  constructor(opts: ControllerOptions, events: InstanceEventEmitter) {
    this.events = events;
    this.store = opts.store;
    this.driver = opts.driver;
    this.images = opts.images;
    this.log = opts.logger ?? silent;
    this.networks = new VmNetworks(opts.store, opts.network, this.log);
    this.volumes = opts.volumes;
    this.#readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    this.#stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
    this.#consoleOpts = opts.consoleLog ?? {};
    this.#accel = opts.accel;
    this.restarts = new RestartScheduler(opts.restartBackoff ?? { initialMs: 500, maxMs: 30_000 }, (id) => this.#restart(id));
    this.#rotateTimer = setInterval(() => void this.#rotateLogs(), 5000).unref();
    this.templates = new TemplateStore(opts.dataDir);
    this.metrics = new ControllerMetrics(this.events);
    this.#diskErrors = new DiskErrors(this.log);
    this.#templateWarmupRequests = opts.templateWarmupRequests ?? DEFAULT_TEMPLATE_WARMUP_REQUESTS;
    const hot = {
      budgetBytes: opts.hotStandby?.budgetBytes ?? Math.floor(os.totalmem() / 10),
      pageOutAfterMs: opts.hotStandby?.pageOutAfterMs ?? DEFAULT_PAGE_OUT_AFTER_MS,
      keepResident: opts.hotStandby?.keepResident ?? DEFAULT_KEEP_RESIDENT,
    };
    this.primed = new PrimedPool(opts.primedPool ?? { budgetBytes: 0 }, { driver: this.driver, network: opts.network, root: primedRoot(opts.dataDir), log: this.log });
    this.ownPrimed = ownPrimedFor(this, opts.primedPool, opts.network, primedRoot(opts.dataDir));
    this.scaleToZero = new ScaleToZero(this, { templates: this.templates, metrics: this.metrics, hot, templateWarmupRequests: this.#templateWarmupRequests });
  }

  /** Stops timers and lets go of the VMs without stopping them (a restarted flickd adopts them). */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    clearInterval(this.#rotateTimer);
    this.restarts.dispose();
    this.scaleToZero.dispose();
    for (const ac of this.booting.values()) ac.abort();
    await Promise.allSettled([...this.#locks.values()]);
    // Close QMP and control connections but leave the VMs running: the next flickd adopts them.
    for (const { vm } of this.live.values()) vm.release();
    this.live.clear();
    await Promise.all([this.primed.dispose(), this.ownPrimed.dispose()]); // unbound VMs end; bound ones are their instances'
    await this.networks.dispose();
  }

  // ---- the lifecycle, always inside serialize ----

  /** Moves to `starting` in the instance's queue (resolving with that record), then boots still holding the queue. */
  startWith(id: string, toStarting: (rec: InstanceRecord) => InstanceRecord): Promise<InstanceRecord> {
    const ac = new AbortController();
    return new Promise((resolve, reject) => {
      void this.serialize(id, async () => {
        try {
          const rec = toStarting(this.fresh(id));
          this.booting.set(id, ac);
          resolve(rec);
        } catch (err) {
          reject(err);
          return;
        }
        await this.#boot(id, ac);
      });
    });
  }

  async #boot(id: string, ac: AbortController): Promise<void> {
    let vm: MicroVm | undefined;
    try {
      await this.ownPrimed.drop(id, 'its instance boots');
      let rec = this.fresh(id);
      const image = await this.images.resolve(`${rec.spec.image.ref.replace(/[:@].*$/, '')}@${rec.spec.image.digest}`);
      const runDir = path.join(rec.status.dir, 'run');
      await this.consoleLog(rec).archive();
      await fsp.rm(runDir, { recursive: true, force: true });
      await fsp.mkdir(runDir, { recursive: true });
      if (!hasVolumes(rec) && (await this.scaleToZero.startAsleep(rec, this.vmConfig(rec, image)))) return;
      const config = await this.networks.attach(id, this.vmConfig(rec, image));
      const t0 = performance.now();
      vm = await this.driver.boot(config, { signal: ac.signal });
      this.watch(id, vm);
      const cur = this.fresh(id);
      rec = this.update(cur, {
        pid: vm.pid,
        vm: config,
        counters: { ...cur.status.counters, boots: cur.status.counters.boots + 1 },
        // A fresh boot's health is `starting` until its guest's first report.
        health: config.guest.healthcheck ? { status: 'starting', since: new Date().toISOString() } : undefined,
      });
      await this.awaitReady(id, vm, ac.signal, t0);
    } catch (err) {
      const live = this.live.get(id);
      if (live && live.vm === vm) {
        live.expectExit = true;
        await vm!.kill();
      }
      const rec = this.store.get(id);
      if (rec === undefined || ac.signal.aborted) return; // stop/rm asked for this; they settle the state
      await this.networks.release(id);
      const diskFull = this.#diskErrors.take(id);
      this.transition(this.fresh(id), 'failed', { error: diskFull ?? describeError(err), pid: null, vm: null });
      this.log.warn(`instance ${rec.name} failed to start: ${diskFull ?? describeError(err)}`);
      if (diskFull === undefined) this.restarts.onExit(this.store.get(id)!, 'failed');
    } finally {
      if (this.booting.get(id) === ac) this.booting.delete(id);
    }
  }

  async templateKey(rec: InstanceRecord): Promise<string> {
    return this.templateKeyWith(rec, await this.images.resolve(`${rec.spec.image.ref.replace(/[:@].*$/, '')}@${rec.spec.image.digest}`));
  }

  /** The template key of `rec` run from `image` (what its guest memory depends on). */
  templateKeyWith(rec: NewInstanceRecord, image: PreparedImage): string {
    return templateKey({
      imageDigest: rec.spec.image.digest,
      memoryMb: rec.spec.memoryMb,
      vcpus: rec.spec.vcpus,
      guest: vmGuestConfig(rec, image.config),
      port: readinessPort(rec.spec.service),
      warmupRequests: rec.spec.service.http ? this.#templateWarmupRequests : 0,
    });
  }

  /** Claims the instance's volumes for it (VOLUME_NOT_FOUND, VOLUME_IN_USE); a no-op without any. */
  async claimVolumes(rec: NewInstanceRecord): Promise<void> {
    if (!hasVolumes(rec)) return;
    if (!this.volumes) throw new ControllerError('INVALID_SPEC', `instance "${rec.name}" mounts volumes, but this flickd has no volume manager`, { kind: 'user' });
    await this.volumes.attach(rec.id, rec.spec.volumes!);
  }

  /** What the instance's VM runs with, before a network is attached. */
  vmConfig(rec: NewInstanceRecord, image: PreparedImage): VmConfig {
    const guest = vmGuestConfig(rec, image.config);
    const held = hasVolumes(rec) && this.volumes ? this.volumes.attachedTo(rec.id, rec.spec.volumes!) : [];
    return {
      id: rec.id,
      runDir: path.join(rec.status.dir, 'run'),
      kernel: image.paths.vmlinux,
      initrd: image.paths.initrd,
      rootfs: image.paths.rootfs,
      ...(held.length > 0 ? { drives: held.map((v) => ({ file: v.file, format: v.format, readOnly: v.readOnly, serial: v.id })) } : {}),
      memoryMb: rec.spec.memoryMb,
      vcpus: rec.spec.vcpus,
      guest: held.length > 0 ? { ...guest, mounts: held.map((v) => ({ serial: v.id, path: v.path, readOnly: v.readOnly })) } : guest,
      ...(this.#accel ? { accel: this.#accel } : {}),
    };
  }

  /** Waits for the service port, takes the template snapshot at first readiness, then `running`. */
  async awaitReady(id: string, vm: MicroVm, signal: AbortSignal, t0 = performance.now()): Promise<void> {
    const rec = this.fresh(id);
    const port = readinessPort(rec.spec.service);
    if (port !== undefined) await vm.waitForPort(port, { timeoutMs: this.#readyTimeoutMs, signal });
    this.events.emit('boot', { id, name: rec.name, durationMs: performance.now() - t0 });
    // No template with volumes: its memory would only match the disk as it is now (spec.ts resolveScaleToZero).
    if (rec.spec.scaleToZero.policy !== 'off' && rec.status.snapshots.template === undefined && !hasVolumes(rec)) await this.scaleToZero.takeTemplate(rec, vm);
    this.transition(this.fresh(id), 'running', { startedAt: new Date().toISOString() });
    this.restarts.onRunning(id);
    this.scaleToZero.onRunning(this.fresh(id));
  }

  /** Controller.start: cancels a pending restart, moves to `starting`, boots in the background. */
  start(id: string): Promise<InstanceRecord> {
    this.restarts.cancel(id);
    return this.startWith(id, (rec) => this.transition(rec, 'starting', { error: undefined }, 'start'));
  }

  /** Graceful stop (Controller.stop), or a kill: cancels a pending restart and an in-flight boot first. */
  stop(id: string, opts: { kill?: boolean } = {}): Promise<InstanceRecord> {
    this.restarts.cancel(id);
    this.booting.get(id)?.abort();
    return this.serialize(id, async () => this.halt(this.transition(this.fresh(id), 'stopping', {}, 'stop'), { kill: opts.kill === true }));
  }

  /** Removes the instance (Controller.rm, which checked `force`): kills its VM if it has one, then its network, folder and record. */
  async remove(id: string): Promise<void> {
    this.restarts.cancel(id);
    this.booting.get(id)?.abort();
    await this.serialize(id, async () => {
      let rec = this.fresh(id);
      if (hasProcess(rec.status.state) || rec.status.state === 'standby') rec = await this.halt(this.transition(rec, 'stopping', {}, 'stop'), { kill: true });
      await this.networks.release(id);
      await fsp.rm(rec.status.dir, { recursive: true, force: true });
      await this.store.remove(id, this.fresh(id).revision);
      // After the record: a crash in between leaves a claim that the next start's sweep drops.
      await this.volumes?.detach(id);
      this.scaleToZero.forget(id);
      // The last instance of a configuration takes its shared template (and its primed VMs) with it.
      if (await this.templates.releaseIfUnused(rec.status.snapshots.template?.dir, (dir) => this.store.usesTemplate(dir))) {
        await this.primed.dropTemplate(rec.status.snapshots.template!.dir);
        this.log.info(`template ${path.basename(rec.status.snapshots.template!.dir)} removed with its last instance`);
      }
      this.events.emit('removed', { id, name: rec.name });
    });
  }

  /** Ends the VM (if any) of an instance in `stopping`, releases its network, and records `stopped`. */
  async halt(rec: InstanceRecord, opts: { kill: boolean }): Promise<InstanceRecord> {
    await this.ownPrimed.drop(rec.id, 'its instance stops');
    const live = this.live.get(rec.id);
    let exit: VmExit | undefined;
    if (live) {
      live.expectExit = true;
      exit = opts.kill ? await live.vm.kill() : await live.vm.stop({ timeoutMs: this.#stopTimeoutMs });
    }
    await this.networks.release(rec.id);
    this.scaleToZero.onStopped(rec.id);
    const snapshots = { ...rec.status.snapshots };
    if (snapshots.own) {
      await fsp.rm(snapshots.own.dir, { recursive: true, force: true });
      delete snapshots.own; // a stop ends the instance's own state; the template stays valid
    }
    return this.transition(this.fresh(rec.id), 'stopped', {
      pid: null,
      vm: null,
      snapshots,
      standbyTier: undefined,
      health: undefined,
      stoppedAt: new Date().toISOString(),
      lastExitCode: exitCode(exit) ?? rec.status.lastExitCode,
    });
  }

  /** A VM ended that nobody asked to end: record how, release its network, apply the restart policy. */
  async exited(id: string, exit: VmExit, when = ''): Promise<void> {
    let rec = this.store.get(id);
    if (rec?.status.state === 'standby') return this.scaleToZero.onHotVmDied(id);
    if (rec === undefined || !hasProcess(rec.status.state)) return;
    const code = exitCode(exit);
    await this.networks.release(id);
    rec = this.fresh(id);
    const diskFull = this.#diskErrors.take(id);
    // A clean exit of the app (or the end of a stop flickd had begun) is `stopped`; anything else failed.
    const to: InstanceState = diskFull === undefined && (code === 0 || rec.status.state === 'stopping') ? 'stopped' : 'failed';
    const error = diskFull ?? (to === 'failed' ? `the VM exited ${when || 'unexpectedly'}${code === undefined ? '' : ` with code ${code}`}` : undefined);
    const next = this.transition(rec, to, { pid: null, vm: null, lastExitCode: code ?? null, stoppedAt: new Date().toISOString(), error });
    this.scaleToZero.onStopped(id);
    this.log.warn(`instance ${rec.name} ${to === 'failed' ? error : `exited with code ${code}`}`);
    if (rec.status.state !== 'stopping' && diskFull === undefined) this.restarts.onExit(next, to);
  }

  async #restart(id: string): Promise<void> {
    const rec = this.store.get(id);
    if (rec === undefined || this.#disposed) return;
    await this.startWith(id, (r) =>
      this.transition(r, 'starting', { error: undefined, counters: { ...r.status.counters, restarts: r.status.counters.restarts + 1 } }, 'restart'),
    ).catch((err) => this.log.info(`instance ${rec.name}: restart skipped: ${describeError(err)}`));
  }

  // ---- plumbing ----

  watch(id: string, vm: MicroVm): LiveVm {
    const live: LiveVm = { vm, expectExit: false };
    this.live.set(id, live);
    watchHealth(this, id, vm);
    this.#diskErrors.watch(id, vm, (i) => this.store.get(i));
    void vm.exited.then((exit) => {
      if (this.live.get(id) === live) this.live.delete(id);
      if (this.#disposed) return;
      const recorded = live.expectExit ? undefined : this.serialize(id, () => this.exited(id, exit));
      // A primed VM's folder is the instance's until the VM ends; queued after whatever records the end.
      if (this.primed.owns(vm.config.runDir)) void this.serialize(id, () => retirePrimedVm(this, this.primed, id, vm));
      return recorded;
    });
    return live;
  }

  serialize<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(() => {}, () => {});
    this.#locks.set(id, tail);
    void tail.then(() => {
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    });
    return run;
  }

  get(id: string): InstanceRecord | undefined {
    return this.store.get(id);
  }

  fresh(id: string): InstanceRecord {
    const rec = this.store.get(id);
    if (rec === undefined) throw new ControllerError('INSTANCE_NOT_FOUND', `instance ${id} was removed meanwhile`, { kind: 'user' });
    return rec;
  }

  /** Persists the new state first, then tells listeners. */
  transition(rec: InstanceRecord, to: InstanceState, patch: StatusPatch = {}, verb?: string): InstanceRecord {
    assertTransition(rec.name, rec.status.state, to, verb);
    const next = this.store.updateStatus(rec.id, rec.revision, { ...patch, state: to });
    this.events.emit('state', { id: rec.id, name: rec.name, from: rec.status.state, to, at: next.updatedAt });
    return next;
  }

  update(rec: InstanceRecord, patch: StatusPatch): InstanceRecord {
    return this.store.updateStatus(rec.id, rec.revision, patch);
  }

  releaseNetwork(id: string): Promise<void> {
    return this.networks.release(id);
  }

  vm(id: string): MicroVm | undefined {
    return this.live.get(id)?.vm;
  }

  restore(rec: InstanceRecord, snapshot: Snapshot, mode: RestoreOptions['mode']): Promise<WokenVm> {
    return restoreForWake(this, this.primed, this.ownPrimed, rec, snapshot, mode);
  }

  async kill(id: string, vm: MicroVm): Promise<void> {
    const live = this.live.get(id);
    if (live) live.expectExit = true;
    await vm.kill();
  }

  /** Also reads a primed VM's run folder while the instance's VM writes there (primed/bind.ts). */
  consoleLog(rec: InstanceRecord): ConsoleLog {
    const current = this.primed.owns(rec.status.vm?.runDir) ? { currentRunDir: rec.status.vm!.runDir } : {};
    return new ConsoleLog(rec.status.dir, path.join(rec.status.dir, 'run'), { ...this.#consoleOpts, ...current });
  }

  async #rotateLogs(): Promise<void> {
    for (const id of this.live.keys()) {
      const rec = this.store.get(id);
      if (rec) await this.consoleLog(rec).rotateIfLarge().catch((err) => this.log.warn(`log rotation of ${rec.name}: ${describeError(err)}`));
    }
  }
}

const exitCode = (exit: VmExit | undefined): number | undefined => (exit === undefined ? undefined : (exit.guestExitCode ?? exit.processCode ?? undefined));
