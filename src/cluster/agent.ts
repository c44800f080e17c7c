// A host's part in the cluster, on top of the controller's public surface (it
// never reaches into the controller or the proxy; both stay free of etcd):
//   - creates and forks through the API first take the instance's name in the catalog
//     (catalog.ts, a fenced txn), so names are cluster-wide and a create answers
//     503 CLUSTER_UNAVAILABLE while etcd is unreachable;
//   - the proxy routes every other host's HTTP instances too: to that host's
//     hop listener (src/proxy/hop.ts), one hop carrying the cluster's token, with
//     the Host header as the client sent it, so the owner parks and wakes a
//     sleeping instance as it does its own;
//   - when a host's lease lapses, its stateless instances are created again on
//     the best host left (placement.ts: free RAM and CPU, the image or its
//     template there, replicas spread; the others step in after 3 s if it does
//     not), each move a fenced txn; stateful ones show `unavailable`;
//   - a host that alone lost etcd (its peers still read it) stops its stateless
//     instances before its lease lapses (fence.ts), and starts them again if
//     they are still its own once it is back;
//   - a host stops every local instance the catalog gives to another host: at
//     start, before it registers as up (a host that returns after a failover),
//     and whenever it sees that happen later (after being cut off).
import { FlickError, describeError } from '../errors.js';
import { DEFAULT_MEMORY_MB, defaultName, type InstanceConfig } from '../controller/spec.js';
import type { Controller, ForkConfig, ForkResult } from '../controller/controller.js';
import type { ApiController } from '../api/handler.js';
import type { RouteTable } from '../proxy/routes.js';
import type { Waker } from '../proxy/waker.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { catalogPrefix, CatalogError, clusterInstanceView, fencedDelete, fencedPut, parseEntry, placedEntry, type CatalogEntry, type ClusterInstanceView, type Fence } from './catalog.js';
import { EtcdError, type EtcdClient, type KeyValue } from './etcd-client.js';
import type { HostDirectory } from './membership.js';
import { ReadModel } from './read-model.js';
import { startHostFence, type HostFenceHandle } from './fence-instances.js';
import { FENCE_GRACE_MS } from './fence.js';
import { candidatesOf, pickHost, type PendingCreates, type PlacementRequest } from './placement.js';
import { RemoteRoutes } from './remote-routes.js';
import { clusterMemberPlacement } from './service-members.js';
import { ClusterServiceRoutes } from './service-routes.js';

/** How long the other hosts leave the move of a dead host's instance to the chosen host before they try. */
export const STEP_IN_AFTER_MS = 3000;
/** After a failed move, the next try waits this long (the entry's updatedAt is set to that time). */
export const RETRY_MOVE_MS = 30_000;
const TICK_MS = 200;

export type AgentController = Pick<Controller, 'list' | 'create' | 'rm' | 'on' | 'stop' | 'start'>;

export interface AgentConfig {
  etcd: EtcdClient;
  prefix: string;
  host: string;
  /** The cluster's token: every proxy hop carries it (src/proxy/hop.ts). */
  credential: string;
  /** The host lease's TTL: the fence (fence.ts) acts within it. */
  leaseTtlMs: number;
  log: (line: string) => void;
}

export class ClusterAgent {
  readonly #c: AgentConfig;
  #catalog: ReadModel | undefined;
  #controller: AgentController | undefined;
  #remoteRoutes: RemoteRoutes | undefined;
  #directory: HostDirectory | undefined;
  #fence: Fence | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #busy = new Set<string>();
  readonly #downSince = new Map<string, number>();
  /** Parsed entries by the catalog's key-value objects (replaced on every change). */
  readonly #parsed = new WeakMap<KeyValue, CatalogEntry | null>();
  #stopped = false;
  #fenced: HostFenceHandle | undefined;
  /** Every host's services on this host's proxy (service-routes.ts). */
  readonly #services: ClusterServiceRoutes;

  constructor(config: AgentConfig) {
    this.#c = config;
    this.#services = new ClusterServiceRoutes({ ...config, self: config.host, entry: (n) => this.#entry(n)?.entry, isUp: (h) => this.#isUp(h), upHosts: () => (this.#directory?.list() ?? []).filter((h) => h.load).map((h) => h.record.name).join(','),
      nameOf: (id) => this.#entries().find((e) => e.entry.owner === config.host && e.entry.id === id)?.entry.name });
  }

  /** For startHostInstances: the proxy's Waker, the API's controller and where service members go, bound to the agent once it starts. */
  hooks(): { waker: (local: Waker) => Waker; api: (c: ApiController) => ApiController; members: ReturnType<typeof clusterMemberPlacement> } {
    return {
      members: clusterMemberPlacement({ self: this.#c.host, token: this.#c.credential, directory: () => this.#directory, owned: () => this.#owned(), entry: (name) => this.#entry(name)?.entry, shared: this.#services }),
      waker: (local) => ({
        ensureAwake: (id, signal) => {
          if (id.startsWith('@')) return Promise.resolve(this.#requireRemote().awake(id));
          // A fenced instance may be running on another host already: this host does not wake it.
          if (this.#fenced?.refuses(id)) return Promise.reject(this.#fenced.refusal(id));
          return local.ensureAwake(id, signal);
        },
        requestStarted: (id) => void (id.startsWith('@') || local.requestStarted(id)),
        requestFinished: (id) => void (id.startsWith('@') || local.requestFinished(id)),
        connectionOpened: (id) => void (id.startsWith('@') || local.connectionOpened?.(id)),
        connectionClosed: (id) => void (id.startsWith('@') || local.connectionClosed?.(id)),
        isAwake: (id) => id.startsWith('@') || local.isAwake?.(id) === true,
      }),
      api: (c) =>
        new Proxy(c, {
          get: (target, prop) => {
            if (prop === 'create') return (spec: InstanceConfig) => this.create(target, spec);
            if (prop === 'rm') return (ref: string, opts?: { force?: boolean }) => this.remove(target, ref, opts);
            if (prop === 'fork') return (source: string, cfg: ForkConfig) => this.fork(target, source, cfg);
            const v = Reflect.get(target, prop, target) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }),
    };
  }

  /**
   * Follows the catalog and settles this host's instances with it: what the
   * catalog gives to another host is stopped and removed here before this
   * returns. Call after the controller re-adopted its VMs, before serving.
   */
  async start(controller: AgentController, routes: RouteTable | undefined, lease: { readonly id: string; readonly lastRenewedAt: number }, peers: () => Promise<boolean>): Promise<void> {
    this.#controller = controller;
    // The host-side fence (fence.ts) over this host's instances (fence-instances.ts).
    this.#fenced = startHostFence({ self: this.#c.host, controller, etcd: this.#c.etcd, ttlMs: this.#c.leaseTtlMs, lease, peers, log: this.#c.log,
      cataloged: (name) => this.#entry(name)?.entry, catalogKey: (name) => `${catalogPrefix(this.#c.prefix)}${name}` });
    this.#remoteRoutes = new RemoteRoutes({
      self: this.#c.host,
      credential: this.#c.credential,
      routes,
      directory: () => this.#directory,
      entry: (name) => this.#entry(name)?.entry,
      names: () => this.#entries().map((e) => e.entry.name),
      log: this.#c.log,
    });
    const remote = this.#remoteRoutes;
    this.#fence = { etcd: this.#c.etcd, prefix: this.#c.prefix, host: this.#c.host, lease: () => lease.id };
    const prefixLength = catalogPrefix(this.#c.prefix).length;
    for (;;) {
      this.#catalog = new ReadModel(this.#c.etcd, catalogPrefix(this.#c.prefix), {
        onGap: (err) => this.#c.log(`cluster: catalog re-listed after: ${describeError(err)}`),
        // Routes follow the catalog as it changes, not at the next tick: route propagation is one watch event.
        onChange: (change) => {
          const name = (change.type === 'put' ? change.kv.key : change.key).slice(prefixLength);
          remote.sync([name]);
          this.#services.memberChanged(name);
        },
      });
      try {
        await this.#catalog.ready;
        break;
      } catch (err) {
        // etcd went away between the join and the first list: wait for it (this host serves meanwhile).
        if (this.#stopped || !(err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE')) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    this.#services.start();
    for (const rec of controller.list()) {
      const found = this.#entry(rec.name);
      if (!found) {
        // An instance from before this host joined (or whose entry a failed create left out): publish it.
        await fencedPut(this.#fence, placedEntry(rec, this.#c.host), 0).catch((err: unknown) => this.#c.log(`cluster: publishing instance "${rec.name}": ${describeError(err)}`));
      } else if (found.entry.owner !== this.#c.host) {
        await this.#dropStale(rec, found.entry.owner);
      }
    }
  }

  /** Once registered: follows hosts for failover and routes. */
  follow(directory: HostDirectory): void {
    this.#directory = directory;
    this.#tick();
  }

  #tick(): void {
    if (this.#stopped) return;
    try {
      void this.#fenced?.check().catch((err: unknown) => this.#c.log(`cluster: fence: ${describeError(err)}`));
      this.#moveFromDeadHosts();
      this.#remoteRoutes?.hostsChanged();
      this.#services.hostsChanged();
      this.#dropMovedAway();
    } catch (err) {
      this.#c.log(`cluster: ${describeError(err)}`);
    }
    this.#timer = setTimeout(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  #parse(kv: KeyValue): CatalogEntry | undefined {
    let entry = this.#parsed.get(kv);
    if (entry === undefined) this.#parsed.set(kv, (entry = parseEntry(kv) ?? null));
    return entry ?? undefined;
  }

  #entry(name: string): { entry: CatalogEntry; modRevision: number } | undefined {
    const kv = this.#catalog?.get(`${catalogPrefix(this.#c.prefix)}${name}`);
    const entry = kv && this.#parse(kv);
    return entry && kv ? { entry, modRevision: kv.modRevision } : undefined;
  }

  #entries(): Array<{ entry: CatalogEntry; modRevision: number }> {
    return (this.#catalog?.values() ?? []).flatMap((kv) => {
      const entry = this.#parse(kv);
      return entry ? [{ entry, modRevision: kv.modRevision }] : [];
    });
  }

  #isUp(host: string): boolean {
    return this.#directory?.get(host)?.load !== undefined;
  }

  /** Waits until the catalog holds revision `rev` (read your own writes before acting on them). */
  async #caughtUp(rev: number): Promise<void> {
    for (let i = 0; i < 500 && (this.#catalog?.revision ?? 0) < rev; i++) await new Promise((r) => setTimeout(r, 10));
  }

  /** A create through the API: take the name in the cluster, create here, publish what was made. */
  async create(target: ApiController, spec: InstanceConfig): Promise<InstanceRecord> {
    const name = spec.name ?? defaultName(spec.image);
    const config = { ...spec, name };
    // An instance with a volume lives where its volume is (and scale to zero is stateful with one).
    const stateful = (spec.scaleToZero?.stateful ?? false) || (spec.volumes?.length ?? 0) > 0;
    return (await this.#claimed(name, config, stateful, async () => ({ record: await target.create(config) }))).record;
  }

  /**
   * A fork through the API: its name is taken in the cluster first, like a create's. A fork is
   * stateful and lives here, where its memory and volumes are (never moved on failover).
   */
  async fork(target: ApiController, source: string, cfg: ForkConfig): Promise<ForkResult> {
    const src = target.get(source);
    return this.#claimed(cfg.name, { image: src.spec.image.ref, name: cfg.name, forkOf: src.name }, true, () => target.fork(source, cfg));
  }

  /** Takes `name` in the catalog (fenced: 409 NAME_TAKEN if any host has it), makes the instance here, publishes it; a failure gives the name back. */
  async #claimed<T extends { record: InstanceRecord }>(name: string, config: CatalogEntry['config'], stateful: boolean, make: () => Promise<T>): Promise<T> {
    const fence = this.#requireFence();
    const reserved: CatalogEntry = { version: 1, name, owner: this.#c.host, id: null, state: 'creating', config, stateful, http: null, updatedAt: new Date().toISOString() };
    const rev = await fencedPut(fence, reserved, 0);
    await this.#caughtUp(rev);
    let made: T;
    try {
      made = await make();
    } catch (err) {
      await fencedDelete(fence, name, rev).catch(() => false);
      throw err;
    }
    await this.#publish(made.record, rev);
    return made;
  }

  async #publish(rec: InstanceRecord, rev: number, extra: Partial<CatalogEntry> = {}): Promise<void> {
    try {
      await this.#caughtUp(await fencedPut(this.#requireFence(), placedEntry(rec, this.#c.host, extra), rev));
    } catch (err) {
      // The instance exists here; its entry says `creating` until the next start of this host publishes it.
      this.#c.log(`cluster: publishing instance "${rec.name}": ${describeError(err)}`);
    }
  }

  /** A removal through the API: the entry goes first (fenced), then the instance. */
  async remove(target: ApiController, ref: string, opts?: { force?: boolean }): Promise<void> {
    const rec = target.get(ref);
    const found = this.#entry(rec.name);
    if (found && found.entry.owner === this.#c.host) {
      const fence = this.#requireFence();
      const gone = await fencedDelete(fence, rec.name, found.modRevision).catch((err: unknown) => {
        throw new CatalogError('CLUSTER_UNAVAILABLE', `removing instance "${rec.name}": the cluster's state (etcd) is unreachable: try again when it returns (${describeError(err)})`, { cause: err });
      });
      if (!gone) throw new CatalogError('NOT_OWNER', `instance "${rec.name}" changed in the cluster meanwhile: try again`);
    }
    await target.rm(ref, opts);
  }

  #requireFence(): Fence {
    if (!this.#fence) throw new CatalogError('CLUSTER_UNAVAILABLE', 'this host has not joined its cluster yet: try again in a moment');
    return this.#fence;
  }

  #requireRemote(): RemoteRoutes {
    if (!this.#remoteRoutes) throw new FlickError('HOST_DOWN', 'this host has not joined its cluster yet: other hosts\' instances are routed once it has');
    return this.#remoteRoutes;
  }

  #moveFromDeadHosts(): void {
    const now = Date.now();
    const up = new Set((this.#directory?.list() ?? []).filter((h) => h.load).map((h) => h.record.name));
    for (const { entry, modRevision } of this.#entries()) {
      if (entry.owner === this.#c.host || up.has(entry.owner) || entry.stateful || this.#busy.has(entry.name)) {
        this.#downSince.delete(entry.name);
        continue;
      }
      // A move that failed (e.g. no up host has the image) is tried again once its entry's time has come.
      if (entry.error !== undefined && Date.parse(entry.updatedAt) > now) continue;
      const since = this.#downSince.get(entry.name) ?? now;
      this.#downSince.set(entry.name, since);
      // A host that alone lost etcd kills its copy before its lease lapses (fence.ts); this is its margin.
      if (now - since < FENCE_GRACE_MS) continue;
      if (this.#bestHost(entry) !== this.#c.host && now - since < STEP_IN_AFTER_MS) continue;
      this.#busy.add(entry.name);
      void this.#takeOver(entry, modRevision)
        .catch((err: unknown) => this.#c.log(`cluster: moving instance "${entry.name}": ${describeError(err)}`))
        .finally(() => this.#busy.delete(entry.name));
    }
  }

  /** Where a dead host's instance goes: the best up host for it but its old one (every host computes the same). */
  #bestHost(entry: CatalogEntry): string | undefined {
    const image = typeof entry.config.image === 'string' ? entry.config.image : '';
    const memoryMb = typeof entry.config.memoryMb === 'number' ? entry.config.memoryMb : DEFAULT_MEMORY_MB;
    return pickHost(candidatesOf(this.#directory?.list() ?? [], this.#owned(), image, new Map(), entry.owner), { image, memoryMb });
  }

  #owned(): Array<{ owner: string; image: unknown }> {
    return this.#entries().map(({ entry }) => ({ owner: entry.owner, image: entry.config.image }));
  }

  /** The best host for a create (placement.ts); `pending`: creates sent to hosts that the catalog may not list yet. */
  place(req: PlacementRequest, pending: PendingCreates): string {
    return pickHost(candidatesOf(this.#directory?.list() ?? [], this.#owned(), req.image, pending), req, this.#c.host) ?? this.#c.host;
  }

  async #takeOver(entry: CatalogEntry, modRevision: number): Promise<void> {
    const fence = this.#requireFence();
    const started = Date.now();
    let rev: number;
    try {
      rev = await fencedPut(fence, { ...entry, owner: this.#c.host, id: null, state: 'creating', movedFrom: entry.owner, updatedAt: new Date().toISOString() }, modRevision);
    } catch (err) {
      if (err instanceof CatalogError && err.code === 'NAME_TAKEN') return; // another host moved it first
      throw err;
    }
    await this.#caughtUp(rev);
    this.#c.log(`cluster: host ${entry.owner} is down: creating its instance "${entry.name}" here`);
    const controller = this.#controller!;
    const stale = controller.list().find((r) => r.name === entry.name);
    if (stale) await controller.rm(stale.id, { force: true });
    try {
      const rec = await controller.create(entry.config as unknown as InstanceConfig);
      await this.#publish(rec, rev, { movedFrom: entry.owner });
      this.#c.log(`cluster: instance "${entry.name}" moved from ${entry.owner} in ${Date.now() - started} ms`);
    } catch (err) {
      // Hand it back to its host (which keeps its copy when it returns) and let every host wait before trying again.
      this.#c.log(`cluster: moving instance "${entry.name}" from ${entry.owner} failed: ${describeError(err)}; it stays ${entry.owner}'s, next try in ${RETRY_MOVE_MS / 1000} s`);
      const made = controller.list().find((r) => r.name === entry.name);
      if (made) await controller.rm(made.id, { force: true }).catch(() => {});
      await fencedPut(fence, { ...entry, error: `moving it to ${this.#c.host} failed: ${describeError(err)}`, updatedAt: new Date(Date.now() + RETRY_MOVE_MS).toISOString() }, rev).catch(() => 0);
    }
  }

  /** A local instance the catalog now gives to another host (moved while this host was cut off): stop it. */
  #dropMovedAway(): void {
    for (const rec of this.#controller?.list() ?? []) {
      const found = this.#entry(rec.name);
      if (!found || found.entry.owner === this.#c.host || this.#busy.has(rec.name)) continue;
      this.#busy.add(rec.name);
      void this.#dropStale(rec, found.entry.owner).finally(() => this.#busy.delete(rec.name));
    }
  }

  async #dropStale(rec: InstanceRecord, owner: string): Promise<void> {
    this.#c.log(`cluster: instance "${rec.name}" now belongs to host ${owner}: stopping and removing this host's copy (pid ${rec.status.pid ?? 'none'})`);
    await this.#controller!.rm(rec.id, { force: true }).catch((err: unknown) => this.#c.log(`cluster: removing the stale copy of "${rec.name}": ${describeError(err)}`));
  }

  /** The host the catalog gives instance `ref` (a name, or an id on its host) to, if any. */
  ownerOf(ref: string): string | undefined {
    return this.#entry(ref)?.entry.owner ?? this.#entries().find((e) => e.entry.id === ref)?.entry.owner;
  }

  /** The catalog as GET /v1/cluster/instances shows it. */
  instances(): ClusterInstanceView[] {
    return this.#entries()
      .map(({ entry }) => clusterInstanceView(entry, this.#isUp(entry.owner)))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** This host's VM processes a failover would start elsewhere (stateless, the catalog's own): the fence guard's (fence-guard.ts). */
  movable(): Array<{ name: string; pid: number }> {
    return (this.#controller?.list() ?? []).flatMap((rec) => {
      const e = this.#entry(rec.name)?.entry;
      return e && e.owner === this.#c.host && !e.stateful && rec.status.pid !== null ? [{ name: rec.name, pid: rec.status.pid }] : [];
    });
  }

  /** Safe twice. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#catalog?.stop();
    this.#services.stop();
  }
}
