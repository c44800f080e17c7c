// The proxy's routing table: which instance answers for a host name (a label
// `<name>` of the proxy's domain, or a whole host name such as
// `shop.example.com`) and for a raw TCP host port. The controller owns the
// contents and updates them live; the proxy reads on every request and
// subscribes to changes so it can open and close TCP listeners.
import type { CertificatePair } from './certificates.js';
import { ProxyError } from './errors.js';

export interface Route {
  instanceId: string;
  /** The port the app listens on inside the instance. */
  targetPort: number;
  /** The certificate the HTTPS listener presents when a client names this host (SNI); absent: the listener's default. */
  certificate?: CertificatePair;
  /** `redirect`: plain HTTP requests get a 308 to the same URL over HTTPS. Default: served on both. */
  plain?: 'serve' | 'redirect';
}

/**
 * A service's host name: requests are balanced over its members (instances of
 * one configuration) by src/proxy/balancer.ts, each then forwarded as to a Route.
 */
export interface ServiceRoute {
  service: string;
  /** Member instance ids, in a stable order. */
  members: readonly string[];
  targetPort: number;
  /**
   * In-flight requests per member before the next one goes to another member,
   * waking a sleeping one if need be (autoscale's target). Default: no limit
   * (awake members take everything; a service with none awake wakes one).
   */
  targetInFlight?: number;
  certificate?: CertificatePair;
  plain?: 'serve' | 'redirect';
}

export type HttpTarget = Route | ServiceRoute;

/** What a TCP host port forwards to: one instance, or a service's members (balanced per connection). */
export type TcpTarget = Route | ServiceRoute;

export function isServiceRoute(target: HttpTarget): target is ServiceRoute {
  return (target as ServiceRoute).members !== undefined;
}

export type RouteChange =
  | { kind: 'tcp-added'; port: number; route: TcpTarget }
  | { kind: 'tcp-removed'; port: number; route: TcpTarget }
  | { kind: 'instance-removed'; instanceId: string };

// A DNS label (RFC 1123 §2.1): what an instance name must be to appear in a host name.
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class RouteTable {
  readonly #http = new Map<string, Route>();
  /** Whole host names (lower case, no trailing dot), looked up before labels. */
  readonly #hosts = new Map<string, Route>();
  /** Services by label (`<service>.<domain>`), looked up after instances. */
  readonly #services = new Map<string, ServiceRoute>();
  readonly #tcp = new Map<number, Route>();
  /** Services' TCP ports, looked up before instances' (a service's members all declare the same host port). */
  readonly #tcpServices = new Map<number, ServiceRoute>();
  readonly #listeners = new Set<(change: RouteChange) => void>();
  /**
   * Each instance's routes (`h:<label>`, `H:<host>`, `t:<port>`), so removing an
   * instance costs its own routes, not a scan of every route (100,000 instances).
   */
  readonly #owned = new Map<string, Set<string>>();

  /** Route `<name>.<domain>` to an instance's port. Replaces an existing route of that name. */
  setHttp(name: string, route: Route): void {
    const key = name.toLowerCase();
    if (!NAME.test(key)) {
      throw new ProxyError('invalid_route', `cannot route host name "${name}": it must be a DNS label (letters, digits, '-'), so that "${key}.<domain>" is a valid host`, { kind: 'user' });
    }
    checkPort(route.targetPort, 'target');
    this.#disown(this.#http.get(key), `h:${key}`);
    this.#http.set(key, copyRoute(route));
    this.#own(route.instanceId, `h:${key}`);
  }

  deleteHttp(name: string): void {
    const key = name.toLowerCase();
    this.#disown(this.#http.get(key), `h:${key}`);
    this.#http.delete(key);
  }

  /** Route a whole host name (`shop.example.com`), whatever the proxy's domain. Replaces an existing route of that host. */
  setHttpHost(host: string, route: Route): void {
    const key = host.toLowerCase().replace(/\.$/, '');
    if (key.length > 253 || !key.split('.').every((label) => NAME.test(label))) {
      throw new ProxyError('invalid_route', `cannot route host name "${host}": it must be dot-separated DNS labels (letters, digits, '-'), at most 253 characters`, { kind: 'user' });
    }
    checkPort(route.targetPort, 'target');
    this.#disown(this.#hosts.get(key), `H:${key}`);
    this.#hosts.set(key, copyRoute(route));
    this.#own(route.instanceId, `H:${key}`);
  }

  /** Route `<service>.<domain>` over the service's members; replaces the service's route (a member added or gone). */
  setService(name: string, route: ServiceRoute): void {
    const key = name.toLowerCase();
    if (!NAME.test(key)) throw new ProxyError('invalid_route', `cannot route service "${name}": its name must be a DNS label (letters, digits, '-')`, { kind: 'user' });
    checkPort(route.targetPort, 'target');
    this.#services.set(key, { ...route, members: [...route.members] });
  }

  deleteService(name: string): void {
    this.#services.delete(name.toLowerCase());
  }

  /** Listen on a host port and pipe its connections to an instance's port. */
  setTcp(port: number, route: Route): void {
    checkPort(port, 'host');
    checkPort(route.targetPort, 'target');
    const previous = this.#tcp.get(port);
    const copy = { instanceId: route.instanceId, targetPort: route.targetPort };
    this.#disown(previous, `t:${port}`);
    this.#tcp.set(port, copy);
    this.#own(copy.instanceId, `t:${port}`);
    if (previous) this.#emit({ kind: 'tcp-removed', port, route: previous });
    this.#emit({ kind: 'tcp-added', port, route: copy });
  }

  deleteTcp(port: number): void {
    const route = this.#tcp.get(port);
    if (!route) return;
    this.#disown(route, `t:${port}`);
    this.#tcp.delete(port);
    this.#emit({ kind: 'tcp-removed', port, route });
  }

  /** Listen on a host port and balance its connections over a service's members; replaces the port's service route, and takes precedence over instances' routes of that port. */
  setTcpService(port: number, route: ServiceRoute): void {
    checkPort(port, 'host');
    checkPort(route.targetPort, 'target');
    const copy = { ...route, members: [...route.members] };
    this.#tcpServices.set(port, copy);
    this.#emit({ kind: 'tcp-added', port, route: copy });
  }

  deleteTcpService(port: number): void {
    const route = this.#tcpServices.get(port);
    if (!route) return;
    this.#tcpServices.delete(port);
    this.#emit({ kind: 'tcp-removed', port, route });
  }

  /** Remove every route of an instance (it was deleted); parked requests for it are answered 503. */
  removeInstance(instanceId: string): void {
    for (const key of [...(this.#owned.get(instanceId) ?? [])]) {
      const rest = key.slice(2);
      if (key.startsWith('h:')) this.#http.delete(rest);
      else if (key.startsWith('H:')) this.#hosts.delete(rest);
      else this.deleteTcp(Number(rest));
    }
    this.#owned.delete(instanceId);
    this.#emit({ kind: 'instance-removed', instanceId });
  }

  #own(instanceId: string, key: string): void {
    let keys = this.#owned.get(instanceId);
    if (!keys) this.#owned.set(instanceId, (keys = new Set()));
    keys.add(key);
  }

  #disown(route: Route | undefined, key: string): void {
    if (!route) return;
    const keys = this.#owned.get(route.instanceId);
    keys?.delete(key);
    if (keys?.size === 0) this.#owned.delete(route.instanceId);
  }

  /** The route for a lower-case instance name (already stripped of its domain). */
  http(name: string): Route | undefined {
    return this.#http.get(name);
  }

  /**
   * The route a `Host` header (or an SNI server name) addresses: the whole host
   * name first, then `<name>.<domain>`. `domain` must be lower case.
   */
  forHost(host: string | undefined, domain: string): HttpTarget | undefined {
    if (!host) return undefined;
    if (this.#hosts.size > 0) {
      const exact = this.#hosts.get(bareHost(host));
      if (exact !== undefined) return exact;
    }
    const name = instanceNameFromHost(host, domain);
    return name === undefined ? undefined : (this.#http.get(name) ?? this.#services.get(name));
  }

  /** A service's route by name, or undefined. */
  service(name: string): ServiceRoute | undefined {
    return this.#services.get(name.toLowerCase());
  }

  tcp(port: number): TcpTarget | undefined {
    return this.#tcpServices.get(port) ?? this.#tcp.get(port);
  }

  tcpPorts(): number[] {
    return [...new Set([...this.#tcp.keys(), ...this.#tcpServices.keys()])];
  }

  /** Call `listener` on every TCP route change and instance removal; returns the unsubscribe function. */
  subscribe(listener: (change: RouteChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(change: RouteChange): void {
    for (const listener of this.#listeners) listener(change);
  }
}

function copyRoute(route: Route): Route {
  return {
    instanceId: route.instanceId,
    targetPort: route.targetPort,
    ...(route.certificate !== undefined ? { certificate: route.certificate } : {}),
    ...(route.plain !== undefined ? { plain: route.plain } : {}),
  };
}

/** `Host: Shop.Example.com.:8443` → `shop.example.com`; an IPv6 literal stays as it is. */
function bareHost(host: string): string {
  let end = host.length;
  const colon = host.lastIndexOf(':');
  if (colon !== -1 && host.charCodeAt(0) !== 91 /* [ */) end = colon;
  if (host.charCodeAt(end - 1) === 46 /* . */) end -= 1;
  return host.slice(0, end).toLowerCase();
}

function checkPort(port: number, which: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ProxyError('invalid_route', `cannot route ${which} port ${port}: a port is an integer from 1 to 65535`, { kind: 'user' });
  }
}

/**
 * The instance name a `Host` header addresses, or undefined if it is not
 * `<name>.<domain>`. Host names are case-insensitive (RFC 9110 §4.2.3); the
 * port and a trailing root dot are ignored. `domain` must be lower case.
 */
export function instanceNameFromHost(host: string | undefined, domain: string): string | undefined {
  if (!host) return undefined;
  let end = host.length;
  // `host:port`; an IPv6 literal `[::1]:80` ends in `]` before its port and never matches a name.
  const colon = host.lastIndexOf(':');
  if (colon !== -1) end = colon;
  if (host.charCodeAt(end - 1) === 46 /* . */) end -= 1;
  const nameEnd = end - domain.length - 1;
  if (nameEnd <= 0 || host.charCodeAt(nameEnd) !== 46) return undefined;
  const lower = host.slice(0, end).toLowerCase();
  if (!lower.endsWith(domain)) return undefined;
  const name = lower.slice(0, nameEnd);
  // Only one label: `a.b.localhost` is not an instance of domain `localhost`.
  return name.includes('.') ? undefined : name;
}
