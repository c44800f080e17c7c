// Other hosts' instances in this host's proxy: routes for each instance the
// catalog places on another up host, to that host's hop listener
// (src/proxy/hop.ts), one hop carrying the cluster's token: HTTP by host name,
// with the Host header as the client sent it; raw TCP on the same host port as
// on the owner, tunnelled by a CONNECT (src/proxy/hop-connect.ts). The owner
// parks and wakes a sleeping instance as it does its own. Routes follow the catalog one entry at a time as it changes
// (route propagation is one watch event), and all of them when the set of hosts
// or their addresses changes.
import { describeError, FlickError } from '../errors.js';
import { routeName } from '../controller/routing.js';
import { isServiceRoute, type RouteTable } from '../proxy/routes.js';
import type { AwakeInstance } from '../proxy/waker.js';
import { hopHeaders } from '../proxy/hop.js';
import type { CatalogEntry } from './catalog.js';
import type { HostDirectory, HostRecord } from './membership.js';

/** The id the proxy routes another host's instance by. */
export const remoteId = (owner: string, name: string) => `@${owner}/${name}`;
/** Whether a route's instance id is another host's instance (routed to that host's proxy), not one of this host's. */
export const isRemoteRoute = (instanceId: string): boolean => instanceId.startsWith('@');
/** The instance name and the owner host in a remote route's id (`@<owner>/<name>`). */
export const remoteName = (id: string): string => id.slice(id.indexOf('/') + 1);
export const remoteOwner = (id: string): string => id.slice(1, id.indexOf('/'));

/** Where other hosts' proxies reach a host's instances: its hop listener (a host of an earlier version: its public proxy). */
function hopUrl(record: HostRecord): string | undefined {
  return record.hop ?? record.proxy ?? undefined;
}

export interface RemoteRoutesConfig {
  self: string;
  credential: string;
  routes: RouteTable | undefined;
  directory: () => HostDirectory | undefined;
  entry: (name: string) => CatalogEntry | undefined;
  /** Every instance name in the catalog. */
  names: () => Iterable<string>;
  log: (line: string) => void;
}

export class RemoteRoutes {
  readonly #c: RemoteRoutesConfig;
  readonly #headers: readonly string[];
  /** name → the remote route id the proxy holds now, and what it routes. */
  readonly #held = new Map<string, { id: string; key: string }>();
  /** The hosts and their hop listeners as last routed to. */
  #hosts = '';

  constructor(config: RemoteRoutesConfig) {
    this.#c = config;
    this.#headers = hopHeaders(config.credential);
  }

  /** Called on every tick: re-syncs every route when a host came, went or moved. */
  hostsChanged(): void {
    const hosts = (this.#c.directory()?.list() ?? []).map((h) => `${h.record.name}=${h.load ? hopUrl(h.record) : '-'}`).join(',');
    if (hosts === this.#hosts) return;
    this.#hosts = hosts;
    this.sync();
  }

  /** Makes the proxy's routes for `names` (default: all) match the catalog. */
  sync(names?: Iterable<string>): void {
    const routes = this.#c.routes;
    if (!routes) return;
    for (const name of names ?? new Set([...this.#held.keys(), ...this.#c.names()])) {
      const entry = this.#c.entry(name);
      const serves = entry && entry.owner !== this.#c.self && (entry.http || (entry.tcp?.length ?? 0) > 0);
      const owner = serves ? this.#c.directory()?.get(entry.owner)?.record : undefined;
      const url = owner && hopUrl(owner);
      // The key says what the routes are: a change of host, hop address or ports re-routes.
      const key = url && entry ? `${remoteId(entry.owner, entry.name)} ${url} ${entry.http?.hostname ?? ''} ${(entry.tcp ?? []).map((t) => t.hostPort).join(',')}` : undefined;
      const held = this.#held.get(name);
      if (held?.key === key) continue;
      if (held !== undefined) {
        routes.removeInstance(held.id);
        this.#held.delete(name);
      }
      if (key === undefined || !entry || !url) continue;
      const id = remoteId(entry.owner, entry.name);
      try {
        if (entry.http) routes.setHttp(routeName(entry.http.hostname), { instanceId: id, targetPort: Number(new URL(url).port) });
        // A TCP route names the owner's host port: the bytes go there through the owner's hop listener (a CONNECT).
        // Host ports are each host's own: a port this host's own instance holds stays its.
        for (const t of owner?.hop ? (entry.tcp ?? []) : []) {
          const current = routes.tcp(t.hostPort);
          if (current && (isServiceRoute(current) || !isRemoteRoute(current.instanceId))) this.#c.log(`cluster: not routing host port ${t.hostPort} to "${name}" on ${entry.owner}: an instance of this host has it`);
          else routes.setTcp(t.hostPort, { instanceId: id, targetPort: t.hostPort });
        }
        this.#held.set(name, { id, key });
      } catch (err) {
        routes.removeInstance(id);
        this.#c.log(`cluster: routing "${name}" to its host: ${describeError(err)}`);
      }
    }
  }

  /** The proxy's Waker for a remote route: the owner's hop listener, with the credential. */
  awake(id: string): AwakeInstance {
    const owner = id.slice(1, id.indexOf('/'));
    const host = this.#c.directory()?.get(owner);
    const url = host && hopUrl(host.record);
    if (!host?.load || !url) throw new FlickError('HOST_DOWN', `the instance's host ${owner} is down: a stateless instance is moved to another host within seconds`);
    // The instance's host name goes along: a service on this host balances over it with the service's Host.
    const hostname = this.#c.entry(remoteName(id))?.http?.hostname;
    const headers = hostname !== undefined ? [...this.#headers, 'Flick-Route', hostname] : this.#headers;
    const hop = host.record.hop ? { headers, tunnel: { port: Number(new URL(host.record.hop).port), headers: this.#headers } } : {};
    // The hop listener's port: a service route's members carry the app's port, not the hop's.
    return { host: new URL(url).hostname.replace(/^\[|\]$/g, ''), port: Number(new URL(url).port), asleep: new AbortController().signal, ...hop };
  }
}
