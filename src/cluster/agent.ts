// A host's part in the cluster, on top of the controller's public surface (it
// never reaches into the controller or the proxy; both stay free of etcd). The
// controller runs on EtcdStateStore: instance records live in etcd, and a
// record's owner is the one source of ownership. The catalog this agent reads
// (catalog.ts) is a view of every host's records (the store's `cluster`), never
// written on its own:
//   - names are cluster-wide (a create's txn takes its name key), and a create
//     answers 503 STATE_UNAVAILABLE while etcd is unreachable;
//   - the proxy routes every other host's HTTP and TCP instances too: to that
//     host's hop listener (src/proxy/hop.ts), one hop carrying the cluster's
//     token, with the Host header as the client sent it, so the owner parks and
//     wakes a sleeping instance as it does its own;
//   - when a host's lease lapses, its stateless instances are claimed by the best
//     host left (placement.ts: free RAM and CPU, the image or its template there,
//     replicas spread; the others step in after 3 s if it does not), each claim
//     fenced on the record's revision, its status reset in the same write, then
//     started (Controller.takeOver); stateful ones show `unavailable`;
//   - a host that alone lost etcd (its peers still read it) stops its stateless
//     instances before its lease lapses (fence.ts), and starts them again if
//     they are still its own once it is back;
//   - a record claimed away leaves this host's reads: what this host still holds
//     for it (VM, network slot, folder) is released (Controller.release), at
//     start for what moved while it was down, and whenever it sees that happen.
import { FlickError, describeError } from '../errors.js';
import { DEFAULT_MEMORY_MB } from '../controller/spec.js';
import type { Controller } from '../controller/controller.js';
import type { RouteTable } from '../proxy/routes.js';
import type { Waker } from '../proxy/waker.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { StateError, type StateChange } from '../controller/state/state-store.js';
import { clusterInstanceView, placedEntry, type CatalogEntry, type ClusterInstanceView } from './catalog.js';
import type { EtcdClient } from './etcd-client.js';
import type { ClusterReads } from './etcd-state-store.js';
import { nameKey, recordKey, tryDecode } from './etcd-state-feed.js';
import type { HostDirectory } from './membership.js';
import { startHostFence, type HostFenceHandle } from './fence-instances.js';
import { FENCE_GRACE_MS } from './fence.js';
import { candidatesOf, pickHost, type PendingCreates, type PlacementRequest } from './placement.js';
import { RemoteRoutes } from './remote-routes.js';
import { clusterMemberPlacement } from './service-members.js';
import { ClusterServiceRoutes } from './service-routes.js';

/** How long the other hosts leave the move of a dead host's instance to the chosen host before they try. */
export const STEP_IN_AFTER_MS = 3000;
/** After a failed move, this host tries that instance again after this long. */
export const RETRY_MOVE_MS = 30_000;
const TICK_MS = 200;

export type AgentController = Pick<Controller, 'list' | 'on' | 'stop' | 'start' | 'takeOver' | 'release'>;

/** What the agent reads of the state store (EtcdStateStore): this host's records and changes, every host's, and what left while it was down. */
export interface AgentState {
  subscribe(listener: (change: StateChange) => void): () => void;
  list(): InstanceRecord[];
  readonly cluster: ClusterReads;
  readonly leftWhileAway: readonly InstanceRecord[];
  /** Ids this host removed: a delete whose id this takes out was its own remove. */
  readonly removedHere: Set<string>;
}

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
  #state: AgentState | undefined;
  #controller: AgentController | undefined;
  #remoteRoutes: RemoteRoutes | undefined;
  #directory: HostDirectory | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #busy = new Set<string>();
  readonly #downSince = new Map<string, number>();
  /** When this host may try again to move an instance whose move failed here, by name. */
  readonly #retryAt = new Map<string, number>();
  /** Catalog entries by the records they are derived from (records are replaced on every change). */
  readonly #derived = new WeakMap<InstanceRecord, CatalogEntry>();
  /** This host's own records as last seen: what a record claimed away held here. */
  readonly #mine = new Map<string, InstanceRecord>();
  /** Every record's name and owner by id (a delete names only the id). */
  readonly #names = new Map<string, { name: string; owner: string }>();
  #unsubscribe: Array<() => void> = [];
  #stopped = false;
  #fenced: HostFenceHandle | undefined;
  /** Every host's services on this host's proxy (service-routes.ts). */
  readonly #services: ClusterServiceRoutes;

  constructor(config: AgentConfig) {
    this.#c = config;
    this.#services = new ClusterServiceRoutes({ ...config, self: config.host, entry: (n) => this.#entry(n), isUp: (h) => this.#isUp(h), upHosts: () => (this.#directory?.list() ?? []).filter((h) => h.load).map((h) => h.record.name).join(','),
      nameOf: (id) => this.#state?.cluster.get(id)?.name });
  }

  /** For startHostInstances: the proxy's Waker and where service members go, bound to the agent once it starts. */
  hooks(): { waker: (local: Waker) => Waker; members: ReturnType<typeof clusterMemberPlacement> } {
    return {
      members: clusterMemberPlacement({ self: this.#c.host, token: this.#c.credential, directory: () => this.#directory, owned: () => this.#owned(), entry: (name) => this.#entry(name), shared: this.#services }),
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
    };
  }

  /**
   * Follows every host's records and settles this host's with them: what
   * another host claimed while this one was down is released here before this
   * returns. Call after the controller re-adopted its VMs, before serving.
   */
  async start(state: AgentState, controller: AgentController, routes: RouteTable | undefined, lease: { readonly id: string; readonly lastRenewedAt: number }, peers: () => Promise<boolean>): Promise<void> {
    this.#state = state;
    this.#controller = controller;
    // The host-side fence (fence.ts) over this host's instances (fence-instances.ts).
    this.#fenced = startHostFence({ self: this.#c.host, controller, etcd: this.#c.etcd, ttlMs: this.#c.leaseTtlMs, lease, peers, log: this.#c.log,
      cataloged: (name) => this.#entry(name), ownerNow: (name) => this.#ownerNow(name) });
    const remote = (this.#remoteRoutes = new RemoteRoutes({
      self: this.#c.host,
      credential: this.#c.credential,
      routes,
      directory: () => this.#directory,
      entry: (name) => this.#entry(name),
      names: () => [...this.#names.values()].map((n) => n.name),
      log: this.#c.log,
    }));
    for (const rec of state.cluster.values()) this.#names.set(rec.id, { name: rec.name, owner: rec.owner });
    for (const rec of state.list()) this.#mine.set(rec.id, rec);
    this.#unsubscribe = [
      // Routes follow the records as they change, not at the next tick: route propagation is one watch event.
      state.cluster.subscribe((change) => {
        if (change.type === 'reset') return remote.sync();
        const id = change.type === 'put' ? change.record.id : change.id;
        const before = this.#names.get(id);
        const now = change.type === 'put' ? { name: change.record.name, owner: change.record.owner } : undefined;
        if (now) this.#names.set(id, now);
        else this.#names.delete(id);
        const name = now?.name ?? before?.name;
        if (name === undefined) return;
        remote.sync([name]);
        // Services follow a member that came, went or moved (not its every status write).
        if (before?.owner !== now?.owner) this.#services.memberChanged(name);
      }),
      state.subscribe((change) => this.#ownChange(change)),
    ];
    remote.sync();
    this.#services.start();
    // Claimed by another host or removed while this one was down (one etcd lost was put back: state-import.ts).
    for (const last of state.leftWhileAway) if (state.cluster.get(last.id)?.owner !== this.#c.host) await this.#release(last);
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
    } catch (err) {
      this.#c.log(`cluster: ${describeError(err)}`);
    }
    this.#timer = setTimeout(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  /**
   * A change of this host's own records. One that left them by anything but this host's own remove
   * (claimed by another host, or removed there while this host was cut off) is released here.
   */
  #ownChange(change: StateChange): void {
    if (change.type === 'put') this.#mine.set(change.record.id, change.record);
    if (change.type !== 'delete') return;
    const last = this.#mine.get(change.id);
    this.#mine.delete(change.id);
    const own = this.#state?.removedHere.delete(change.id) === true;
    if (last && !own) void this.#release(last);
  }

  async #release(last: InstanceRecord): Promise<void> {
    const owner = this.#state?.cluster.get(last.id)?.owner;
    const why = owner !== undefined ? `now belongs to host ${owner}` : 'was removed from the cluster while this host could not see it';
    this.#c.log(`cluster: instance "${last.name}" ${why}: releasing this host's copy (pid ${last.status.pid ?? 'none'}, its network and folder)`);
    await this.#controller!.release(last).catch((err: unknown) => this.#c.log(`cluster: releasing the stale copy of "${last.name}": ${describeError(err)}`));
  }

  /** The owner of instance `name` read from etcd now (the fence's lift: this host's view may still be catching up). */
  async #ownerNow(name: string): Promise<string | undefined> {
    const id = await this.#c.etcd.get(nameKey(this.#c.prefix, name));
    const kv = id && (await this.#c.etcd.get(recordKey(this.#c.prefix, id.value)));
    return kv ? tryDecode(kv)?.owner : undefined;
  }

  /** The catalog's entry of a record: derived from it, once per version of the record. */
  #derive(rec: InstanceRecord): CatalogEntry {
    let entry = this.#derived.get(rec);
    if (entry === undefined) {
      const extra = { updatedAt: rec.updatedAt, ...(rec.status.movedFrom ? { movedFrom: rec.status.movedFrom } : {}), ...(rec.status.error ? { error: rec.status.error } : {}) };
      this.#derived.set(rec, (entry = placedEntry(rec, rec.owner, extra)));
    }
    return entry;
  }

  #entry(name: string): CatalogEntry | undefined {
    const rec = this.#state?.cluster.getByName(name);
    return rec && this.#derive(rec);
  }

  #records(): Iterable<InstanceRecord> {
    return this.#state?.cluster.values() ?? [];
  }

  #isUp(host: string): boolean {
    return this.#directory?.get(host)?.load !== undefined;
  }

  #requireRemote(): RemoteRoutes {
    if (!this.#remoteRoutes) throw new FlickError('HOST_DOWN', 'this host has not joined its cluster yet: other hosts\' instances are routed once it has');
    return this.#remoteRoutes;
  }

  #moveFromDeadHosts(): void {
    const now = Date.now();
    const up = new Set((this.#directory?.list() ?? []).filter((h) => h.load).map((h) => h.record.name));
    for (const rec of this.#records()) {
      const entry = this.#derive(rec);
      if (rec.owner === this.#c.host || up.has(rec.owner) || entry.stateful || this.#busy.has(rec.name)) {
        this.#downSince.delete(rec.name);
        continue;
      }
      // A move that failed here (e.g. no up host has the image) is tried again once its time has come.
      if ((this.#retryAt.get(rec.name) ?? 0) > now) continue;
      const since = this.#downSince.get(rec.name) ?? now;
      this.#downSince.set(rec.name, since);
      // A host that alone lost etcd kills its copy before its lease lapses (fence.ts); this is its margin.
      if (now - since < FENCE_GRACE_MS) continue;
      if (this.#bestHost(entry) !== this.#c.host && now - since < STEP_IN_AFTER_MS) continue;
      this.#busy.add(rec.name);
      void this.#takeOver(rec)
        .catch((err: unknown) => this.#c.log(`cluster: moving instance "${rec.name}": ${describeError(err)}`))
        .finally(() => this.#busy.delete(rec.name));
    }
  }

  /** Where a dead host's instance goes: the best up host for it but its old one (every host computes the same). */
  #bestHost(entry: CatalogEntry): string | undefined {
    const image = typeof entry.config.image === 'string' ? entry.config.image : '';
    const memoryMb = typeof entry.config.memoryMb === 'number' ? entry.config.memoryMb : DEFAULT_MEMORY_MB;
    return pickHost(candidatesOf(this.#directory?.list() ?? [], this.#owned(), image, new Map(), entry.owner), { image, memoryMb });
  }

  #owned(): Array<{ owner: string; image: unknown }> {
    return [...this.#records()].map((rec) => ({ owner: rec.owner, image: this.#derive(rec).config.image }));
  }

  /** The best host for a create (placement.ts); `pending`: creates sent to hosts that the records may not show yet. */
  place(req: PlacementRequest, pending: PendingCreates): string {
    return pickHost(candidatesOf(this.#directory?.list() ?? [], this.#owned(), req.image, pending), req, this.#c.host) ?? this.#c.host;
  }

  /** Claims a dead host's record for this host (fenced on the revision read) and starts it here. */
  async #takeOver(rec: InstanceRecord): Promise<void> {
    const started = Date.now();
    this.#c.log(`cluster: host ${rec.owner} is down: taking its instance "${rec.name}" over here`);
    let moved: InstanceRecord;
    try {
      moved = await this.#controller!.takeOver(rec);
    } catch (err) {
      // Only the claim's own errors: another host claimed it first, or it was removed meanwhile.
      if (err instanceof StateError && (err.code === 'STALE_REVISION' || err.code === 'RECORD_NOT_FOUND')) {
        this.#c.log(`cluster: instance "${rec.name}" of ${rec.owner}: ${err.code === 'STALE_REVISION' ? 'another host claimed it first' : 'removed meanwhile'}`);
        return;
      }
      if (err instanceof FlickError && err.code === 'START_FAILED') {
        this.#c.log(`cluster: instance "${rec.name}" moved from ${rec.owner} to this host, but ${describeError(err)}`);
        return;
      }
      this.#retryAt.set(rec.name, Date.now() + RETRY_MOVE_MS);
      this.#c.log(`cluster: moving instance "${rec.name}" from ${rec.owner} failed: ${describeError(err)}; it stays ${rec.owner}'s, next try here in ${RETRY_MOVE_MS / 1000} s`);
      return;
    }
    this.#c.log(`cluster: instance "${rec.name}" moved from ${rec.owner} in ${Date.now() - started} ms (${moved.status.state === 'starting' ? 'starting here' : `kept ${moved.status.state}`})`);
  }

  /** The host instance `ref` (a name, or an id) belongs to, if any. */
  ownerOf(ref: string): string | undefined {
    return (this.#state?.cluster.getByName(ref) ?? this.#state?.cluster.get(ref))?.owner;
  }

  /** Every host's instances as GET /v1/cluster/instances shows them. */
  instances(): ClusterInstanceView[] {
    return [...this.#records()]
      .map((rec) => clusterInstanceView(this.#derive(rec), this.#isUp(rec.owner)))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** This host's VM processes a failover would start elsewhere (stateless): the fence guard's (fence-guard.ts). */
  movable(): Array<{ name: string; pid: number }> {
    return (this.#controller?.list() ?? []).flatMap((rec) => (!this.#derive(rec).stateful && rec.status.pid !== null ? [{ name: rec.name, pid: rec.status.pid }] : []));
  }

  /** Safe twice. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    this.#services.stop();
  }
}
