// Scale to zero's wake path: where the proxy sends a request (`ensureAwake`),
// waking a standby instance hot (resume) or cold (restore) first; concurrent
// wakes of one instance share one promise. Also hands out, and revokes, the
// proxy's AwakeInstances.
//
// What is not on the request's path (measured with the wake breakdown, wake-phases.ts): record
// writes. Each is a synchronous fsync (~1-4 ms under load) that blocks the event loop. A hot wake
// writes none before the guest runs (standby → running, one write); a wake hands the instance to
// the proxy as soon as the guest runs with its clock set, and writes `running` (counters, events,
// cooldown) on the next turn of the event loop, after the proxy has written its first request
// upstream, so that the write overlaps the app's own work. Still inside the instance's serialized
// section: no suspend or stop comes between the hand-over and the write.
import { describeError } from '../errors.js';
import type { InstanceRecord } from './state/instance-record.js';
import path from 'node:path';
import type { MicroVm, Snapshot } from '../vmm/driver.js';
import type { HotStandby } from './hot-standby.js';
import type { WakeTier } from './metrics.js';
import { readinessPort } from './spec.js';
import { ControllerError } from './states.js';
import type { InstanceHost } from './instance-host.js';
import { PAUSED, type AwakeInstance } from '../proxy/waker.js';
import { controllerPhases, fullPhases, type WakeMarks } from './wake-phases.js';

export class WakePath {
  readonly #t: InstanceHost;
  readonly #hot: HotStandby;
  /** Called when a wake leaves the instance running (its cooldown starts). */
  readonly #onRunning: (rec: InstanceRecord) => void;
  /** One per awake period of an instance; aborted when it goes to standby or stops. */
  readonly #awake = new Map<string, AbortController>();
  readonly #wakes = new Map<string, Promise<AwakeInstance>>();
  /** A copy of `template` into `dir` that a VM may own (TemplateStore.ownCopy): a shared fork's first state. */
  readonly #ownCopy: (template: Snapshot, dir: string) => Promise<Snapshot>;

  constructor(target: InstanceHost, hot: HotStandby, onRunning: (rec: InstanceRecord) => void, ownCopy: (template: Snapshot, dir: string) => Promise<Snapshot>) {
    this.#t = target;
    this.#hot = hot;
    this.#onRunning = onRunning;
    this.#ownCopy = ownCopy;
  }

  /** The proxy's entry: where to send a request for `id`, waking the instance if it sleeps. */
  async ensureAwake(id: string, signal?: AbortSignal): Promise<AwakeInstance> {
    const enter = performance.now();
    for (;;) {
      signal?.throwIfAborted();
      // A wake in progress: join it (its record may already say running while the guest's clock
      // is still being set; only the wake's own promise says when a request may go in).
      const pending = this.#wakes.get(id);
      if (pending !== undefined) return await pending;
      const rec = this.#t.fresh(id);
      switch (rec.status.state) {
        case 'running':
          return this.#upstream(rec);
        case 'standby':
          return await this.wake(id, enter);
        case 'starting':
        case 'draining':
          await this.#nextState(id, signal); // a suspend or boot in progress: look again when it settles
          continue;
        default:
          throw new ControllerError('ILLEGAL_TRANSITION', `instance "${rec.name}" is ${rec.status.state}: start it with 'flick start ${rec.name}'`, { kind: 'user', details: { from: rec.status.state, to: 'running' } });
      }
    }
  }

  /** Restores a standby instance (template or own state). Concurrent calls share one wake (and the first one's `enter`, for its breakdown). */
  wake(id: string, enter = performance.now()): Promise<AwakeInstance> {
    let p = this.#wakes.get(id);
    if (p === undefined) {
      // Resolves at the hand-over (handOver) or, if there is none, when the wake's section ends.
      let handOver!: (awake: AwakeInstance) => void;
      const handedOver = new Promise<AwakeInstance>((resolve) => (handOver = resolve));
      const section = this.#t.serialize(id, () => this.#wake(id, enter, handOver)).finally(() => this.#wakes.delete(id));
      p = Promise.race([handedOver, section]);
      section.catch(() => {}); // its rejection is p's (no hand-over happened), or, after one, logged in #woke
      this.#wakes.set(id, p);
    }
    return p;
  }

  async #wake(id: string, enter: number, handOver: (awake: AwakeInstance) => void): Promise<AwakeInstance> {
    const rec = this.#t.fresh(id);
    if (rec.status.state === 'running') return this.#upstream(rec);
    if (rec.status.state !== 'standby') {
      throw new ControllerError('ILLEGAL_TRANSITION', `instance "${rec.name}" is ${rec.status.state}, not in standby: start it with 'flick start ${rec.name}'`, { kind: 'user', details: { from: rec.status.state, to: 'starting' } });
    }
    const vm = this.#t.vm(id);
    if (rec.status.standbyTier === 'hot' && vm !== undefined) {
      try {
        return await this.#wakeHot(rec, vm, enter, handOver);
      } catch (err) {
        this.#t.log.warn(`instance ${rec.name}: hot wake failed, waking cold: ${describeError(err)}`);
        await this.#t.kill(id, vm);
        if (rec.spec.scaleToZero.stateful) {
          this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `wake failed: ${describeError(err)}` });
          throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" could not wake: ${describeError(err)}`, { cause: err });
        }
        this.#t.update(this.#t.fresh(id), { pid: null, standbyTier: 'cold', state: 'standby' });
        await this.#t.releaseNetwork(id);
      }
    }
    return this.#wakeCold(this.#t.fresh(id), enter, handOver);
  }

  /** Hot: the paused process goes on. The clock answer is awaited: the app must not see a request with a stale clock. */
  async #wakeHot(rec: InstanceRecord, vm: MicroVm, enter: number, handOver: (awake: AwakeInstance) => void): Promise<AwakeInstance> {
    const t0 = performance.now();
    this.#hot.remove(rec.id);
    const vmmCall = performance.now();
    // No `starting` write first: the record goes standby → running after the hand-over. A flickd
    // that dies in between leaves a standby record whose VM runs; reconcile pauses it again.
    const run = await vm.resume(); // resolves with the guest clock set (driver contract)
    return await this.#woke(rec, 'hot', t0, { enter, vmmCall, run }, handOver);
  }

  async #wakeCold(rec: InstanceRecord, enter: number, handOver: (awake: AwakeInstance) => void): Promise<AwakeInstance> {
    const t0 = performance.now();
    const id = rec.id;
    const { own, template } = rec.status.snapshots;
    const stateful = rec.spec.scaleToZero.stateful;
    // A shared fork (fork-template.ts) has no state of its own before its first wake: it wakes from its
    // own copy of the template it shares, a RAM file it owns from then on. Only then: afterwards its
    // memory is its own, and no template matches its disks.
    const unwokenFork = stateful && own === undefined && rec.status.counters.wakes === 0 && rec.status.counters.boots === 0;
    let snapshot = stateful ? (own ?? (unwokenFork ? template : undefined)) : template;
    const mode = stateful ? 'own' : 'clone';
    if (rec.status.vm === null || snapshot === undefined) {
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" has no snapshot to wake from: restart it with 'flick stop ${rec.name} && flick start ${rec.name}'`);
    }
    rec = this.#t.transition(rec, 'starting');
    let vm: MicroVm | undefined;
    const vmmCall = performance.now();
    try {
      if (unwokenFork) snapshot = await this.#ownCopy(snapshot, path.join(rec.status.dir, 'snapshots', 'own'));
      // A cold standby holds no network: this one (ready-made, from the pool) carries a new host address.
      const woken = await this.#t.restore(rec, snapshot, mode);
      vm = woken.vm;
      // No readiness probe: every snapshot was taken with the app listening (the template at
      // readiness, own state while running), and a probe is a connection the app would see.
      if (mode === 'own') {
        // The snapshot was consumed: the VM runs in its RAM file now.
        const cur = this.#t.fresh(id);
        const snapshots = { ...cur.status.snapshots };
        delete snapshots.own;
        this.#t.update(cur, { snapshots });
      }
      return await this.#woke(this.#t.fresh(id), woken.primed ? 'primed' : 'cold', t0, { enter, vmmCall, run: woken.run }, handOver, mode);
    } catch (err) {
      if (vm) await this.#t.kill(id, vm);
      await this.#t.releaseNetwork(id);
      this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `wake failed: ${describeError(err)}` });
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" could not wake: ${describeError(err)}`, { cause: err });
    }
  }

  /**
   * The guest runs with its clock set: hands the instance to the proxy, then (next turn, after the
   * proxy's first request went upstream) records it running. Precondition: `cur` is `starting`
   * (cold) or `standby` (hot) with the VM's pid and network.
   */
  async #woke(cur: InstanceRecord, tier: WakeTier, t0: number, marks: Omit<WakeMarks, 'done'>, handOver: (awake: AwakeInstance) => void, restored?: 'own' | 'clone'): Promise<AwakeInstance> {
    const { id, name } = cur;
    const at = new Date().toISOString();
    const done = performance.now();
    const durationMs = done - t0;
    // One report per wake, from the proxy's first request after it: the rest of the breakdown.
    let reported = false;
    const awake: AwakeInstance = {
      ...this.#upstream(cur),
      reportWake: (times) => {
        if (reported) return;
        reported = true;
        this.#t.events.emit('wake-phases', { id, name, tier, at, phases: fullPhases({ ...marks, done }, times) });
      },
    };
    handOver(awake);
    // setImmediate runs after the proxy's continuation and its socket write (microtasks and
    // nextTicks), and before any answer can be read (the poll phase comes after it).
    await new Promise<void>((resolve) => setImmediate(resolve));
    const fresh = this.#t.fresh(id);
    const c = fresh.status.counters;
    const counters = { ...c, wakes: c.wakes + 1, ...(tier === 'hot' ? { wakesHot: (c.wakesHot ?? 0) + 1 } : { wakesCold: (c.wakesCold ?? 0) + 1 }) };
    let next: InstanceRecord;
    try {
      next = this.#t.transition(fresh, 'running', { counters, standbyTier: undefined });
    } catch (err) {
      // Nothing else moves the record inside the section; should it fail, the proxy must not keep the address.
      this.#t.log.warn(`instance ${name}: woke, but its record could not say so: ${describeError(err)}`);
      this.sleep(id);
      return awake;
    }
    this.#t.events.emit('wake', { id, name, durationMs, mode: tier === 'hot' ? 'resume' : tier === 'primed' ? 'primed' : restored === 'own' ? 'own' : 'template', at, phases: controllerPhases({ ...marks, done }) });
    this.#onRunning(next);
    return awake;
  }

  /**
   * Revokes the AwakeInstances handed out for the instance's current awake period.
   * `paused`: the VM only pauses (hot standby) and keeps its guest's TCP
   * connections, which the proxy may use again after the wake.
   */
  sleep(id: string, how: 'paused' | 'ended' = 'ended'): void {
    this.#awake.get(id)?.abort(how === 'paused' ? PAUSED : 'ended');
    this.#awake.delete(id);
  }

  #upstream(rec: InstanceRecord): AwakeInstance {
    const host = rec.status.vm?.network?.hostReachableIp;
    if (host === undefined || readinessPort(rec.spec.service) === undefined) {
      throw new ControllerError('WAKE_FAILED', `instance "${rec.name}" has no network service to route to: create it with a port (-p)`, { kind: 'user' });
    }
    let ac = this.#awake.get(rec.id);
    if (ac === undefined) this.#awake.set(rec.id, (ac = new AbortController()));
    return { host, asleep: ac.signal, ...(rec.status.pid !== null ? { session: String(rec.status.pid) } : {}) };
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
