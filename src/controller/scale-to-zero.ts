// Scale to zero: the template snapshot taken at first readiness (shared by
// every instance of the same image and configuration, templates.ts), suspend
// after a cooldown with no request in flight, and wake. It is the proxy's
// Waker: `ensureAwake` returns where to send a request (waking the instance if
// it sleeps), `requestStarted/Finished` keep it awake meanwhile. Concurrent
// wakes of one instance share one promise, so 200 parked requests cause one.
//
// Two tiers of standby (hot-standby.ts): *hot* keeps the paused VMM process (a
// wake is `cont` plus a clock sync), *cold* has none (a wake restores: the
// template for stateless instances, the instance's own state for stateful
// ones). A stateless instance promises nothing about its memory across
// standby: a cold wake starts from the template, a hot wake resumes where it
// paused. Policy `on` suspends only with no open client connection; `idle`
// also with idle ones open (the proxy re-wakes under them on their next byte).
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord } from '../store/instance-record.js';
import type { InstanceStore } from '../store/instance-store.js';
import type { MicroVm, VmConfig, VmmDriver } from '../vmm/driver.js';
import type { InstanceEventEmitter } from './events.js';
import type { HotStandby, HotStandbyConfig } from './hot-standby.js';
import type { MemoryReclaimer } from './memory-reclaim.js';
import { StandbyTiers } from './standby-tiers.js';
import type { ControllerMetrics, StandbyTier } from './metrics.js';
import type { ControllerLogger } from './seams.js';
import { readinessPort } from './spec.js';
import { ControllerError, type InstanceState } from './states.js';
import { warmUp } from './template-warmup.js';
import type { TemplateStore } from './templates.js';

/** Where the proxy sends an awake instance's traffic (the proxy's AwakeInstance, plus the port). */
export interface Upstream {
  host: string;
  port: number;
  /** Aborted, synchronously, the moment the controller decides to suspend or stop the instance. */
  asleep: AbortSignal;
}

/** The controller internals scale-to-zero works through (passed in by the controller). */
export interface WakeTarget {
  store: InstanceStore;
  driver: VmmDriver;
  events: InstanceEventEmitter;
  log: ControllerLogger;
  readyTimeoutMs: number;
  live(id: string): MicroVm | undefined;
  watch(id: string, vm: MicroVm): void;
  expectExit(id: string): void;
  serialize<T>(id: string, fn: () => Promise<T>): Promise<T>;
  transition(rec: InstanceRecord, to: InstanceState, patch?: Partial<InstanceRecord>): InstanceRecord;
  fresh(id: string): InstanceRecord;
  templates: TemplateStore;
  /** The template key of an instance (what its guest memory depends on). */
  templateKey(rec: InstanceRecord): Promise<string>;
  /** Takes a network for a VM about to run, persists it with the record, returns `config` with it. */
  attachNetwork(id: string, config: VmConfig): Promise<VmConfig>;
  /** The instance's VM has ended: its network goes (no-op when it holds none). */
  releaseNetwork(id: string): Promise<void>;
  reclaimer: MemoryReclaimer;
  metrics: ControllerMetrics;
  hot: HotStandbyConfig;
  /** GET / requests an HTTP app gets before its template is taken (template-warmup.ts); 0: none. */
  templateWarmupRequests: number;
}

export class ScaleToZero {
  readonly #t: WakeTarget;
  readonly #inFlight = new Map<string, number>();
  /** Open client connections (policy `on` waits for them to close; `idle` does not). */
  readonly #connections = new Map<string, number>();
  /** One per awake period of an instance; aborted when it goes to standby or stops. */
  readonly #awake = new Map<string, AbortController>();
  readonly #idleTimers = new Map<string, NodeJS.Timeout>();
  readonly #wakes = new Map<string, Promise<Upstream>>();
  readonly tiers: StandbyTiers;

  constructor(target: WakeTarget) {
    this.#t = target;
    this.tiers = new StandbyTiers(target);
  }

  /** The hot tier: which instances keep a paused process, the budget, page-out timers. */
  get hot(): HotStandby {
    return this.tiers.hot;
  }

  /**
   * Finds or takes the shared template of `rec`'s configuration and records it.
   * Taking one warms an HTTP app up (a few GET /, template-warmup.ts), pauses the
   * VM, saves device state with a sparse copy of the RAM file (`keepRunning`:
   * the VM goes on in its own file) and resumes it.
   */
  async takeTemplate(rec: InstanceRecord, vm: MicroVm): Promise<void> {
    const key = await this.#t.templateKey(rec);
    const t0 = performance.now();
    try {
      const { snapshot, taken } = await this.#t.templates.ensure(key, async (dir) => {
        await this.#warmUp(rec, vm);
        await vm.pause();
        try {
          return await vm.createSnapshot(dir, { keepRunning: true });
        } finally {
          await vm.resume();
        }
      });
      this.#t.store.update(rec.id, { snapshots: { ...this.#t.fresh(rec.id).snapshots, template: snapshot } });
      if (!taken) return;
      const durationMs = performance.now() - t0;
      this.#t.events.emit('snapshot', { id: rec.id, name: rec.name, kind: 'template', durationMs });
      this.#t.log.info(`instance ${rec.name}: template snapshot ${key} in ${durationMs.toFixed(1)} ms (paused meanwhile)`);
    } catch (err) {
      // Without a template the instance still runs; it just cannot sleep statelessly.
      this.#t.log.warn(`instance ${rec.name}: template snapshot failed, scale to zero stays off until the next start: ${describeError(err)}`);
    }
  }

  /** Before a template: a few GET / so the app's first-request work is in the template, not in every wake. */
  async #warmUp(rec: InstanceRecord, vm: MicroVm): Promise<void> {
    const http = rec.service.http;
    const host = vm.config.network?.hostReachableIp;
    const requests = this.#t.templateWarmupRequests;
    if (http === undefined || host === undefined || requests === 0) return;
    const t0 = performance.now();
    const answered = await warmUp({ host, port: http.guestPort, hostname: http.hostname }, requests);
    this.#t.log.info(`instance ${rec.name}: ${answered} of ${requests} warm-up requests answered in ${(performance.now() - t0).toFixed(0)} ms before its template`);
  }

  /**
   * The start of a scale-to-zero instance whose configuration already has a
   * shared template: no boot; it goes to cold standby at once and its first
   * request wakes it from the template (stateful: from its own copy of it).
   * Returns false if there is no template yet and the instance must boot.
   */
  async startAsleep(rec: InstanceRecord, config: VmConfig): Promise<boolean> {
    if (rec.scaleToZero.policy === 'off') return false;
    const patch = await this.#asleep(rec, config, await this.#t.templateKey(rec));
    if (patch === undefined) return false;
    this.#t.transition(this.#t.fresh(rec.id), 'standby', patch);
    return true;
  }

  /**
   * `rec` (not stored yet) as it is stored when its template exists: in cold
   * standby, no VM, no network. Undefined when it must boot first. The
   * controller's create stores this in one write.
   */
  async asleepAtCreate(rec: InstanceRecord, config: VmConfig, key: string): Promise<InstanceRecord | undefined> {
    if (rec.scaleToZero.policy === 'off') return undefined;
    const patch = await this.#asleep(rec, config, key);
    return patch && { ...rec, ...patch, state: 'standby' };
  }

  /** A cold standby's record fields (config without a network: a wake attaches one). */
  async #asleep(rec: InstanceRecord, config: VmConfig, key: string): Promise<Partial<InstanceRecord> | undefined> {
    const template = this.#t.templates.find(key);
    if (template === undefined) return undefined;
    const snapshots = { ...rec.snapshots, template };
    if (rec.scaleToZero.stateful && snapshots.own === undefined) snapshots.own = await this.#t.templates.ownCopy(template, path.join(rec.dir, 'snapshots', 'own'));
    const vm: VmConfig = { ...config };
    delete vm.network;
    return { vm, pid: null, snapshots, standbyTier: 'cold', startedAt: new Date().toISOString() };
  }

  /** The proxy's entry: where to send a request for `id`, waking the instance if it sleeps. */
  async ensureAwake(id: string, signal?: AbortSignal): Promise<Upstream> {
    for (;;) {
      signal?.throwIfAborted();
      const rec = this.#t.fresh(id);
      switch (rec.state) {
        case 'running':
          return this.#upstream(rec);
        case 'standby':
          return await this.wake(id);
        case 'starting':
        case 'draining':
          await this.#nextState(id, signal); // a suspend or boot in progress: look again when it settles
          continue;
        default:
          throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" is ${rec.state}: start it with 'flick start ${rec.name}'`, { kind: 'user' });
      }
    }
  }

  /** Restores a standby instance (template or own state). Concurrent calls share one wake. */
  wake(id: string): Promise<Upstream> {
    let p = this.#wakes.get(id);
    if (p === undefined) {
      p = this.#t.serialize(id, () => this.#wake(id)).finally(() => this.#wakes.delete(id));
      this.#wakes.set(id, p);
    }
    return p;
  }

  async #wake(id: string): Promise<Upstream> {
    const rec = this.#t.fresh(id);
    if (rec.state === 'running') return this.#upstream(rec);
    if (rec.state !== 'standby') throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" is ${rec.state}, not in standby: start it with 'flick start ${rec.name}'`, { kind: 'user' });
    const vm = this.#t.live(id);
    if (rec.standbyTier === 'hot' && vm !== undefined) {
      try {
        return await this.#wakeHot(rec, vm);
      } catch (err) {
        this.#t.log.warn(`instance ${rec.name}: hot wake failed, waking cold: ${describeError(err)}`);
        this.#t.expectExit(id);
        await vm.kill();
        if (rec.scaleToZero.stateful) {
          this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `wake failed: ${describeError(err)}` });
          throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" could not wake: ${describeError(err)}`, { cause: err });
        }
        this.#t.store.update(id, { pid: null, standbyTier: 'cold', state: 'standby' });
        await this.#t.releaseNetwork(id);
      }
    }
    return this.#wakeCold(this.#t.fresh(id));
  }

  /** Hot: the paused process goes on. The clock answer is awaited: the app must not see a request with a stale clock. */
  async #wakeHot(rec: InstanceRecord, vm: MicroVm): Promise<Upstream> {
    const t0 = performance.now();
    this.hot.remove(rec.id);
    const starting = this.#t.transition(rec, 'starting');
    await vm.resume(); // resolves with the guest clock set (driver contract)
    return this.#woke(starting, 'hot', t0);
  }

  async #wakeCold(rec: InstanceRecord): Promise<Upstream> {
    const t0 = performance.now();
    const id = rec.id;
    const snapshot = rec.scaleToZero.stateful ? rec.snapshots.own : rec.snapshots.template;
    if (rec.vm === null || snapshot === undefined) {
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" has no snapshot to wake from: restart it with 'flick stop ${rec.name} && flick start ${rec.name}'`);
    }
    rec = this.#t.transition(rec, 'starting');
    let vm: MicroVm | undefined;
    try {
      // A cold standby holds no network: this one (ready-made, from the pool) carries a new host address.
      const config = await this.#t.attachNetwork(id, rec.vm!);
      vm = await this.#t.driver.restore(config, snapshot, { mode: rec.scaleToZero.stateful ? 'own' : 'clone' });
      this.#t.watch(id, vm);
      this.#t.store.update(id, { pid: vm.pid });
      // No readiness probe: every snapshot was taken with the app listening (the template at
      // readiness, own state while running), and a probe is a connection the app would see.
      if (rec.scaleToZero.stateful) {
        // The snapshot was consumed: the VM runs in its RAM file now.
        const snapshots = { ...this.#t.fresh(id).snapshots };
        delete snapshots.own;
        this.#t.store.update(id, { snapshots });
      }
      return this.#woke(this.#t.fresh(id), 'cold', t0);
    } catch (err) {
      if (vm) {
        this.#t.expectExit(id);
        await vm.kill();
      }
      await this.#t.releaseNetwork(id);
      this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `wake failed: ${describeError(err)}` });
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" could not wake: ${describeError(err)}`, { cause: err });
    }
  }

  #woke(cur: InstanceRecord, tier: StandbyTier, t0: number): Upstream {
    const c = cur.counters;
    const counters = { ...c, wakes: c.wakes + 1, ...(tier === 'hot' ? { wakesHot: (c.wakesHot ?? 0) + 1 } : { wakesCold: (c.wakesCold ?? 0) + 1 }) };
    const next = this.#t.transition(cur, 'running', { counters, standbyTier: undefined });
    const durationMs = performance.now() - t0;
    this.#t.events.emit('wake', { id: cur.id, name: cur.name, durationMs, mode: tier === 'hot' ? 'resume' : cur.scaleToZero.stateful ? 'own' : 'template' });
    this.onRunning(next);
    return this.#upstream(next);
  }

  /**
   * Suspends a running instance now if it has no request in flight (no-op
   * otherwise): hot when the hot tier is on (or `tier` asks), else cold. On an
   * instance already in hot standby, `tier: 'cold'` demotes it.
   */
  suspend(id: string, opts: { tier?: StandbyTier; force?: boolean } = {}): Promise<void> {
    const rec0 = this.#t.store.get(id);
    if (rec0?.state === 'standby' && rec0.standbyTier === 'hot' && opts.tier === 'cold') return this.demote(id);
    return this.#t.serialize(id, async () => {
      let rec = this.#t.store.get(id);
      if (rec === undefined || rec.state !== 'running' || (this.#inFlight.get(id) ?? 0) > 0) return;
      if (rec.scaleToZero.policy === 'off') return;
      if (rec.scaleToZero.policy === 'on' && !opts.force && (this.#connections.get(id) ?? 0) > 0) return;
      if (!rec.scaleToZero.stateful && rec.snapshots.template === undefined) return;
      const vm = this.#t.live(id);
      if (vm === undefined) return;
      const tier: StandbyTier = opts.tier ?? (this.hot.enabled ? 'hot' : 'cold');
      // In the same turn as the in-flight check: from here the proxy forwards nothing to this VM.
      this.#sleep(id);
      this.#clearIdle(id);
      rec = this.#t.transition(rec, 'draining');
      try {
        await vm.pause();
        if (tier === 'hot') {
          this.#t.transition(this.#t.fresh(id), 'standby', { standbyTier: 'hot' });
          this.#t.metrics.of(id).suspends.hot += 1;
          this.hot.add(id);
          return;
        }
        await this.tiers.endPaused(this.#t.fresh(id), vm);
        this.#t.metrics.of(id).suspends.cold += 1;
      } catch (err) {
        this.#t.expectExit(id);
        await vm.kill();
        this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `suspend failed: ${describeError(err)}` });
      }
    });
  }

  /** Hot → cold (see standby-tiers.ts). */
  demote(id: string): Promise<void> {
    return this.tiers.demote(id);
  }

  /** A hot-standby VM died on its own (see standby-tiers.ts). */
  onHotVmDied(id: string): Promise<void> {
    return this.tiers.onHotVmDied(id);
  }

  requestStarted(id: string): void {
    this.#inFlight.set(id, (this.#inFlight.get(id) ?? 0) + 1);
    this.#clearIdle(id);
  }

  requestFinished(id: string): void {
    const n = Math.max(0, (this.#inFlight.get(id) ?? 0) - 1);
    this.#inFlight.set(id, n);
    if (n === 0) {
      const rec = this.#t.store.get(id);
      if (rec) this.#scheduleIdle(rec);
    }
  }

  /** Called when an instance becomes running: start its cooldown. */
  onRunning(rec: InstanceRecord): void {
    if ((this.#inFlight.get(rec.id) ?? 0) === 0) this.#scheduleIdle(rec);
  }

  connectionOpened(id: string): void {
    this.#connections.set(id, (this.#connections.get(id) ?? 0) + 1);
  }

  connectionClosed(id: string): void {
    const n = Math.max(0, (this.#connections.get(id) ?? 0) - 1);
    this.#connections.set(id, n);
    if (n === 0 && (this.#inFlight.get(id) ?? 0) === 0) {
      const rec = this.#t.store.get(id);
      if (rec) this.#scheduleIdle(rec);
    }
  }

  /** The instance's VM is gone (stop, crash): addresses handed out so far are dead. */
  onStopped(id: string): void {
    this.#clearIdle(id);
    this.#sleep(id);
    this.hot.remove(id);
  }

  forget(id: string): void {
    this.onStopped(id);
    this.#inFlight.delete(id);
    this.#connections.delete(id);
  }

  #sleep(id: string): void {
    this.#awake.get(id)?.abort();
    this.#awake.delete(id);
  }

  #upstream(rec: InstanceRecord): Upstream {
    const host = rec.vm?.network?.hostReachableIp;
    const port = readinessPort(rec.service);
    if (host === undefined || port === undefined) {
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" has no network service to route to: create it with a port (-p)`, { kind: 'user' });
    }
    let ac = this.#awake.get(rec.id);
    if (ac === undefined) this.#awake.set(rec.id, (ac = new AbortController()));
    return { host, port, asleep: ac.signal };
  }

  dispose(): void {
    for (const t of this.#idleTimers.values()) clearTimeout(t);
    this.#idleTimers.clear();
    this.hot.dispose();
  }

  #scheduleIdle(rec: InstanceRecord): void {
    this.#clearIdle(rec.id);
    if (rec.scaleToZero.policy === 'off') return;
    const timer = setTimeout(() => {
      this.#idleTimers.delete(rec.id);
      void this.suspend(rec.id).catch((err) => this.#t.log.warn(`instance ${rec.name}: suspend: ${describeError(err)}`));
    }, rec.scaleToZero.cooldownTimeMs);
    this.#idleTimers.set(rec.id, timer);
  }

  #clearIdle(id: string): void {
    clearTimeout(this.#idleTimers.get(id));
    this.#idleTimers.delete(id);
  }

  #nextState(id: string, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const off = this.#t.events.on('state', (e) => {
        if (e.id !== id) return;
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      const onAbort = (): void => {
        off();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

