// Every host's proxy routes every service (issue 15 item 3). A service lives on
// the host it was made on (its record in that host's services.json); its route
// is shared through etcd, one key a service,
//   <prefix>services/<name> → { home host, member names, target port, … },
// written by its home host whenever the route changes there, deleted with the
// service. Every host follows the key space list-then-watch (read-model.ts) and
// routes each service's host name on its own proxy, each member resolved by its
// name through the catalog: one on this host directly (its id here), one on
// another up host over the hop to that host (`@owner/name`, remote-routes.ts;
// the owner parks and wakes it), one whose host is down not at all. The home
// host resolves its own services the same way, so a member a failover moved is
// routed at its new host at once, and it applies a change to its own proxy
// before publishing it, so a deploy's route change is in effect when the
// deploy goes on. The key is not attached to the home's lease: a service whose
// home host is down is still routed by the others over its members that are up.
// A service with an in-flight target (autoscaled: its members all on its home
// host, most asleep) is balanced where its members' wakes are known: the other
// proxies send its requests to the home host's hop listener as they are (the
// service's Host, no member named), one hop, and the home's proxy balances,
// parks and wakes them as its own clients'. So is a service's TCP port (its
// members on its home host too): every other host's proxy listens on it and
// tunnels each connection to the home's hop listener (a CONNECT, hop-connect.ts),
// where it is balanced over the members; a port this host's own instance or
// service holds stays theirs.
import { z } from 'zod';
import { describeError } from '../errors.js';
import type { ServiceRouteSink } from '../services/member-placement.js';
import type { CatalogEntry } from './catalog.js';
import type { Compare, EtcdClient, TxnOp } from './etcd-client.js';
import type { RouteTable } from '../proxy/routes.js';
import { ReadModel } from './read-model.js';
import { isRemoteRoute, remoteId, remoteName } from './remote-routes.js';

type SinkRoute = Parameters<ServiceRouteSink['setService']>[1];

const SharedRouteSchema = z.object({
  version: z.literal(1),
  service: z.string(),
  home: z.string(),
  members: z.array(z.string()),
  targetPort: z.number(),
  targetInFlight: z.number().optional(),
  certificate: z.object({ cert: z.string(), key: z.string() }).optional(),
  plain: z.enum(['serve', 'redirect']).optional(),
  /** Its TCP host ports (balanced at its home). */
  tcp: z.array(z.number()).optional(),
});
type SharedRoute = z.infer<typeof SharedRouteSchema>;

export const servicesPrefix = (prefix: string) => `${prefix}services/`;

/** How long a member that left a shared route is kept before its removal: other proxies' watches and their requests in flight to it. */
export const ROUTE_SETTLE_MS = 1000;

export interface ClusterServiceRoutesConfig {
  self: string;
  etcd: EtcdClient;
  prefix: string;
  entry(name: string): CatalogEntry | undefined;
  /** The name of instance `id`, whichever host has it (a moved instance keeps its id). */
  nameOf(id: string): string | undefined;
  isUp(host: string): boolean;
  /** The up hosts' names, in a stable order (a change re-routes every service). */
  upHosts(): string;
  log(line: string): void;
}

export class ClusterServiceRoutes {
  readonly #c: ClusterServiceRoutesConfig;
  #sink: ServiceRouteSink | undefined;
  /** This host's services' routes as services.ts set them (member ids here). */
  readonly #own = new Map<string, SinkRoute>();
  /** The member names of each of this host's services, as last published. */
  readonly #ownNames = new Map<string, string[]>();
  #shared: ReadModel | undefined;
  /** What the proxy routes now for each service (a key of its route), so that an unchanged route is not set again. */
  readonly #applied = new Map<string, string>();
  readonly #dirty = new Set<string>();
  #flushing: Promise<void> | undefined;
  /** When a route that dropped a member was last published (etcd's answer). */
  #droppedAt = 0;
  readonly #moved = new Set<() => void>();
  /** This host's services' TCP ports (port → service). */
  readonly #ownTcp = new Map<number, string>();
  /** Other hosts' services' TCP ports routed here (port → service). */
  readonly #appliedTcp = new Map<number, string>();
  #table: Pick<RouteTable, 'tcp'> | undefined;
  #hosts = '';
  #started = false;
  #stopped = false;

  constructor(config: ClusterServiceRoutesConfig) {
    this.#c = config;
  }

  /** The sink this host's services route through: applied to `local` (the proxy's table) at once, then shared. */
  sink(local: ServiceRouteSink): ServiceRouteSink {
    this.#sink = local;
    return {
      setService: (name, route) => {
        const before = this.#own.get(name)?.members;
        if (before?.some((m) => !route.members.includes(m))) this.#droppedAt = Number.MAX_SAFE_INTEGER;
        this.#own.set(name, { ...route, members: [...route.members] });
        this.#changed(name);
      },
      deleteService: (name) => {
        if (this.#own.delete(name)) this.#droppedAt = Number.MAX_SAFE_INTEGER;
        this.#changed(name);
      },
      setTcpService: (port, route) => {
        this.#ownTcp.set(port, route.service);
        this.#appliedTcp.delete(port);
        local.setTcpService(port, route);
      },
      deleteTcpService: (port) => {
        this.#ownTcp.delete(port);
        local.deleteTcpService(port);
      },
    };
  }

  /** Once the catalog is in: follows every host's services (`table`: the proxy's, to leave its own TCP ports alone). */
  start(table?: Pick<RouteTable, 'tcp'>): void {
    const first = !this.#started;
    this.#started = true;
    this.#table ??= table;
    // This host's services learn where their members are now (one may have moved while this host was down).
    if (first) for (const listener of this.#moved) listener();
    const model = new ReadModel(this.#c.etcd, servicesPrefix(this.#c.prefix), {
      onChange: (change) => this.#apply((change.type === 'put' ? change.kv.key : change.key).slice(servicesPrefix(this.#c.prefix).length)),
      onGap: (err) => this.#c.log(`cluster: services re-listed after: ${describeError(err)}`),
    });
    this.#shared = model;
    model.ready.then(
      () => {
        // This host's services as they are now; a key it left behind (a service removed while etcd was away) goes.
        for (const kv of model.values()) {
          const name = kv.key.slice(servicesPrefix(this.#c.prefix).length);
          if (this.#sink !== undefined && !this.#own.has(name) && this.#parse(kv.value)?.home === this.#c.self) this.#publish(name);
        }
        this.resync();
      },
      (err: unknown) => {
        if (this.#stopped) return;
        this.#c.log(`cluster: following services: ${describeError(err)}; trying again`);
        setTimeout(() => this.#stopped || this.start(table), 1000).unref();
      },
    );
  }

  /** Every route again (and this host's published again where its members' names changed). */
  resync(): void {
    for (const name of new Set([...this.#own.keys(), ...this.#applied.keys(), ...this.#sharedNames()])) this.#changed(name);
  }

  /** On every tick: a host that came or went re-routes every service. */
  hostsChanged(): void {
    const hosts = this.#c.upHosts();
    if (hosts === this.#hosts) return;
    this.#hosts = hosts;
    this.resync();
  }

  /** A catalog entry changed: the services it is a member of are routed again, and this host's services told (it may have moved). */
  memberChanged(name: string): void {
    let ours = false;
    for (const [service, names] of this.#ownNames) {
      if (!names.includes(name)) continue;
      ours = true;
      this.#changed(service);
    }
    for (const service of this.#sharedNames()) if (this.#sharedRoute(service)?.members.includes(name)) this.#apply(service);
    if (ours) for (const listener of this.#moved) listener();
  }

  onMoved(listener: () => void): () => void {
    this.#moved.add(listener);
    return () => this.#moved.delete(listener);
  }

  /** The id the member named `name` has now; null: gone from the catalog; undefined: not known yet. */
  follow(name: string): string | null | undefined {
    if (!this.#started) return undefined;
    const e = this.#c.entry(name);
    if (e === undefined) return null;
    if (e.owner === this.#c.self) return e.id ?? undefined;
    return remoteId(e.owner, name);
  }

  /** The name of member `id` wherever it is; null: no host has it; undefined: not known yet. */
  nameOf(id: string): string | null | undefined {
    if (isRemoteRoute(id)) return remoteName(id);
    return this.#started ? (this.#c.nameOf(id) ?? null) : undefined;
  }

  /** The host that has a service named `name`, if another host has one. */
  serviceHost(name: string): string | undefined {
    const home = this.#sharedRoute(name)?.home;
    return home !== undefined && home !== this.#c.self ? home : undefined;
  }

  /** Resolves once a route that dropped a member is in etcd and the other proxies had time to follow it. */
  async settled(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
    const wait = this.#droppedAt + ROUTE_SETTLE_MS - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(wait, ROUTE_SETTLE_MS)));
  }

  stop(): void {
    this.#stopped = true;
    this.#shared?.stop();
  }

  #changed(name: string): void {
    this.#apply(name);
    const own = this.#own.get(name);
    const names = own?.members.flatMap((id) => (isRemoteRoute(id) ? [remoteName(id)] : (this.#c.nameOf(id) ?? []))) ?? [];
    if (own !== undefined) this.#ownNames.set(name, names);
    else this.#ownNames.delete(name);
    if (this.#started && this.#sink !== undefined) this.#publish(name);
  }

  #sharedNames(): string[] {
    const prefix = servicesPrefix(this.#c.prefix);
    return (this.#shared?.values() ?? []).map((kv) => kv.key.slice(prefix.length));
  }

  #parse(value: string): SharedRoute | undefined {
    try {
      return SharedRouteSchema.safeParse(JSON.parse(value)).data;
    } catch {
      return undefined;
    }
  }

  #sharedRoute(name: string): SharedRoute | undefined {
    const kv = this.#shared?.get(`${servicesPrefix(this.#c.prefix)}${name}`);
    return kv ? this.#parse(kv.value) : undefined;
  }

  /** A member of this host's service, by its id here or remote id: where it is now (a moved one at its new host), or nothing while its host is down. */
  #resolveOwn(id: string): string[] {
    const name = isRemoteRoute(id) ? remoteName(id) : this.#c.nameOf(id);
    const e = name === undefined ? undefined : this.#c.entry(name);
    if (!isRemoteRoute(id) && (e === undefined || e.owner === this.#c.self)) return [id];
    if (e === undefined) return [id];
    if (e.owner === this.#c.self) return e.id !== null ? [e.id] : [];
    return this.#c.isUp(e.owner) ? [remoteId(e.owner, e.name)] : [];
  }

  /** A member of another host's service, by name: here directly, elsewhere over the hop, nothing while it is not placed or its host is down. */
  #resolve(name: string): string[] {
    const e = this.#c.entry(name);
    if (e === undefined || e.state !== 'placed') return [];
    if (e.owner === this.#c.self) return e.id !== null ? [e.id] : [];
    return this.#c.isUp(e.owner) ? [remoteId(e.owner, name)] : [];
  }

  /** Sets the proxy's route of service `name` from this host's own route, or else from the shared one. */
  #apply(name: string): void {
    const sink = this.#sink;
    if (sink === undefined) return;
    const own = this.#own.get(name);
    const shared = own === undefined ? this.#sharedRoute(name) : undefined;
    let route: SinkRoute | undefined;
    if (own !== undefined) route = { ...own, members: own.members.flatMap((id) => this.#resolveOwn(id)) };
    else if (shared !== undefined && shared.home !== this.#c.self) {
      const { version: _v, home, members, targetInFlight, ...rest } = shared;
      // Autoscaled: one hop to the home's proxy, which knows which members are awake.
      if (targetInFlight !== undefined) route = { ...rest, members: this.#c.isUp(home) ? [remoteId(home, shared.service)] : [] };
      else route = { ...rest, members: members.flatMap((m) => this.#resolve(m)) };
    }
    this.#applyTcp(name, own === undefined && shared !== undefined && shared.home !== this.#c.self ? shared : undefined);
    const key = route === undefined ? undefined : JSON.stringify(route);
    if (this.#applied.get(name) === key) return;
    if (route === undefined) {
      this.#applied.delete(name);
      sink.deleteService(name);
    } else {
      this.#applied.set(name, key!);
      sink.setService(name, route);
    }
  }

  /** Another host's service's TCP ports: tunnelled to its home, unless this host's own instance or service has the port. */
  #applyTcp(name: string, shared: SharedRoute | undefined): void {
    const sink = this.#sink!;
    const want = new Set(shared?.tcp ?? []);
    for (const [port, service] of this.#appliedTcp) {
      if (service !== name || want.has(port)) continue;
      this.#appliedTcp.delete(port);
      sink.deleteTcpService(port);
    }
    if (shared === undefined) return;
    for (const port of want) {
      const held = this.#table?.tcp(port);
      const ours = this.#appliedTcp.get(port) === name;
      if (!ours && held !== undefined && ('members' in held || !isRemoteRoute(held.instanceId))) {
        this.#c.log(`cluster: not routing host port ${port} to service ${name} on ${shared.home}: this host has it`);
        continue;
      }
      this.#appliedTcp.set(port, name);
      sink.setTcpService(port, { service: name, members: this.#c.isUp(shared.home) ? [remoteId(shared.home, name)] : [], targetPort: port });
    }
  }

  #publish(name: string): void {
    this.#dirty.add(name);
    this.#flushing ??= this.#flush().finally(() => (this.#flushing = undefined));
  }

  /** Writes the dirty services' routes to etcd in turn; one that fails is tried again (200 ms doubling to 5 s). */
  async #flush(): Promise<void> {
    let wait = 200;
    while (this.#dirty.size > 0 && !this.#stopped) {
      const name = this.#dirty.values().next().value!;
      this.#dirty.delete(name);
      const dropping = this.#droppedAt === Number.MAX_SAFE_INTEGER;
      try {
        await this.#write(name);
        if (dropping && this.#dirty.size === 0) this.#droppedAt = Date.now();
        wait = 200;
      } catch (err) {
        this.#dirty.add(name);
        this.#c.log(`cluster: sharing service ${name}'s route: ${describeError(err)}; trying again in ${wait} ms`);
        await new Promise((resolve) => setTimeout(resolve, wait).unref());
        wait = Math.min(wait * 2, 5000);
      }
    }
  }

  /**
   * Writes service `name`'s route as one etcd txn on the revision read: two hosts
   * making the same service at once (each mirror not yet showing the other's) or
   * a delete racing another host's put cannot overwrite the other host's route;
   * a lost txn reads the key again and checks its home again.
   */
  async #write(name: string): Promise<void> {
    const key = `${servicesPrefix(this.#c.prefix)}${name}`;
    for (;;) {
      const current = await this.#c.etcd.get(key);
      const theirs = current ? this.#parse(current.value) : undefined;
      if (theirs !== undefined && theirs.home !== this.#c.self) {
        this.#c.log(`cluster: service ${name} is also host ${theirs.home}'s: this host's is not shared (remove one of them)`);
        return;
      }
      const own = this.#own.get(name);
      let op: TxnOp;
      if (own === undefined) {
        if (current === undefined) return;
        op = { delete: { key } };
      } else {
        const { service, targetPort, targetInFlight, certificate, plain } = own;
        const tcp = [...this.#ownTcp].filter(([, s]) => s === name).map(([port]) => port).sort((a, b) => a - b);
        const value: SharedRoute = { version: 1, service, home: this.#c.self, members: this.#ownNames.get(name) ?? [], targetPort, ...(targetInFlight !== undefined ? { targetInFlight } : {}), ...(certificate ? { certificate } : {}), ...(plain ? { plain } : {}), ...(tcp.length > 0 ? { tcp } : {}) };
        const text = JSON.stringify(value);
        if (current?.value === text) return;
        op = { put: { key, value: text } };
      }
      const unchanged: Compare = current === undefined ? { key, target: 'CREATE', result: 'EQUAL', value: 0 } : { key, target: 'MOD', result: 'EQUAL', value: current.modRevision };
      if ((await this.#c.etcd.txn([unchanged], [op])).succeeded) return;
    }
  }
}
