// The instance controller: a library (no HTTP, no argv) that owns every
// instance's lifecycle; this file is its public face (queries, commands,
// events, the proxy's Waker). The VM side (queue, boot, halt, watch, restart)
// is lifecycle.ts, the re-adoption at flickd start reconcile.ts, scale to zero
// scale-to-zero.ts; records live behind the state seam it declares (state/).
import type { InstanceRecord } from './state/instance-record.js';
import type { Waker } from '../proxy/waker.js';
import { InstanceEventEmitter, type InstanceEvents } from './events.js';
import { defaultName, guestConfigFor, hasVolumes, newInstanceRecord, validateName, type InstanceConfig } from './spec.js';
import { waitForState } from './wait.js';
import { ControllerError, hasProcess, type InstanceState } from './states.js';
import type { HotStandbyConfig } from './hot-standby.js';
import type { PrimedPoolStats } from './primed/primed-pool.js';
import type { OwnPrimedStats } from './primed/own-primed.js';
import type { InstanceControllerMetrics } from './metrics.js';
import type { ControllerOptions } from './options.js';
import { Lifecycle } from './lifecycle.js';
import { reconcile } from './reconcile.js';
import { forkInstance, type ForkConfig, type ForkResult } from './fork.js';
import { release, takeOver } from './ownership.js';

export type { ControllerOptions } from './options.js';
// The types of the public surface's inputs and outputs, so that no consumer imports an internal module for them.
export type { ForkConfig, ForkResult } from './fork.js';

/** How long an asked suspend waits for the instance's requests in flight to finish. */
const SUSPEND_DRAIN_MS = 5000;

/**
 * The controller's whole surface: queries, commands, events, and the Waker
 * the proxy wakes instances through. No public fields: what it keeps (the
 * state store, the VMs, scale to zero's timers) is reached only through these.
 */
export class Controller {
  readonly #events = new InstanceEventEmitter();
  readonly #store: ControllerOptions['store'];
  readonly #lc: Lifecycle;
  readonly #dataDir: string;

  constructor(opts: ControllerOptions) {
    this.#store = opts.store;
    this.#dataDir = opts.dataDir;
    this.#lc = new Lifecycle(opts, this.#events);
  }

  // ---- queries ----

  list(): InstanceRecord[] {
    return this.#store.list();
  }

  /** By id or by name; INSTANCE_NOT_FOUND (a user error) otherwise. */
  get(idOrName: string): InstanceRecord {
    const rec = this.#store.get(idOrName) ?? this.#store.getByName(idOrName);
    if (rec === undefined) {
      throw new ControllerError('INSTANCE_NOT_FOUND', `instance "${idOrName}" not found: list instances with 'flick ls'`, { kind: 'user' });
    }
    return rec;
  }

  /** Resolves with the record once the instance is in `state`; START_FAILED if it fails instead. */
  wait(idOrName: string, state: InstanceState, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<InstanceRecord> {
    return waitForState(this.#store, this.#events, this.get(idOrName), state, opts);
  }

  /**
   * Listens to instance events (state changes, removals, wakes, boots,
   * snapshots), called synchronously after the change is persisted; returns
   * the function that stops listening.
   */
  on<K extends keyof InstanceEvents>(type: K, listener: (event: InstanceEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  /** The controller's own numbers for one instance (wake latency by tier, suspends, page-outs), a copy. */
  metrics(id: string): InstanceControllerMetrics {
    return this.#lc.metrics.snapshot(id);
  }

  /** The instance's last wake since flickd started (tier, duration, its breakdown), or null. */
  lastWake(id: string): InstanceControllerMetrics['lastWake'] {
    return this.#lc.metrics.lastWake(id);
  }

  /** What the ingress proxy wakes instances through, and tells about requests and connections. */
  waker(): Waker {
    return this.#lc.scaleToZero;
  }

  /** The console log (oldest first); with `follow`, new output until `signal` aborts. */
  logs(idOrName: string, opts: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<Buffer> {
    const rec = this.get(idOrName);
    return this.#lc.consoleLog(rec).read(opts);
  }

  // ---- commands ----

  /**
   * Validates, persists (stopped), then starts unless `autostart` is false.
   * Returns before the VM is ready. A scale-to-zero instance whose
   * configuration has a template already is stored straight into cold standby
   * (one write, no VM, no network), so creating thousands of them is cheap.
   */
  async create(spec: InstanceConfig): Promise<InstanceRecord> {
    const name = spec.name ?? defaultName(spec.image);
    validateName(name);
    const image = await this.#lc.images.resolve(spec.image);
    const record = newInstanceRecord(spec, name, image, this.#dataDir);
    const { id, createdAt: now } = record;
    guestConfigFor(record, image.config); // fails now, as a 400, rather than at boot
    if (record.spec.autostart && !hasVolumes(record)) {
      const asleep = await this.#lc.scaleToZero.asleepAtCreate(record, this.#lc.vmConfig(record, image), this.#lc.templateKeyWith(record, image));
      if (asleep) {
        const stored = await this.#store.create(asleep);
        this.#events.emit('state', { id, name, from: null, to: 'standby', at: now });
        return stored;
      }
    }
    // Claimed before the record exists: a refused volume (409) leaves nothing behind.
    await this.#lc.claimVolumes(record);
    let stored: InstanceRecord;
    try {
      stored = await this.#store.create(record);
    } catch (err) {
      await this.#lc.volumes?.detach(id);
      throw err;
    }
    this.#events.emit('state', { id, name, from: null, to: 'stopped', at: now });
    return stored.spec.autostart ? this.start(id) : stored;
  }

  /**
   * A new instance with `source`'s memory and volumes taken at one instant
   * (fork.ts): from a standby instance's saved state, or from a running one
   * paused for the copy and resumed. Stored in cold standby: its first
   * connection wakes it with the source's state; from there the two diverge.
   */
  async fork(source: string, config: ForkConfig): Promise<ForkResult> {
    return forkInstance(this.#lc, this.get(source), config);
  }

  /** Moves the instance to `starting` and boots it in the background; `wait(id, 'running')` to know when it is ready. */
  start(idOrName: string): Promise<InstanceRecord> {
    return this.#lc.start(this.get(idOrName).id);
  }

  /**
   * Graceful stop: the guest gets `poweroff`, the app SIGTERM; killed after stopTimeoutMs.
   * `kill`: the VM is killed at once (a cluster's fence: the instance may be starting on another host).
   */
  async stop(idOrName: string, opts: { kill?: boolean } = {}): Promise<InstanceRecord> {
    return this.#lc.stop(this.get(idOrName).id, opts);
  }

  /** Removes the instance; one with a VM needs `force` (which stops it first). */
  async rm(idOrName: string, opts: { force?: boolean } = {}): Promise<void> {
    const {
      id,
      name,
      status: { state },
    } = this.get(idOrName);
    if (!opts.force && (hasProcess(state) || state === 'standby')) {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot remove instance "${name}": it is ${state}: stop it first ('flick stop ${name}') or use 'flick rm -f ${name}'`, {
        kind: 'user',
        details: { from: state },
      });
    }
    await this.#lc.remove(id);
  }

  /**
   * Suspends a running scale-to-zero instance now (as its cooldown would, open
   * connections or not; never with a request in flight), to the hot tier or, with
   * `tier: 'cold'`, without a process; `cold` on a hot-standby instance demotes it.
   * Resolves with the record afterwards (still `running` if a request was in flight).
   */
  async suspend(idOrName: string, opts: { tier?: 'hot' | 'cold' } = {}): Promise<InstanceRecord> {
    const rec = this.get(idOrName);
    if (rec.spec.scaleToZero.policy === 'off') {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot suspend instance "${rec.name}": its scale to zero is off: create it with a policy (--scale-to-zero on)`, { kind: 'user' });
    }
    // Drains first: a request still in flight (a client that just got its answer, a connection closing)
    // finishes, then the instance suspends. What does not drain in time is refused, saying why.
    const deadline = Date.now() + SUSPEND_DRAIN_MS;
    for (;;) {
      await this.#lc.scaleToZero.suspend(rec.id, { ...(opts.tier ? { tier: opts.tier } : {}), force: true });
      const blocked = this.#lc.scaleToZero.suspendBlocker(rec.id);
      if (blocked === undefined) return this.get(rec.id);
      if (!blocked.drains || Date.now() > deadline) {
        const waited = blocked.drains ? ` after ${SUSPEND_DRAIN_MS / 1000} s` : '';
        throw new ControllerError('ILLEGAL_TRANSITION', `cannot suspend instance "${rec.name}" now: ${blocked.reason}${waited}; it suspends by itself once idle for its cooldown, or ask again`, { kind: 'user' });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The hot standby tier: its budget, what it holds now, and who is in it (least recently suspended first). */
  hotStandby(): HotStandbyConfig & { usedBytes: number; instances: string[] } {
    const hot = this.#lc.scaleToZero.hot;
    return { ...hot.config, usedBytes: hot.usedBytes(), instances: hot.ids() };
  }

  /** The primed pool (primed/primed-pool.ts): its budget, what it holds, hits and misses. */
  primedPool(): PrimedPoolStats & { stateful?: OwnPrimedStats } {
    return { ...this.#lc.primed.stats(), stateful: this.#lc.ownPrimed.stats() };
  }

  /**
   * A cluster's failover (ownership.ts): claims `rec`, another host's stateless record as the cluster
   * shows it (fenced on its revision: STALE_REVISION if it moved meanwhile), its status reset in the
   * same write (nothing of the other host's VM, network, folder or snapshots), then starts it here.
   * Its image is resolved first, so only a host that can run it claims it.
   */
  takeOver(rec: InstanceRecord): Promise<InstanceRecord> {
    return takeOver(this.#lc, this.#dataDir, rec);
  }

  /**
   * Frees what this host still holds for `last`, its own record as it last knew it, which has left
   * the store (claimed by another host): its VM if one runs, its network, its folder; a no-op for a
   * record that is still this host's.
   */
  release(last: InstanceRecord): Promise<void> {
    return release(this.#lc, this.#dataDir, last);
  }

  /**
   * At flickd start: re-adopts VMs a previous flickd left running, marks those
   * that died meanwhile (and applies their restart policy), then removes every
   * instance network nothing uses any more.
   */
  reconcile(): Promise<{ adopted: string[]; died: string[] }> {
    return reconcile(this.#lc);
  }

  /** Stops timers and lets go of the VMs without stopping them (a restarted flickd adopts them). */
  dispose(): Promise<void> {
    return this.#lc.dispose();
  }
}
