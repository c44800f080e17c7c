// The proxy's routing table: which instance answers for a host name
// (`<name>.<domain>`) and for a raw TCP host port. The controller owns the
// contents and updates them live; the proxy reads on every request and
// subscribes to changes so it can open and close TCP listeners.
import { ProxyError } from './errors.js';

export interface Route {
  instanceId: string;
  /** The port the app listens on inside the instance. */
  targetPort: number;
}

export type RouteChange =
  | { kind: 'tcp-added'; port: number; route: Route }
  | { kind: 'tcp-removed'; port: number; route: Route }
  | { kind: 'instance-removed'; instanceId: string };

// A DNS label (RFC 1123 §2.1): what an instance name must be to appear in a host name.
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class RouteTable {
  readonly #http = new Map<string, Route>();
  readonly #tcp = new Map<number, Route>();
  readonly #listeners = new Set<(change: RouteChange) => void>();

  /** Route `<name>.<domain>` to an instance's port. Replaces an existing route of that name. */
  setHttp(name: string, route: Route): void {
    const key = name.toLowerCase();
    if (!NAME.test(key)) {
      throw new ProxyError('invalid_route', `cannot route host name "${name}": it must be a DNS label (letters, digits, '-'), so that "${key}.<domain>" is a valid host`, { kind: 'user' });
    }
    checkPort(route.targetPort, 'target');
    this.#http.set(key, { instanceId: route.instanceId, targetPort: route.targetPort });
  }

  deleteHttp(name: string): void {
    this.#http.delete(name.toLowerCase());
  }

  /** Listen on a host port and pipe its connections to an instance's port. */
  setTcp(port: number, route: Route): void {
    checkPort(port, 'host');
    checkPort(route.targetPort, 'target');
    const previous = this.#tcp.get(port);
    const copy = { instanceId: route.instanceId, targetPort: route.targetPort };
    this.#tcp.set(port, copy);
    if (previous) this.#emit({ kind: 'tcp-removed', port, route: previous });
    this.#emit({ kind: 'tcp-added', port, route: copy });
  }

  deleteTcp(port: number): void {
    const route = this.#tcp.get(port);
    if (!route) return;
    this.#tcp.delete(port);
    this.#emit({ kind: 'tcp-removed', port, route });
  }

  /** Remove every route of an instance (it was deleted); parked requests for it are answered 503. */
  removeInstance(instanceId: string): void {
    for (const [name, route] of this.#http) if (route.instanceId === instanceId) this.#http.delete(name);
    for (const [port, route] of this.#tcp) if (route.instanceId === instanceId) this.deleteTcp(port);
    this.#emit({ kind: 'instance-removed', instanceId });
  }

  /** The route for a lower-case instance name (already stripped of its domain). */
  http(name: string): Route | undefined {
    return this.#http.get(name);
  }

  tcp(port: number): Route | undefined {
    return this.#tcp.get(port);
  }

  tcpPorts(): number[] {
    return [...this.#tcp.keys()];
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
