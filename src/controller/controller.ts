// The instance controller: a library (no HTTP, no argv) that owns every
// instance's lifecycle. It writes each state change to the store before acting
// on it, boots VMs through the VmmDriver seam, watches them die, applies the
// restart policy, and on startup re-adopts what a previous flickd left running.
// Scale to zero (wake/suspend, the proxy's Waker) lives in scale-to-zero.ts.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord } from '../store/instance-record.js';
import type { InstanceStore } from '../store/instance-store.js';
import type { MicroVm, VmConfig, VmExit, VmmDriver } from '../vmm/driver.js';
import { ConsoleLog, type ConsoleLogOptions } from './console-log.js';
import { InstanceEventEmitter } from './events.js';
import type { ControllerLogger, ImageResolver, InstanceNetwork, PreparedImage } from './seams.js';
import { VmNetworks } from './vm-networks.js';
import { defaultName, guestConfigFor, newInstanceRecord, readinessPort, validateName, vmGuestConfig, type InstanceSpec } from './spec.js';
import { waitForState } from './wait.js';
import { ControllerError, assertTransition, hasProcess, type InstanceState } from './states.js';
import { RestartScheduler } from './restart.js';
import { ScaleToZero, type WakeTarget } from './scale-to-zero.js';
import { DEFAULT_PAGE_OUT_AFTER_MS, type HotStandbyConfig } from './hot-standby.js';
import { DEFAULT_TEMPLATE_WARMUP_REQUESTS } from './template-warmup.js';
import { MemoryReclaimer } from './memory-reclaim.js';
import { ControllerMetrics } from './metrics.js';
import { TemplateStore, templateKey } from './templates.js';

export interface ControllerOptions {
  store: InstanceStore;
  driver: VmmDriver;
  images: ImageResolver;
  network: InstanceNetwork;
  /** Instances live under `<dataDir>/instances/<id>/`. */
  dataDir: string;
  logger?: ControllerLogger;
  /** How long a booting guest may take to accept a connection (TCG is slow: node needs ~6 s). */
  readyTimeoutMs?: number;
  /** How long a graceful stop waits before killing. */
  stopTimeoutMs?: number;
  restartBackoff?: { initialMs: number; maxMs: number };
  consoleLog?: ConsoleLogOptions;
  accel?: VmConfig['accel'];
  /** The hot standby tier: RAM budget (0: every suspend is cold) and when to page out. Default: 10% of host RAM, 10 s. */
  hotStandby?: Partial<HotStandbyConfig>;
  /** Where the cgroup v1 hierarchies are mounted (memory page-out of hot standby). */
  cgroupRoot?: string;
  /** GET / requests an HTTP app gets before its template snapshot (template-warmup.ts). Default 3; 0: none. */
  templateWarmupRequests?: number;
}

/** A VMM process the controller owns, and whether its exit is expected (stop, suspend). */
interface LiveVm {
  vm: MicroVm;
  expectExit: boolean;
}

const silent: ControllerLogger = { info() {}, warn() {} };

export class Controller {
  readonly events = new InstanceEventEmitter();
  readonly store: InstanceStore;
  readonly #driver: VmmDriver;
  readonly #images: ImageResolver;
  readonly #networks: VmNetworks;
  readonly #dataDir: string;
  readonly #log: ControllerLogger;
  readonly #readyTimeoutMs: number;
  readonly #stopTimeoutMs: number;
  readonly #consoleOpts: ConsoleLogOptions;
  readonly #accel: VmConfig['accel'];
  readonly #live = new Map<string, LiveVm>();
  /** One queue per instance: lifecycle operations on one instance never interleave. */
  readonly #locks = new Map<string, Promise<void>>();
  /** Aborts an in-flight boot when the instance is stopped or removed meanwhile. */
  readonly #booting = new Map<string, AbortController>();
  readonly #restarts: RestartScheduler;
  readonly #rotateTimer: NodeJS.Timeout;
  readonly scaleToZero: ScaleToZero;
  readonly templates: TemplateStore;
  readonly metrics: ControllerMetrics;
  readonly #reclaimer: MemoryReclaimer;
  readonly #hotConfig: HotStandbyConfig;
  readonly #templateWarmupRequests: number;
  #disposed = false;

  constructor(opts: ControllerOptions) {
    this.store = opts.store;
    this.#driver = opts.driver;
    this.#images = opts.images;
    this.#dataDir = opts.dataDir;
    this.#log = opts.logger ?? silent;
    this.#networks = new VmNetworks(opts.store, opts.network, this.#log);
    this.#readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    this.#stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
    this.#consoleOpts = opts.consoleLog ?? {};
    this.#accel = opts.accel;
    this.#restarts = new RestartScheduler(opts.restartBackoff ?? { initialMs: 500, maxMs: 30_000 }, (id) => this.#restart(id));
    this.#rotateTimer = setInterval(() => void this.#rotateLogs(), 5000).unref();
    this.templates = new TemplateStore(opts.dataDir);
    this.metrics = new ControllerMetrics(this.events);
    this.#reclaimer = new MemoryReclaimer(opts.cgroupRoot ? { cgroupRoot: opts.cgroupRoot } : {});
    this.#templateWarmupRequests = opts.templateWarmupRequests ?? DEFAULT_TEMPLATE_WARMUP_REQUESTS;
    this.#hotConfig = {
      budgetBytes: opts.hotStandby?.budgetBytes ?? Math.floor(os.totalmem() / 10),
      pageOutAfterMs: opts.hotStandby?.pageOutAfterMs ?? DEFAULT_PAGE_OUT_AFTER_MS,
    };
    this.scaleToZero = new ScaleToZero(this.#wakeTarget());
  }

  // ---- queries ----

  list(): InstanceRecord[] {
    return this.store.list();
  }

  /** By id or by name; INSTANCE_NOT_FOUND (a user error) otherwise. */
  get(idOrName: string): InstanceRecord {
    const rec = this.store.get(idOrName) ?? this.store.getByName(idOrName);
    if (rec === undefined) {
      throw new ControllerError('INSTANCE_NOT_FOUND', `instance "${idOrName}" not found: list instances with 'flick ls'`, { kind: 'user' });
    }
    return rec;
  }

  /** Resolves with the record once the instance is in `state`; START_FAILED if it fails instead. */
  wait(idOrName: string, state: InstanceState, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<InstanceRecord> {
    return waitForState(this.store, this.events, this.get(idOrName), state, opts);
  }

  /** The console log (oldest first); with `follow`, new output until `signal` aborts. */
  logs(idOrName: string, opts: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<Buffer> {
    const rec = this.get(idOrName);
    return this.#consoleLog(rec).read(opts);
  }

  // ---- commands ----

  /**
   * Validates, persists (stopped), then starts unless `autostart` is false.
   * Returns before the VM is ready. A scale-to-zero instance whose
   * configuration has a template already is stored straight into cold standby
   * (one write, no VM, no network), so creating thousands of them is cheap.
   */
  async create(spec: InstanceSpec): Promise<InstanceRecord> {
    const name = spec.name ?? defaultName(spec.image);
    validateName(name);
    const image = await this.#images.resolve(spec.image);
    const record = newInstanceRecord(spec, name, image, this.#dataDir);
    const { id, createdAt: now } = record;
    guestConfigFor(record, image.config); // fails now, as a 400, rather than at boot
    if (record.autostart) {
      const asleep = await this.scaleToZero.asleepAtCreate(record, this.#vmConfig(record, image), this.#templateKey(record, image));
      if (asleep) {
        this.store.insert(asleep);
        this.events.emit('state', { id, name, from: null, to: 'standby', at: now });
        return asleep;
      }
    }
    this.store.insert(record);
    this.events.emit('state', { id, name, from: null, to: 'stopped', at: now });
    return record.autostart ? this.start(id) : record;
  }

  /** Moves the instance to `starting` and boots it in the background; `wait(id, 'running')` to know when it is ready. */
  start(idOrName: string): Promise<InstanceRecord> {
    const { id } = this.get(idOrName);
    this.#restarts.cancel(id);
    return this.#startWith(id, (rec) => this.#transition(rec, 'starting', { error: undefined }, 'start'));
  }

  /** Graceful stop: the guest gets `poweroff`, the app SIGTERM; killed after stopTimeoutMs. */
  async stop(idOrName: string): Promise<InstanceRecord> {
    const { id } = this.get(idOrName);
    this.#restarts.cancel(id);
    this.#booting.get(id)?.abort();
    return this.#serialize(id, async () => {
      const rec = this.#transition(this.#fresh(id), 'stopping', {}, 'stop');
      return this.#halt(rec, { kill: false });
    });
  }

  /** Removes the instance; one with a VM needs `force` (which stops it first). */
  async rm(idOrName: string, opts: { force?: boolean } = {}): Promise<void> {
    const { id, name, state } = this.get(idOrName);
    if (!opts.force && (hasProcess(state) || state === 'standby')) {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot remove instance "${name}": it is ${state}: stop it first ('flick stop ${name}') or use 'flick rm -f ${name}'`, {
        kind: 'user',
        details: { from: state },
      });
    }
    this.#restarts.cancel(id);
    this.#booting.get(id)?.abort();
    await this.#serialize(id, async () => {
      let rec = this.#fresh(id);
      if (hasProcess(rec.state) || rec.state === 'standby') rec = await this.#halt(this.#transition(rec, 'stopping', {}, 'stop'), { kill: true });
      await this.#networks.release(id);
      await fsp.rm(rec.dir, { recursive: true, force: true });
      this.store.delete(id);
      this.scaleToZero.forget(id);
      // The last instance of a configuration takes its shared template with it.
      if (await this.templates.releaseIfUnused(rec.snapshots.template?.dir, (dir) => this.store.usesTemplate(dir))) this.#log.info(`template ${path.basename(rec.snapshots.template!.dir)} removed with its last instance`);
      this.events.emit('removed', { id, name: rec.name });
    });
  }

  /**
   * Suspends a running scale-to-zero instance now (as its cooldown would, open
   * connections or not; never with a request in flight), to the hot tier or, with
   * `tier: 'cold'`, without a process; `cold` on a hot-standby instance demotes it.
   * Resolves with the record afterwards (still `running` if a request was in flight).
   */
  async suspend(idOrName: string, opts: { tier?: 'hot' | 'cold' } = {}): Promise<InstanceRecord> {
    const rec = this.get(idOrName);
    if (rec.scaleToZero.policy === 'off') {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot suspend instance "${rec.name}": its scale to zero is off: create it with a policy (--scale-to-zero on)`, { kind: 'user' });
    }
    await this.scaleToZero.suspend(rec.id, { ...(opts.tier ? { tier: opts.tier } : {}), force: true });
    return this.get(rec.id);
  }

  /** The hot standby tier: its budget, what it holds now, and who is in it (least recently suspended first). */
  hotStandby(): { budgetBytes: number; pageOutAfterMs: number; usedBytes: number; instances: string[] } {
    const hot = this.scaleToZero.hot;
    return { budgetBytes: hot.config.budgetBytes, pageOutAfterMs: hot.config.pageOutAfterMs, usedBytes: hot.usedBytes(), instances: hot.ids() };
  }

  /**
   * At flickd start: re-adopts VMs a previous flickd left running, marks those
   * that died meanwhile (and applies their restart policy), then removes every
   * instance network nothing uses any more.
   */
  async reconcile(): Promise<{ adopted: string[]; died: string[] }> {
    const adopted: string[] = [];
    const died: string[] = [];
    for (const rec of this.store.list()) {
      if (rec.state === 'standby' && rec.pid !== null) {
        await this.#adoptHotStandby(rec);
        continue;
      }
      if (!hasProcess(rec.state)) continue;
      let vm: MicroVm | undefined;
      if (rec.pid !== null && rec.vm !== null) {
        vm = await this.#driver.adopt(rec.vm, rec.pid).catch((err) => {
          this.#log.info(`instance ${rec.name}: VM ${rec.pid} is gone (${describeError(err)})`);
          return undefined;
        });
      }
      if (vm === undefined) {
        died.push(rec.id);
        await this.#serialize(rec.id, () => this.#exited(rec.id, { processCode: null, processSignal: null }, 'while flickd was down'));
        continue;
      }
      adopted.push(rec.id);
      this.#watch(rec.id, vm);
      if (rec.state === 'stopping') void this.#serialize(rec.id, async () => void (await this.#halt(this.#fresh(rec.id), { kill: false })));
      else if (rec.state === 'starting') void this.#serialize(rec.id, () => this.#awaitReady(rec.id, vm!, new AbortController().signal));
      else if (rec.state === 'draining') void this.#serialize(rec.id, async () => void this.#transition(this.#fresh(rec.id), 'running'));
    }
    await this.#networks.reconcile((id) => this.#live.has(id));
    const unused = await this.templates.sweep(this.store.list());
    if (unused.length > 0) this.#log.info(`removed ${unused.length} template(s) no instance uses`);
    this.#log.info(`reconciled: ${adopted.length} VM(s) adopted, ${died.length} found dead`);
    return { adopted, died };
  }

  /** A hot-standby VM a previous flickd left paused: adopt it, or fall back to cold (stateless) / failed (stateful). */
  async #adoptHotStandby(rec: InstanceRecord): Promise<void> {
    const vm = rec.vm ? await this.#driver.adopt(rec.vm, rec.pid!).catch(() => undefined) : undefined;
    if (vm) {
      this.#watch(rec.id, vm);
      this.scaleToZero.hot.add(rec.id);
      return;
    }
    await this.#serialize(rec.id, () => this.scaleToZero.onHotVmDied(rec.id));
  }

  /** Stops timers and lets go of the VMs without stopping them (a restarted flickd adopts them). */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    clearInterval(this.#rotateTimer);
    this.#restarts.dispose();
    this.scaleToZero.dispose();
    for (const ac of this.#booting.values()) ac.abort();
    await Promise.allSettled([...this.#locks.values()]);
    // Close QMP and control connections but leave the VMs running: the next flickd adopts them.
    for (const { vm } of this.#live.values()) vm.release();
    this.#live.clear();
    await this.#networks.dispose();
  }

  // ---- the lifecycle, always inside #serialize ----

  /** Moves to `starting` in the instance's queue (resolving with that record), then boots still holding the queue. */
  #startWith(id: string, toStarting: (rec: InstanceRecord) => InstanceRecord): Promise<InstanceRecord> {
    const ac = new AbortController();
    return new Promise((resolve, reject) => {
      void this.#serialize(id, async () => {
        try {
          const rec = toStarting(this.#fresh(id));
          this.#booting.set(id, ac);
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
      let rec = this.#fresh(id);
      const image = await this.#images.resolve(`${rec.image.ref.replace(/[:@].*$/, '')}@${rec.image.digest}`);
      const runDir = path.join(rec.dir, 'run');
      await this.#consoleLog(rec).archive();
      await fsp.rm(runDir, { recursive: true, force: true });
      await fsp.mkdir(runDir, { recursive: true });
      if (await this.scaleToZero.startAsleep(rec, this.#vmConfig(rec, image))) return;
      const config = await this.#networks.attach(id, this.#vmConfig(rec, image));
      const t0 = performance.now();
      vm = await this.#driver.boot(config, { signal: ac.signal });
      this.#watch(id, vm);
      rec = this.store.update(id, { pid: vm.pid, vm: config, counters: { ...rec.counters, boots: rec.counters.boots + 1 } });
      await this.#awaitReady(id, vm, ac.signal, t0);
    } catch (err) {
      const live = this.#live.get(id);
      if (live && live.vm === vm) {
        live.expectExit = true;
        await vm!.kill();
      }
      const rec = this.store.get(id);
      if (rec === undefined || ac.signal.aborted) return; // stop/rm asked for this; they settle the state
      await this.#networks.release(id);
      this.#transition(this.#fresh(id), 'failed', { error: describeError(err), pid: null, vm: null });
      this.#log.warn(`instance ${rec.name} failed to start: ${describeError(err)}`);
      this.#restarts.onExit(this.store.get(id)!, 'failed');
    } finally {
      if (this.#booting.get(id) === ac) this.#booting.delete(id);
    }
  }

  async #templateKeyOf(rec: InstanceRecord): Promise<string> {
    return this.#templateKey(rec, await this.#images.resolve(`${rec.image.ref.replace(/[:@].*$/, '')}@${rec.image.digest}`));
  }

  #templateKey(rec: InstanceRecord, image: PreparedImage): string {
    return templateKey({
      imageDigest: rec.image.digest,
      memoryMb: rec.memoryMb,
      vcpus: rec.vcpus,
      guest: vmGuestConfig(rec, image.config),
      port: readinessPort(rec.service),
      warmupRequests: rec.service.http ? this.#templateWarmupRequests : 0,
    });
  }

  /** What the instance's VM runs with, before a network is attached. */
  #vmConfig(rec: InstanceRecord, image: PreparedImage): VmConfig {
    return {
      id: rec.id,
      runDir: path.join(rec.dir, 'run'),
      kernel: image.paths.vmlinux,
      initrd: image.paths.initrd,
      rootfs: image.paths.rootfs,
      memoryMb: rec.memoryMb,
      vcpus: rec.vcpus,
      guest: vmGuestConfig(rec, image.config),
      ...(this.#accel ? { accel: this.#accel } : {}),
    };
  }

  /** Waits for the service port, takes the template snapshot at first readiness, then `running`. */
  async #awaitReady(id: string, vm: MicroVm, signal: AbortSignal, t0 = performance.now()): Promise<void> {
    const rec = this.#fresh(id);
    const port = readinessPort(rec.service);
    if (port !== undefined) await vm.waitForPort(port, { timeoutMs: this.#readyTimeoutMs, signal });
    this.events.emit('boot', { id, name: rec.name, durationMs: performance.now() - t0 });
    if (rec.scaleToZero.policy !== 'off' && rec.snapshots.template === undefined) await this.scaleToZero.takeTemplate(rec, vm);
    this.#transition(this.#fresh(id), 'running', { startedAt: new Date().toISOString() });
    this.#restarts.onRunning(id);
    this.scaleToZero.onRunning(this.#fresh(id));
  }

  /** Ends the VM (if any) of an instance in `stopping`, releases its network, and records `stopped`. */
  async #halt(rec: InstanceRecord, opts: { kill: boolean }): Promise<InstanceRecord> {
    const live = this.#live.get(rec.id);
    let exit: VmExit | undefined;
    if (live) {
      live.expectExit = true;
      exit = opts.kill ? await live.vm.kill() : await live.vm.stop({ timeoutMs: this.#stopTimeoutMs });
    }
    await this.#networks.release(rec.id);
    this.scaleToZero.onStopped(rec.id);
    const snapshots = { ...rec.snapshots };
    if (snapshots.own) {
      await fsp.rm(snapshots.own.dir, { recursive: true, force: true });
      delete snapshots.own; // a stop ends the instance's own state; the template stays valid
    }
    return this.#transition(this.#fresh(rec.id), 'stopped', {
      pid: null,
      vm: null,
      snapshots,
      standbyTier: undefined,
      stoppedAt: new Date().toISOString(),
      lastExitCode: exitCode(exit) ?? rec.lastExitCode,
    });
  }

  /** A VM ended that nobody asked to end: record how, release its network, apply the restart policy. */
  async #exited(id: string, exit: VmExit, when = ''): Promise<void> {
    let rec = this.store.get(id);
    if (rec?.state === 'standby') return this.scaleToZero.onHotVmDied(id);
    if (rec === undefined || !hasProcess(rec.state)) return;
    const code = exitCode(exit);
    await this.#networks.release(id);
    rec = this.#fresh(id);
    // A clean exit of the app (or the end of a stop flickd had begun) is `stopped`; anything else failed.
    const to: InstanceState = code === 0 || rec.state === 'stopping' ? 'stopped' : 'failed';
    const error = to === 'failed' ? `the VM exited ${when || 'unexpectedly'}${code === undefined ? '' : ` with code ${code}`}` : undefined;
    const next = this.#transition(rec, to, { pid: null, vm: null, lastExitCode: code ?? null, stoppedAt: new Date().toISOString(), error });
    this.scaleToZero.onStopped(id);
    this.#log.warn(`instance ${rec.name} ${to === 'failed' ? error : `exited with code ${code}`}`);
    if (rec.state !== 'stopping') this.#restarts.onExit(next, to);
  }

  async #restart(id: string): Promise<void> {
    const rec = this.store.get(id);
    if (rec === undefined || this.#disposed) return;
    await this.#startWith(id, (r) =>
      this.#transition(r, 'starting', { error: undefined, counters: { ...r.counters, restarts: r.counters.restarts + 1 } }, 'restart'),
    ).catch((err) => this.#log.info(`instance ${rec.name}: restart skipped: ${describeError(err)}`));
  }

  // ---- plumbing ----

  #watch(id: string, vm: MicroVm): LiveVm {
    const live: LiveVm = { vm, expectExit: false };
    this.#live.set(id, live);
    void vm.exited.then((exit) => {
      if (this.#live.get(id) === live) this.#live.delete(id);
      if (!this.#disposed) void this.#reclaimer.forget(id);
      if (live.expectExit || this.#disposed) return;
      return this.#serialize(id, () => this.#exited(id, exit));
    });
    return live;
  }

  #serialize<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#locks.set(id, tail);
    void tail.then(() => {
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    });
    return run;
  }

  #fresh(id: string): InstanceRecord {
    const rec = this.store.get(id);
    if (rec === undefined) throw new ControllerError('INSTANCE_NOT_FOUND', `instance ${id} was removed meanwhile`, { kind: 'user' });
    return rec;
  }

  /** Persists the new state first, then tells listeners. */
  #transition(rec: InstanceRecord, to: InstanceState, patch: Partial<InstanceRecord> = {}, verb?: string): InstanceRecord {
    assertTransition(rec.name, rec.state, to, verb);
    const next = this.store.update(rec.id, { ...patch, state: to });
    this.events.emit('state', { id: rec.id, name: rec.name, from: rec.state, to, at: next.updatedAt });
    return next;
  }

  #consoleLog(rec: InstanceRecord): ConsoleLog {
    return new ConsoleLog(rec.dir, path.join(rec.dir, 'run'), this.#consoleOpts);
  }

  async #rotateLogs(): Promise<void> {
    for (const id of this.#live.keys()) {
      const rec = this.store.get(id);
      if (rec) await this.#consoleLog(rec).rotateIfLarge().catch((err) => this.#log.warn(`log rotation of ${rec.name}: ${describeError(err)}`));
    }
  }

  /** What scale-to-zero needs from the controller, and nothing more. */
  #wakeTarget(): WakeTarget {
    return {
      store: this.store,
      driver: this.#driver,
      events: this.events,
      log: this.#log,
      readyTimeoutMs: this.#readyTimeoutMs,
      live: (id) => this.#live.get(id)?.vm,
      watch: (id, vm) => void this.#watch(id, vm),
      expectExit: (id) => {
        const live = this.#live.get(id);
        if (live) live.expectExit = true;
      },
      serialize: (id, fn) => this.#serialize(id, fn),
      transition: (rec, to, patch) => this.#transition(rec, to, patch),
      fresh: (id) => this.#fresh(id),
      templates: this.templates,
      templateKey: (rec) => this.#templateKeyOf(rec),
      attachNetwork: (id, config) => this.#networks.attach(id, config),
      releaseNetwork: (id) => this.#networks.release(id),
      reclaimer: this.#reclaimer,
      metrics: this.metrics,
      hot: this.#hotConfig,
      templateWarmupRequests: this.#templateWarmupRequests,
    };
  }
}

function exitCode(exit: VmExit | undefined): number | undefined {
  if (exit === undefined) return undefined;
  return exit.guestExitCode ?? exit.processCode ?? undefined;
}
