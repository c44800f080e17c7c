// Scale to zero: the template snapshot taken at first readiness, suspend after
// a cooldown with no request in flight, and wake from a snapshot. It is the
// proxy's Waker: `ensureAwake` returns where to send a request (waking the
// instance if it sleeps), `requestStarted/Finished` keep it awake meanwhile.
// Concurrent wakes of one instance share one promise, so 200 parked requests
// cause one restore.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord } from '../store/instance-record.js';
import type { InstanceStore } from '../store/instance-store.js';
import type { MicroVm, Snapshot, VmmDriver } from '../vmm/driver.js';
import type { InstanceEventEmitter } from './events.js';
import type { ControllerLogger } from './seams.js';
import { readinessPort } from './spec.js';
import { ControllerError, type InstanceState } from './states.js';

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

  constructor(target: WakeTarget) {
    this.#t = target;
  }

  /**
   * Pause, save device state with a copy of the RAM file (`keepRunning`: the
   * running VM goes on writing to its own RAM file), resume. Measured: see the
   * `snapshot` event and the log line.
   */
  async takeTemplate(rec: InstanceRecord, vm: MicroVm): Promise<void> {
    const dir = path.join(rec.dir, 'snapshots', 'template');
    await fsp.rm(dir, { recursive: true, force: true });
    const t0 = performance.now();
    try {
      await vm.pause();
      let snap: Snapshot;
      try {
        snap = await vm.createSnapshot(dir, { keepRunning: true });
      } finally {
        await vm.resume();
      }
      const durationMs = performance.now() - t0;
      this.#t.store.update(rec.id, { snapshots: { ...this.#t.fresh(rec.id).snapshots, template: snap } });
      this.#t.events.emit('snapshot', { id: rec.id, name: rec.name, kind: 'template', durationMs });
      this.#t.log.info(`instance ${rec.name}: template snapshot in ${durationMs.toFixed(1)} ms (paused meanwhile)`);
    } catch (err) {
      // Without a template the instance still runs; it just cannot sleep statelessly.
      await fsp.rm(dir, { recursive: true, force: true });
      this.#t.log.warn(`instance ${rec.name}: template snapshot failed, scale to zero stays off until the next start: ${describeError(err)}`);
    }
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
    const t0 = performance.now();
    let rec = this.#t.fresh(id);
    if (rec.state === 'running') return this.#upstream(rec);
    const snapshot = rec.scaleToZero.stateful ? rec.snapshots.own : rec.snapshots.template;
    if (rec.vm === null || snapshot === undefined) {
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" has no snapshot to wake from: restart it with 'flick stop ${rec.name} && flick start ${rec.name}'`);
    }
    rec = this.#t.transition(rec, 'starting');
    let vm: MicroVm | undefined;
    try {
      vm = await this.#t.driver.restore(rec.vm!, snapshot, { mode: rec.scaleToZero.stateful ? 'own' : 'clone' });
      this.#t.watch(id, vm);
      this.#t.store.update(id, { pid: vm.pid });
      await vm.syncClock(); // the guest clock stopped at snapshot time
      const port = readinessPort(rec.service);
      if (port !== undefined) await vm.waitForPort(port, { timeoutMs: this.#t.readyTimeoutMs });
      const cur = this.#t.fresh(id);
      const next = this.#t.transition(cur, 'running', { counters: { ...cur.counters, wakes: cur.counters.wakes + 1 } });
      const durationMs = performance.now() - t0;
      this.#t.events.emit('wake', { id, name: rec.name, durationMs, mode: rec.scaleToZero.stateful ? 'own' : 'template' });
      this.onRunning(next);
      return this.#upstream(next);
    } catch (err) {
      if (vm) {
        this.#t.expectExit(id);
        await vm.kill();
      }
      this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, error: `wake failed: ${describeError(err)}` });
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" could not wake: ${describeError(err)}`, { cause: err });
    }
  }

  /** Suspends a running instance now if it has no request in flight; no-op otherwise. */
  suspend(id: string): Promise<void> {
    return this.#t.serialize(id, async () => {
      let rec = this.#t.store.get(id);
      if (rec === undefined || rec.state !== 'running' || (this.#inFlight.get(id) ?? 0) > 0) return;
      if (rec.scaleToZero.policy === 'off') return;
      if (rec.scaleToZero.policy === 'on' && (this.#connections.get(id) ?? 0) > 0) return;
      if (!rec.scaleToZero.stateful && rec.snapshots.template === undefined) return;
      const vm = this.#t.live(id);
      if (vm === undefined) return;
      // In the same turn as the in-flight check: from here the proxy forwards nothing to this VM.
      this.#sleep(id);
      rec = this.#t.transition(rec, 'draining');
      const t0 = performance.now();
      try {
        const snapshots = { ...rec.snapshots };
        if (rec.scaleToZero.stateful) {
          const dir = path.join(rec.dir, 'snapshots', 'own');
          await fsp.rm(dir, { recursive: true, force: true });
          await fsp.mkdir(dir, { recursive: true });
          await vm.pause();
          // Without keepRunning the RAM file is hard-linked into `dir` (instant); this VM never runs again.
          snapshots.own = await vm.createSnapshot(dir);
          this.#t.events.emit('snapshot', { id, name: rec.name, kind: 'own', durationMs: performance.now() - t0 });
        }
        this.#t.expectExit(id);
        await vm.kill();
        this.#t.transition(this.#t.fresh(id), 'standby', { pid: null, snapshots });
      } catch (err) {
        this.#t.expectExit(id);
        await vm.kill();
        this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, error: `suspend failed: ${describeError(err)}` });
      }
    });
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
