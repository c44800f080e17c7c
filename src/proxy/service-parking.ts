// Where a service's parked requests wait: one FIFO per service, served by
// whichever member is awake with room first, not by the member whose wake a
// request asked for (Knative's activator throttles over all of a revision's
// pods the same way).
//
// A request parks when the balancer found no awake member with room (fewer in
// flight than the service's target): it is counted in flight on a member that
// is not awake (the balancer fills one member up to the target before choosing
// the next, so a burst wakes ceil(burst / target) at once), and that member's
// gate starts its wake. The queue is then drained, oldest first, whenever a
// member may have room: one of its wakes ended, or one of its requests
// finished. Room means an awake member with fewer forwarded requests in flight
// than the target; once every member is awake there is nothing left to wait
// for, and the queue goes to the least busy ones whatever their count. A
// request moved to another member takes its in-flight count with it.
//
// The bounds are the gates': at most `maxParked` requests counted on one member
// (then 503), and a member whose wake fails, times out or is removed refuses
// the requests counted on it, as its own gate refuses its own waiters. A
// request that waited the park timeout (the gates' wake timeout) in the queue
// ends with a 504 whatever it waits for: a member it is counted on may have
// woken and stayed full (long requests, websockets, TCP) while another never
// woke, and nothing else would end its wait. A request whose client leaves is
// dropped and never forwarded.
import { performance } from 'node:perf_hooks';
import { memberRoute, type Balancer } from './balancer.js';
import type { InstanceGate, Refusal, WakeOutcome } from './gate.js';
import type { Route, ServiceRoute } from './routes.js';
import { observe } from './stats.js';

/** A parked request of a service (HTTP or upgrade), which can be sent to any member. */
export interface ServiceWaiter {
  /** Go to `member`, which may differ from the one counted so far (the count moves with it), and be forwarded there. */
  moveTo(member: Route): void;
  refuse(refusal: Refusal): void;
}

export interface ParkedEntry {
  readonly waiter: ServiceWaiter;
  readonly service: string;
  /** The member the request is counted on while it waits (whose wake it asked for), and its gate. */
  readonly countedOn: string;
  readonly gate: InstanceGate;
  readonly parkedAt: number;
  done: boolean;
}

export interface ServiceParkingDeps {
  gate(instanceId: string): InstanceGate;
  balancer: Balancer;
  /** The service's current route (members may have changed since a request parked). */
  service(name: string): ServiceRoute | undefined;
  maxParked: number;
  /** How long a request may wait in the queue (the gates' wake timeout): then 504. */
  parkTimeoutMs: number;
  retryAfterSeconds: number;
}

export class ServiceParking {
  readonly #deps: ServiceParkingDeps;
  readonly #queues = new Map<string, ParkedEntry[]>();
  /** Parked entries per member they are counted on. */
  readonly #counted = new Map<string, Set<ParkedEntry>>();
  readonly #watched = new WeakSet<InstanceGate>();
  readonly #scheduled = new Set<string>();
  /** Per service queue, the timer of its oldest entry's park timeout. */
  readonly #expiry = new Map<string, NodeJS.Timeout>();

  constructor(deps: ServiceParkingDeps) {
    this.#deps = deps;
  }

  /** Park a request counted on `member` (not awake) and start that member's wake. Returns the entry to `leave` with, or undefined if refused at once. */
  park(waiter: ServiceWaiter, service: ServiceRoute, member: string): ParkedEntry | undefined {
    const gate = this.#deps.gate(member);
    if (gate.stats.parkedNow >= this.#deps.maxParked) {
      gate.stats.overflows += 1;
      const retry = this.#deps.retryAfterSeconds;
      waiter.refuse({ status: 503, retryAfterSeconds: retry, message: `service ${service.service} is waking up and ${gate.stats.parkedNow} requests are already waiting for instance ${member}: retry in ${retry} s` });
      return undefined;
    }
    if (!this.#watched.has(gate)) {
      this.#watched.add(gate);
      gate.onSettle((outcome) => this.#settled(member, outcome));
    }
    if (!gate.wake()) {
      waiter.refuse({ status: 503, message: `instance ${member} is no longer routed: it was removed` });
      return undefined;
    }
    const entry: ParkedEntry = { waiter, service: service.service, countedOn: member, gate, parkedAt: performance.now(), done: false };
    let queue = this.#queues.get(service.service);
    if (queue === undefined) this.#queues.set(service.service, (queue = []));
    queue.push(entry);
    if (!this.#expiry.has(service.service)) this.#armExpiry(service.service, entry);
    let counted = this.#counted.get(member);
    if (counted === undefined) this.#counted.set(member, (counted = new Set()));
    counted.add(entry);
    gate.stats.parkedNow += 1;
    gate.stats.parkedTotal += 1;
    // Another member may be awake with room already (it was counted busy by parked requests of its own).
    this.#schedule(service.service);
    return entry;
  }

  /** The client went away: the entry is never forwarded. */
  leave(entry: ParkedEntry): void {
    if (entry.done) return;
    this.#take(entry);
    this.#schedule(entry.service); // which compacts the queue
  }

  /** A request of `instanceId` finished: a service it serves may have room for a parked request. */
  finished(instanceId: string): void {
    if (this.#queues.size === 0) return;
    for (const name of this.#queues.keys()) {
      if (this.#deps.service(name)?.members.includes(instanceId) !== false) this.#schedule(name);
    }
  }

  /** Parked requests now (all services), for tests and metrics. */
  parked(): number {
    let n = 0;
    for (const set of this.#counted.values()) n += set.size;
    return n;
  }

  #settled(member: string, outcome: WakeOutcome): void {
    const counted = this.#counted.get(member);
    if (!outcome.awake && counted !== undefined) {
      for (const entry of [...counted]) {
        this.#take(entry);
        entry.waiter.refuse(outcome.refusal);
      }
    }
    // Awake: it may take parked requests. Failed: every other member may now be awake, with nothing left to wait for.
    for (const name of this.#queues.keys()) this.#schedule(name);
  }

  /** Drains once per turn of the event loop at most, outside the caller's stack (a finished request, a wake). */
  #schedule(name: string): void {
    if (this.#scheduled.has(name)) return;
    this.#scheduled.add(name);
    queueMicrotask(() => {
      this.#scheduled.delete(name);
      this.#drain(name);
    });
  }

  #drain(name: string): void {
    const queue = this.#queues.get(name);
    if (queue === undefined) return;
    const service = this.#deps.service(name);
    if (service === undefined) {
      this.#forget(name);
      for (const entry of queue) {
        if (entry.done) continue;
        this.#take(entry);
        entry.waiter.refuse({ status: 503, message: `service ${name} is no longer routed: it was removed` });
      }
      return;
    }
    const target = service.targetInFlight ?? Infinity;
    let head = 0;
    while (head < queue.length) {
      const entry = queue[head]!;
      if (entry.done) {
        head += 1;
        continue;
      }
      const member = this.#withRoom(service, target);
      if (member === undefined) break;
      head += 1;
      this.#take(entry);
      observe(entry.gate.stats.wakeWait, performance.now() - entry.parkedAt);
      entry.waiter.moveTo(memberRoute(service, member));
    }
    queue.splice(0, head);
    if (queue.length === 0) this.#forget(name);
    // A member that woke full leaves the requests counted on it waiting: those past their time end now.
    else if (queue[0]!.parkedAt + this.#deps.parkTimeoutMs <= performance.now()) this.#expire(name);
  }

  /** Arms the queue's one timer for `oldest`'s park timeout (entries are in parking order, so it is the next due). */
  #armExpiry(name: string, oldest: ParkedEntry): void {
    const due = oldest.parkedAt + this.#deps.parkTimeoutMs - performance.now();
    const timer = setTimeout(() => this.#expire(name), Math.max(0, due));
    timer.unref();
    this.#expiry.set(name, timer);
  }

  /**
   * Refuses every entry that waited the park timeout, then re-arms for the next one. An entry
   * counted on a member still waking is left to that member's gate, whose own timeout (the same
   * bound) refuses it with the reason the wake failed.
   */
  #expire(name: string): void {
    clearTimeout(this.#expiry.get(name));
    this.#expiry.delete(name);
    const queue = this.#queues.get(name);
    if (queue === undefined) return;
    const timeout = this.#deps.parkTimeoutMs;
    const now = performance.now();
    let next: ParkedEntry | undefined;
    let refused = 0;
    for (const entry of queue) {
      if (entry.done) continue;
      if (entry.parkedAt + timeout > now) {
        next = entry;
        break;
      }
      if (!this.#deps.balancer.isAwake(entry.countedOn)) continue;
      this.#take(entry);
      refused += 1;
      const service = this.#deps.service(name);
      const awake = service?.members.filter((m) => this.#deps.balancer.isAwake(m)).length ?? 0;
      const target = service?.targetInFlight;
      entry.waiter.refuse({
        status: 504,
        message: `no instance of service ${name} had room within ${timeout} ms (${awake} of ${service?.members.length ?? 0} awake${target !== undefined ? `, each with its target of ${target} in flight` : ''}): retry, or give the service more instances (--autoscale max, target-inflight)`,
      });
    }
    const left = refused > 0 ? queue.filter((e) => !e.done) : queue;
    if (left.length === 0) return this.#forget(name);
    this.#queues.set(name, left);
    if (next !== undefined) this.#armExpiry(name, next);
  }

  #forget(name: string): void {
    this.#queues.delete(name);
    clearTimeout(this.#expiry.get(name));
    this.#expiry.delete(name);
  }

  /** The awake member with the fewest forwarded requests in flight, if it has room (or every member is awake). */
  #withRoom(service: ServiceRoute, target: number): string | undefined {
    const balancer = this.#deps.balancer;
    let best: string | undefined;
    let bestActive = Infinity;
    let allAwake = true;
    for (const m of service.members) {
      if (!balancer.isAwake(m)) {
        allAwake = false;
        continue;
      }
      const active = balancer.inFlight(m) - (this.#counted.get(m)?.size ?? 0);
      if (active < bestActive) {
        best = m;
        bestActive = active;
      }
    }
    return best !== undefined && (bestActive < target || allAwake) ? best : undefined;
  }

  /** Out of the queue's accounting (the caller forwards, refuses or drops it). */
  #take(entry: ParkedEntry): void {
    entry.done = true;
    const counted = this.#counted.get(entry.countedOn);
    counted?.delete(entry);
    if (counted?.size === 0) this.#counted.delete(entry.countedOn);
    entry.gate.stats.parkedNow -= 1;
  }
}
