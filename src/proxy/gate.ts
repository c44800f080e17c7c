// The wake gate of one instance: its parking queue and its upstream pool.
//
// A request either finds the instance awake (an address and a keep-alive pool,
// valid until the controller's `asleep` signal aborts) and is forwarded at once,
// or parks in a bounded FIFO. The first parked request starts the one wake of
// the burst (Knative activator style: one `ensureAwake` in flight, every waiter
// served by it, in arrival order). A full queue fails fast (503 + Retry-After);
// a wake that outlives the wake timeout fails its waiters (504); a waiter whose
// client leaves is dropped and never forwarded.
//
// A hot standby only pauses the VM, and its guest keeps its TCP connections:
// the pool's idle upstream connections are then kept (their idle timeout held
// while the guest cannot use its own) and used again by the first requests
// after the wake, which so skip a handshake and the app's accept (measured on
// node under TCG: ~9 ms for the first request on a new connection against ~4.5
// on a pooled one). A wake into another VM process drops them.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { describeError } from '../errors.js';
import { newStats, observe, type InstanceProxyStats } from './stats.js';
import { PAUSED, type AwakeInstance, type Waker } from './waker.js';
import { WakeProbe } from './wake-probe.js';

/** A reachable instance: its address and the pool of upstream sockets to it. */
export interface UpstreamPool {
  host: string;
  /** Keep-alive pool for this awake period; destroyed when the instance goes to standby. */
  agent: http.Agent;
  /** HTTP goes to this port rather than the route's (AwakeInstance.port). */
  port?: number;
  /** Added to every request forwarded here (AwakeInstance.headers). */
  headers?: readonly string[];
  /** Raw TCP goes through this CONNECT tunnel (AwakeInstance.tunnel). */
  tunnel?: { port: number; headers: readonly string[] };
}

export interface Refusal {
  status: 502 | 503 | 504;
  message: string;
  retryAfterSeconds?: number;
}

/** Something waiting for the instance: an HTTP request, an upgrade, a TCP connection. */
export interface Waiter {
  /** `probe`: given to the first waiter after a wake; an HTTP exchange marks its first bytes on it. */
  forward(target: UpstreamPool, probe?: WakeProbe): void;
  refuse(refusal: Refusal): void;
}

export interface Ticket {
  readonly waiter: Waiter;
  readonly parkedAt: number;
  /** Forwarded, refused or left: no longer in the queue. */
  done: boolean;
}

/** How a wake ended: the instance is awake, or its waiters were refused (wake failed, timed out, gate closed). */
export type WakeOutcome = { awake: true } | { awake: false; refusal: Refusal };

/** Why pooled upstream connections are being dropped. */
export type DropReason = 'standby' | 'removed';

export interface GateConfig {
  maxParked: number;
  wakeTimeoutMs: number;
  retryAfterSeconds: number;
  agent: http.AgentOptions;
}

/** The pool of a paused VM's awake period, kept for the next one of the same session. */
interface KeptPool {
  session: string;
  target: UpstreamPool;
}

type GatePhase =
  | { kind: 'asleep'; kept?: KeptPool }
  | { kind: 'waking'; controller: AbortController; timer: NodeJS.Timeout; startedAt: number; kept?: KeptPool }
  | { kind: 'awake'; target: UpstreamPool; session: string | undefined; asleep: AbortSignal; onAsleep: () => void }
  | { kind: 'closed' };

export class InstanceGate {
  readonly instanceId: string;
  readonly stats: InstanceProxyStats;
  readonly #waker: Waker;
  readonly #config: GateConfig;
  #state: GatePhase = { kind: 'asleep' };
  #queue: Ticket[] = [];
  #leftInQueue = 0;
  readonly #dropListeners = new Set<(reason: DropReason) => void>();
  readonly #settleListeners = new Set<(outcome: WakeOutcome) => void>();

  constructor(instanceId: string, waker: Waker, config: GateConfig) {
    this.instanceId = instanceId;
    this.stats = newStats(instanceId);
    this.#waker = waker;
    this.#config = config;
  }

  /** The instance's address and pool if it is known to be awake (the fast path), else undefined. */
  current(): UpstreamPool | undefined {
    return this.#state.kind === 'awake' ? this.#state.target : undefined;
  }

  /**
   * Wait for the instance. Calls `waiter.forward` or `waiter.refuse` exactly
   * once, later (or now, if the queue is full or the gate closed). Returns the
   * ticket to `leave` with if the client goes away first.
   */
  park(waiter: Waiter): Ticket | undefined {
    const state = this.#state;
    if (state.kind === 'awake') {
      waiter.forward(state.target);
      return undefined;
    }
    if (state.kind === 'closed') {
      waiter.refuse({ status: 503, message: `instance ${this.instanceId} is no longer routed: it was removed` });
      return undefined;
    }
    if (this.stats.parkedNow >= this.#config.maxParked) {
      this.stats.overflows += 1;
      waiter.refuse({
        status: 503,
        retryAfterSeconds: this.#config.retryAfterSeconds,
        message: `instance ${this.instanceId} is waking up and ${this.stats.parkedNow} requests are already waiting for it: retry in ${this.#config.retryAfterSeconds} s`,
      });
      return undefined;
    }
    const ticket: Ticket = { waiter, parkedAt: performance.now(), done: false };
    this.#queue.push(ticket);
    this.stats.parkedNow += 1;
    this.stats.parkedTotal += 1;
    if (state.kind === 'asleep') this.#wake(state.kept);
    return ticket;
  }

  /**
   * Start a wake with no waiter of the gate's own (a service's parking waits for
   * it, see service-parking.ts). False if the gate is closed; nothing to do if
   * the instance is awake or waking.
   */
  wake(): boolean {
    if (this.#state.kind === 'closed') return false;
    if (this.#state.kind === 'asleep') this.#wake(this.#state.kept);
    return true;
  }

  /** Be told how each wake ends (and when the gate closes), after the gate's own waiters were served or refused. */
  onSettle(listener: (outcome: WakeOutcome) => void): () => void {
    this.#settleListeners.add(listener);
    return () => this.#settleListeners.delete(listener);
  }

  /** The waiter's client went away: drop it from the queue. The wake goes on; nothing is forwarded for it. */
  leave(ticket: Ticket): void {
    if (ticket.done) return;
    ticket.done = true;
    this.stats.parkedNow -= 1;
    this.#leftInQueue += 1;
    // Departed tickets stay in the array until dispatch; compact when they dominate a long queue.
    if (this.#leftInQueue > 64 && this.#leftInQueue * 2 > this.#queue.length) {
      this.#queue = this.#queue.filter((t) => !t.done);
      this.#leftInQueue = 0;
    }
  }

  /** Be told when upstream connections must be dropped (standby, instance removed). */
  onDrop(listener: (reason: DropReason) => void): () => void {
    this.#dropListeners.add(listener);
    return () => this.#dropListeners.delete(listener);
  }

  /** The instance was removed (or the proxy is closing): refuse waiters, stop the wake, drop the pool. Safe to call twice. */
  close(message: string): void {
    const state = this.#state;
    if (state.kind === 'closed') return;
    this.#state = { kind: 'closed' };
    if (state.kind === 'waking') {
      clearTimeout(state.timer);
      state.controller.abort();
      state.kept?.target.agent.destroy();
    } else if (state.kind === 'asleep') {
      state.kept?.target.agent.destroy();
    } else if (state.kind === 'awake') {
      state.asleep.removeEventListener('abort', state.onAsleep);
      state.target.agent.destroy();
    }
    const refusal: Refusal = { status: 503, message };
    this.#refuseAll(refusal);
    this.#emitDrop('removed');
    this.#emitSettle({ awake: false, refusal });
  }

  #wake(kept: KeptPool | undefined): void {
    const controller = new AbortController();
    const timer = setTimeout(() => this.#timedOut(state), this.#config.wakeTimeoutMs);
    const state: GatePhase = { kind: 'waking', controller, timer, startedAt: performance.now(), ...(kept ? { kept } : {}) };
    this.#state = state;
    this.stats.wakes += 1;
    let pending: Promise<AwakeInstance>;
    try {
      pending = this.#waker.ensureAwake(this.instanceId, controller.signal);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (awake) => this.#woke(state, awake),
      (err: unknown) => this.#failed(state, err),
    );
  }

  #woke(waking: GatePhase, awake: AwakeInstance): void {
    if (this.#state !== waking || waking.kind !== 'waking') return; // timed out or closed meanwhile
    clearTimeout(waking.timer);
    const kept = waking.kept;
    if (awake.asleep.aborted) {
      kept?.target.agent.destroy();
      this.#state = { kind: 'asleep' };
      this.stats.wakeFailures += 1;
      this.#refuseAll({ status: 502, message: `instance ${this.instanceId} went back to standby while waking: retry` }, true);
      return;
    }
    let target: UpstreamPool;
    if (kept !== undefined && kept.session === awake.session && kept.target.host === awake.host) {
      target = kept.target; // the same VM process, resumed: its guest still has these connections
      setIdleTimeout(target.agent, this.#config.agent.timeout ?? 0);
    } else {
      kept?.target.agent.destroy();
      target = { host: awake.host, agent: new http.Agent(this.#config.agent), ...(awake.port !== undefined ? { port: awake.port } : {}), ...(awake.headers ? { headers: awake.headers } : {}), ...(awake.tunnel ? { tunnel: awake.tunnel } : {}) };
    }
    const state: GatePhase = { kind: 'awake', target, session: awake.session, asleep: awake.asleep, onAsleep: () => this.#fellAsleep(state) };
    this.#state = state;
    awake.asleep.addEventListener('abort', state.onAsleep, { once: true });
    // Swap the queue out first: a forward that fails synchronously may park again.
    const queue = this.#queue;
    this.#queue = [];
    this.#leftInQueue = 0;
    const now = performance.now();
    const report = awake.reportWake?.bind(awake);
    let probe = report ? new WakeProbe(report, now - waking.startedAt, now) : undefined;
    for (const ticket of queue) {
      if (ticket.done) continue;
      ticket.done = true;
      this.stats.parkedNow -= 1;
      observe(this.stats.wakeWait, now - ticket.parkedAt);
      ticket.waiter.forward(target, probe);
      probe = undefined;
    }
    this.#emitSettle({ awake: true });
  }

  #failed(waking: GatePhase, err: unknown): void {
    if (this.#state !== waking || waking.kind !== 'waking') return;
    clearTimeout(waking.timer);
    waking.kept?.target.agent.destroy();
    this.#state = { kind: 'asleep' };
    this.stats.wakeFailures += 1;
    this.#refuseAll({ status: 502, message: `instance ${this.instanceId} could not be woken: ${describeError(err)}` }, true);
  }

  #timedOut(waking: GatePhase): void {
    if (this.#state !== waking || waking.kind !== 'waking') return;
    waking.kept?.target.agent.destroy();
    this.#state = { kind: 'asleep' };
    this.stats.wakeTimeouts += 1;
    waking.controller.abort();
    this.#refuseAll({
      status: 504,
      message: `instance ${this.instanceId} did not wake within ${this.#config.wakeTimeoutMs} ms: see its logs with 'flick logs', then retry`,
    }, true);
  }

  #fellAsleep(awake: GatePhase): void {
    if (this.#state !== awake || awake.kind !== 'awake') return;
    if (awake.asleep.reason === PAUSED && awake.session !== undefined) {
      // Paused, not ended: idle pooled connections wait for the same VM's next awake period.
      // Their idle timeout is held meanwhile: the guest's own keep-alive clock stands still too.
      setIdleTimeout(awake.target.agent, 0);
      this.#state = { kind: 'asleep', kept: { session: awake.session, target: awake.target } };
    } else {
      this.#state = { kind: 'asleep' };
      // Pooled sockets point at a VM that ended: never reuse them.
      awake.target.agent.destroy();
    }
    this.#emitDrop('standby');
  }

  /** Refuses every waiter; `settle`: a wake ended so (its listeners are told). */
  #refuseAll(refusal: Refusal, settle = false): void {
    const queue = this.#queue;
    this.#queue = [];
    this.#leftInQueue = 0;
    for (const ticket of queue) {
      if (ticket.done) continue;
      ticket.done = true;
      this.stats.parkedNow -= 1;
      ticket.waiter.refuse(refusal);
    }
    if (settle) this.#emitSettle({ awake: false, refusal });
  }

  #emitSettle(outcome: WakeOutcome): void {
    for (const listener of [...this.#settleListeners]) listener(outcome);
  }

  #emitDrop(reason: DropReason): void {
    for (const listener of [...this.#dropListeners]) listener(reason);
  }
}

/** Sets (0: holds) the idle timeout of the agent's pooled, unused sockets. */
function setIdleTimeout(agent: http.Agent, ms: number): void {
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.setTimeout(ms);
}
