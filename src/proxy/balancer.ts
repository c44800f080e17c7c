// Balancing a service's requests over its members (instances of one
// configuration), per request for HTTP and per connection for upgrades:
//
// 1. An awake member below the service's in-flight target, fewest in flight
//    first (ties taken in turn). A client connection is pinned to the member
//    it last used while that member is awake, below the target and not busier
//    than the least busy one by more than one request, so keep-alive clients
//    reuse the member's pooled upstream connections.
// 2. Else a sleeping member below the target, the one already waking first
//    (parked requests count as in flight): it wakes. A burst against a service
//    at zero thus wakes ceil(burst / target) members at once, all from the
//    shared template, rather than queueing behind one wake (Knative's
//    activator spreads a burst over new pods the same way); with no target, one.
// 3. Else, while some member is not awake yet, the sleeping member with the
//    fewest in flight; when every member is awake, the one with the fewest.
//
// In cases 2 and 3 with a member that is not awake, the request is parked
// (`park: true`): it waits in the service's parking (service-parking.ts), counted
// in flight on the member whose wake it asked for, and goes to whichever member
// is awake with room first, not necessarily that one.
//
// In-flight counts come from the proxy's own Waker calls (requestStarted /
// requestFinished), so they include parked requests, upgrades and TCP exchanges.
import type { Route, ServiceRoute } from './routes.js';

/** The balancer's choice for one request: the member, and whether it waits for a wake (parks) first. */
export interface Placement {
  route: Route;
  park: boolean;
}

/** A member of `service` as a plain Route. */
export function memberRoute(service: ServiceRoute, instanceId: string): Route {
  return {
    instanceId,
    targetPort: service.targetPort,
    ...(service.certificate !== undefined ? { certificate: service.certificate } : {}),
    ...(service.plain !== undefined ? { plain: service.plain } : {}),
  };
}

const kPinned = Symbol('flick.proxy.pinned');
type Pinnable = object & { [kPinned]?: Map<string, string> };

export class Balancer {
  readonly #isAwake: (instanceId: string) => boolean;
  readonly #inFlight = new Map<string, number>();
  /** When each member was last chosen (a counter): ties go to the least recently chosen. */
  readonly #lastChosen = new Map<string, number>();
  #clock = 0;

  constructor(isAwake: (instanceId: string) => boolean) {
    this.#isAwake = isAwake;
  }

  started(instanceId: string): void {
    this.#inFlight.set(instanceId, (this.#inFlight.get(instanceId) ?? 0) + 1);
  }

  finished(instanceId: string): void {
    const n = (this.#inFlight.get(instanceId) ?? 0) - 1;
    if (n <= 0) this.#inFlight.delete(instanceId);
    else this.#inFlight.set(instanceId, n);
  }

  inFlight(instanceId: string): number {
    return this.#inFlight.get(instanceId) ?? 0;
  }

  isAwake(instanceId: string): boolean {
    return this.#isAwake(instanceId);
  }

  /**
   * Where a request (or connection) of `client` goes: a member as a Route, and
   * whether it must park because that member is not awake; undefined if the
   * service has no member left to try.
   */
  pick(service: ServiceRoute, client: Pinnable, exclude?: ReadonlySet<string>): Placement | undefined {
    const members = exclude === undefined ? service.members : service.members.filter((m) => !exclude.has(m));
    if (members.length === 0) return undefined;
    const target = service.targetInFlight ?? Infinity;
    const awake = members.filter((m) => this.#isAwake(m));
    const below = awake.filter((m) => this.inFlight(m) < target);
    let chosen: string | undefined;
    let park = false;
    if (below.length > 0) {
      const least = this.#least(below);
      const pinned = client[kPinned]?.get(service.service);
      chosen = pinned !== undefined && below.includes(pinned) && this.inFlight(pinned) <= this.inFlight(least) + 1 ? pinned : least;
    } else if (awake.length === members.length) {
      chosen = this.#least(members);
    } else {
      // Fill a waking member up to the target before waking the next one.
      const asleep = members.filter((m) => !this.#isAwake(m));
      const sleeping = asleep.filter((m) => this.inFlight(m) < target);
      chosen = sleeping.length > 0 ? this.#most(sleeping) : this.#least(asleep);
      park = true;
    }
    this.#lastChosen.set(chosen, ++this.#clock);
    let pins = client[kPinned];
    if (pins === undefined) client[kPinned] = pins = new Map();
    pins.set(service.service, chosen);
    return { route: memberRoute(service, chosen), park };
  }

  /** Most in flight (a member already waking); among equals, the least recently chosen. */
  #most(candidates: readonly string[]): string {
    let max = -1;
    for (const m of candidates) max = Math.max(max, this.inFlight(m));
    return this.#leastRecent(candidates.filter((m) => this.inFlight(m) === max));
  }

  /** Fewest in flight; among equals, the least recently chosen (so idle members share sequential requests). */
  #least(candidates: readonly string[]): string {
    let min = Infinity;
    for (const m of candidates) min = Math.min(min, this.inFlight(m));
    return this.#leastRecent(candidates.filter((m) => this.inFlight(m) === min));
  }

  #leastRecent(tied: readonly string[]): string {
    let best = tied[0]!;
    for (const m of tied) if ((this.#lastChosen.get(m) ?? -1) < (this.#lastChosen.get(best) ?? -1)) best = m;
    return best;
  }
}
