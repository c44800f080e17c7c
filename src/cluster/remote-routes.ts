// Other hosts' HTTP instances in this host's proxy: one route per instance the
// catalog places on another up host, to that host's hop listener
// (src/proxy/hop.ts), one hop carrying the cluster's token, with the Host header
// as the client sent it, so the owner parks and wakes a sleeping instance as it
// does its own. Routes follow the catalog one entry at a time as it changes
// (route propagation is one watch event), and all of them when the set of hosts
// or their addresses changes.
import { describeError, FlickError } from '../errors.js';
import { routeName } from '../controller/routing.js';
import type { RouteTable } from '../proxy/routes.js';
import type { AwakeInstance } from '../proxy/waker.js';
import { hopHeaders } from '../proxy/hop.js';
import type { CatalogEntry } from './catalog.js';
import type { HostDirectory, HostRecord } from './membership.js';

const remoteId = (owner: string, name: string) => `@${owner}/${name}`;
/** Whether a route's instance id is another host's instance (routed to that host's proxy), not one of this host's. */
export const isRemoteRoute = (instanceId: string): boolean => instanceId.startsWith('@');

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
  /** name → remote route id the proxy holds now. */
  readonly #held = new Map<string, string>();
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
      const owner = entry && entry.owner !== this.#c.self && entry.state === 'placed' && entry.http ? this.#c.directory()?.get(entry.owner)?.record : undefined;
      const url = owner && hopUrl(owner);
      const id = url && entry ? remoteId(entry.owner, entry.name) : undefined;
      const held = this.#held.get(name);
      if (held === id) continue;
      if (held !== undefined) {
        routes.removeInstance(held);
        this.#held.delete(name);
      }
      if (id === undefined || !entry?.http || !url) continue;
      try {
        routes.setHttp(routeName(entry.http.hostname), { instanceId: id, targetPort: Number(new URL(url).port) });
        this.#held.set(name, id);
      } catch (err) {
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
    return { host: new URL(url).hostname.replace(/^\[|\]$/g, ''), asleep: new AbortController().signal, ...(host.record.hop ? { headers: this.#headers } : {}) };
  }
}
