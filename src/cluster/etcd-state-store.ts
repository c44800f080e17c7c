// The state seam (controller/state/state-store.ts) on etcd, for a cluster host. Records live in etcd
// (key layout: etcd-state-feed.ts); every shared write is one txn fenced on the record's mod_revision
// and on the host's liveness key being held by its lease (etcd-state-txn.ts): a host whose lease
// lapsed creates, changes, hands on or removes nothing.
//
// Scope: a host's reads (get, getByName, list, usesTemplate, subscribe) show only the records it owns,
// so its controller never acts on another host's instance. `claim` is how a record moves: it leaves
// the old owner's reads (a delete to its subscribers) and arrives in the new owner's. Every host's
// records, at etcd revisions, are in `cluster`: what a move is decided on (a claim of another host's
// record names the revision read there).
//
// Reads come from memory: a mirror of every record, fed list-then-watch (followFeed: list at R, watch
// from R + 1, list again on compaction, retried while etcd is away), from which this host's read
// model is derived. Its revisions are this store's own counter, moved only when a record's content
// changes: a status write returns at once with a new revision, and the echo of a write this host
// published never fails its next write with STALE_REVISION.
//
// Status writes are synchronous: durable in a local journal (status-journal.ts) before they return,
// then published behind in the order written (the newest status of each record, one fenced txn each),
// retried while etcd is away, and by the next flickd if this one dies first; a shared write carries a
// record's pending status with it. The journal also caches this host's records, so a flickd started
// while etcd is away serves them until etcd answers. Shared writes without etcd fail with
// STATE_UNAVAILABLE; reads and status writes go on. Its etcd writes run one at a time (no publish races them).
import type { InstanceRecord, InstanceSpec, InstanceStatus, NewInstanceRecord } from '../controller/state/instance-record.js';
import { ModelReads, ReadModel, expectRevision, followFeed } from '../controller/state/read-model.js';
import { StateError, type StateChange, type StateReads, type StateStore } from '../controller/state/state-store.js';
import { EtcdError, type Compare, type EtcdClient, type KeyValue, type TxnOp, type TxnResult } from './etcd-client.js';
import { EtcdStateFeed, encodeRecord, nameKey, recordKey, sameContent, tryDecode } from './etcd-state-feed.js';
import { fencedTxn, stale, unavailable } from './etcd-state-txn.js';
import { DEFAULT_CLUSTER_PREFIX, aliveKey } from './membership.js';
import { StatusJournal } from './status-journal.js';

export interface EtcdStateStoreConfig {
  etcd: EtcdClient;
  /** This host's name: the owner it writes as. */
  hostId: string;
  /** The cluster's key prefix; default /flick/. */
  prefix?: string;
  /** The status journal's file (in the host's data dir); ':memory:' in tests. */
  journalFile: string;
  /** The host's lease now (HostLease.id): every write requires its liveness key to be held by it; undefined: none yet (writes wait). Absent: no lease fence. */
  lease?: () => string | undefined;
  /** A publish that failed (retried), a record that cannot be read (skipped), a watch resumed: for logs. */
  onTrouble?: (err: unknown) => void;
  /** First back-off of a failed publish or listing, ms; default 200, doubling to 2000. */
  retryMs?: number;
}

export type ClusterReads = StateReads & Pick<ReadModel, 'subscribe' | 'values'>; // every host's records: reads, changes, an unsorted walk

/** Status writes published in one txn at most (etcd's --max-txn-ops is 128 by default; records are KiBs). */
const PUBLISH_BATCH = 32;

interface Pending {
  seq: number;
  record: InstanceRecord;
}

/** This host's records are the reads (ModelReads' model); the mirror of every host's is `cluster`. */
export class EtcdStateStore extends ModelReads implements StateStore {
  readonly hostId: string;
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #config: EtcdStateStoreConfig;
  readonly #journal: StatusJournal;
  /** Every record in etcd, at etcd revisions. */
  readonly #cluster = new ReadModel();
  readonly #pending = new Map<string, Pending>();
  /** The revision at which a record last changed by anything but this host's status writes (a shared write's lenient fence). */
  readonly #lastShared = new Map<string, number>();
  readonly feed: EtcdStateFeed;
  #revision = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #publishTimer: NodeJS.Timeout | undefined;
  #publishWait: number;
  #unfollow: () => void = () => {};
  #offline = false;
  #closed = false;
  #left: InstanceRecord[] = [];
  etcdLost = true; // after the first listing: etcd's revision is below the one this host last saw (emptied, restored): what left was lost, not removed
  readonly removedHere = new Set<string>(); // ids this host removed: a subscriber takes one out to tell its own delete

  /** Opens the store: replays the journal, lists the records in etcd and follows them. Rejects if etcd cannot be listed. */
  static async open(config: EtcdStateStoreConfig): Promise<EtcdStateStore> {
    const store = new EtcdStateStore(config);
    try {
      await store.#start();
      return store;
    } catch (err) {
      await store.close();
      throw unavailable(err, 'cannot read the instance records');
    }
  }

  private constructor(config: EtcdStateStoreConfig) {
    super(new ReadModel()); // this host's records, at this store's revisions
    this.hostId = config.hostId;
    this.#etcd = config.etcd;
    this.#prefix = config.prefix ?? DEFAULT_CLUSTER_PREFIX;
    this.#config = config;
    this.#publishWait = config.retryMs ?? 200;
    this.#journal = new StatusJournal(config.journalFile);
    this.feed = new EtcdStateFeed(config.etcd, this.#prefix, { ...(config.onTrouble ? { onTrouble: config.onTrouble } : {}), ...(config.retryMs ? { retryMs: config.retryMs } : {}) });
  }

  async #start(): Promise<void> {
    for (const p of this.#journal.list()) this.#pending.set(p.id, { seq: p.seq, record: p.record });
    this.#cluster.subscribe((change) => this.#onShared(change));
    try {
      await this.#follow();
    } catch (err) {
      // etcd away at start: a host that listed it before serves its records as it last knew them.
      const cached = this.#journal.cached();
      if (!(err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE') || !cached.listed) throw err;
      this.#offline = true;
      this.#cluster.reset({ revision: 0, records: cached.records });
      this.#config.onTrouble?.(err);
      void this.#followWhenBack(this.#config.retryMs ?? 200);
    }
  }

  /** The first listing and the watch after it; then what the journal holds for records no longer this host's goes. */
  async #follow(): Promise<void> {
    const before = this.#journal.cached();
    this.#unfollow = await followFeed(this.feed, this.#cluster, (err) => this.#config.onTrouble?.(err), this.#config.retryMs ?? 200);
    this.#left = before.records.filter((r) => this.model.get(r.id) === undefined);
    this.etcdLost = before.revision === undefined || this.#cluster.revision < before.revision;
    this.#offline = false;
    this.#journal.markListed(this.#cluster.revision, this.#left.map((r) => r.id)); // what left: records put back return by the watch
    for (const id of [...this.#pending.keys()]) if (this.#cluster.get(id)?.owner !== this.hostId) this.#drop(id);
    this.#schedulePublish(0);
  }

  async #followWhenBack(wait: number): Promise<void> {
    await new Promise((r) => setTimeout(r, wait).unref());
    if (this.#closed) return;
    await this.#follow().catch(() => this.#followWhenBack(Math.min(wait * 2, 2000)));
  }

  /** Started while etcd was away, and not listed it since: reads are this host's records as it last knew them. */
  get offline(): boolean {
    return this.#offline;
  }

  /** Every host's records, at their etcd revisions (this host's reads show only its own). */
  get cluster(): ClusterReads {
    return this.#cluster;
  }

  /** This host's records as it last knew them that the first listing gave to another host or no longer had (claimed away while it was down). */
  get leftWhileAway(): readonly InstanceRecord[] {
    return this.#left;
  }

  /** Status writes not yet in etcd. */
  get pendingStatus(): number {
    return this.#pending.size;
  }

  // ---- writes ----

  updateStatus(id: string, expected: number, patch: Partial<InstanceStatus>): InstanceRecord {
    if (this.#closed) throw new StateError('STATE_UNAVAILABLE', 'the state store is closed (flickd is stopping)');
    const current = expectRevision(this.model, id, expected);
    const next: InstanceRecord = { ...current, status: { ...current.status, ...patch }, revision: ++this.#revision, updatedAt: new Date().toISOString() };
    // On disk first, then memory, then etcd behind.
    const seq = this.#journal.put(next);
    this.#pending.set(id, { seq, record: next });
    this.model.apply({ type: 'put', record: next });
    this.#schedulePublish(0);
    return this.model.get(id)!;
  }

  create(record: NewInstanceRecord): Promise<InstanceRecord> {
    return this.#serial(async () => {
      const next: InstanceRecord = { ...record, owner: this.hostId, revision: 0, updatedAt: record.createdAt };
      const names = nameKey(this.#prefix, record.name);
      const key = recordKey(this.#prefix, record.id);
      const r = await this.#txn(
        [{ key: names, target: 'CREATE', result: 'EQUAL', value: 0 }, { key, target: 'CREATE', result: 'EQUAL', value: 0 }],
        [{ put: { key: names, value: record.id } }, { put: { key, value: encodeRecord(next) } }],
        names,
        record.name,
      );
      if (!r.succeeded) {
        const holder = r.ranges[0]?.[0] ? this.#cluster.get(r.ranges[0][0].value) : undefined;
        throw new StateError('NAME_TAKEN', `an instance named "${record.name}" already exists in the cluster${holder ? ` (on host ${holder.owner})` : ''}: pick another --name or remove it with 'flick rm ${record.name}'`, { kind: 'user' });
      }
      this.#cluster.apply({ type: 'put', record: { ...next, revision: r.revision } });
      return this.model.get(record.id)!;
    });
  }

  updateSpec(id: string, expected: number, patch: Partial<InstanceSpec>): Promise<InstanceRecord> {
    return this.#ownWrite(id, expected, async (current) => {
      const next = { ...current, spec: { ...current.spec, ...patch }, updatedAt: new Date().toISOString() };
      await this.#put(current, next);
      return this.model.get(id)!;
    });
  }

  claim(id: string, expected: number, owner: string, status?: InstanceStatus): Promise<InstanceRecord> {
    const move = async (current: InstanceRecord) => {
      const written = await this.#put(current, { ...current, owner, ...(status ? { status } : {}), updatedAt: new Date().toISOString() });
      return this.model.get(id) ?? written; // claimed away, it is no longer in this host's reads
    };
    if (this.model.get(id) !== undefined) return this.#ownWrite(id, expected, move);
    // Another host's record (or none): fenced on the etcd revision read in `cluster`.
    return this.#serial(async () => move(expectRevision(this.#cluster, id, expected)));
  }

  remove(id: string, expected: number): Promise<boolean> {
    if (this.model.get(id) === undefined) return Promise.resolve(false);
    return this.#ownWrite(id, expected, async (current) => {
      const key = recordKey(this.#prefix, id);
      const names = nameKey(this.#prefix, current.name);
      const at = this.#cluster.get(id)?.revision ?? 0;
      const r = await this.#txn(
        [{ key, target: 'MOD', result: 'EQUAL', value: at }],
        [{ delete: { key } }, { delete: { key: names } }],
        key,
        current.name,
      );
      if (!r.succeeded) {
        if (this.#settle(r) === undefined) return false;
        throw stale(current.name);
      }
      this.#drop(id);
      this.removedHere.add(id);
      this.#cluster.apply({ type: 'delete', id, revision: r.revision });
      return true;
    }).catch((err: unknown) => (err instanceof StateError && err.code === 'RECORD_NOT_FOUND' ? false : Promise.reject(err)));
  }

  /** Stops following etcd and publishing (what is unpublished stays in the journal for the next flickd). Safe twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearTimeout(this.#publishTimer);
      this.#unfollow();
      if (!this.#offline) this.#journal.markListed(this.#cluster.revision);
      this.#journal.close();
    }
    return Promise.resolve();
  }

  // ---- inside ----

  /**
   * A shared write of a record this host owns: `expected` must be its revision
   * now; by the time the write runs (after the writes queued before it), the
   * record may have moved on by this host's own status writes, which the write
   * carries along, but by nothing else.
   */
  #ownWrite<T>(id: string, expected: number, write: (current: InstanceRecord) => Promise<T>): Promise<T> {
    try {
      expectRevision(this.model, id, expected);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#serial(async () => {
      const current = this.model.get(id);
      if (current === undefined) throw new StateError('RECORD_NOT_FOUND', `instance ${id} is not in this host's state (removed or moved meanwhile)`);
      if ((this.#lastShared.get(id) ?? 0) > expected) expectRevision(this.model, id, expected);
      return write(current);
    });
  }

  /** Writes `next` over the record etcd holds at the mirror's revision (with any pending status); the record as written. */
  async #put(current: InstanceRecord, next: InstanceRecord): Promise<InstanceRecord> {
    const key = recordKey(this.#prefix, next.id);
    const at = this.#cluster.get(next.id)?.revision ?? 0;
    const pending = this.#pending.get(next.id);
    const r = await this.#txn([{ key, target: 'MOD', result: 'EQUAL', value: at }], [{ put: { key, value: encodeRecord(next) } }], key, next.name);
    if (!r.succeeded) {
      if (this.#settle(r) === undefined) throw new StateError('RECORD_NOT_FOUND', `instance "${current.name}" was removed meanwhile`);
      throw stale(current.name);
    }
    if (pending && this.#pending.get(next.id)?.seq === pending.seq) this.#drop(next.id);
    const written: InstanceRecord = { ...next, revision: r.revision };
    this.#cluster.apply({ type: 'put', record: written });
    return written;
  }

  #txn(compare: Compare[], success: TxnOp[], failureKey: string, name: string): Promise<TxnResult> {
    const lease = this.#config.lease ? (this.#config.lease() ?? null) : undefined;
    return fencedTxn({ etcd: this.#etcd, alive: aliveKey(this.#prefix, this.hostId), lease }, compare, success, failureKey, name);
  }

  /** After a failed fenced write: the record as etcd holds it, into the mirror (undefined: it is gone). */
  #settle(r: TxnResult): InstanceRecord | undefined {
    const kv: KeyValue | undefined = r.ranges[0]?.[0];
    const record = kv && tryDecode(kv);
    if (record) this.#cluster.apply({ type: 'put', record });
    return record;
  }

  /** The own read model follows the mirror: a record this host owns, with its pending status; any other leaves. */
  #onShared(change: StateChange): void {
    if (change.type === 'reset') return;
    if (change.type === 'delete' || change.record.owner !== this.hostId) {
      const id = change.type === 'delete' ? change.id : change.record.id;
      this.#drop(id);
      this.#lastShared.delete(id);
      this.#journal.cache(id, null);
      if (this.model.get(id) !== undefined) this.model.apply({ type: 'delete', id, revision: ++this.#revision });
      return;
    }
    const shared = change.record;
    this.#journal.cache(shared.id, shared);
    const pending = this.#pending.get(shared.id)?.record;
    const next = { ...shared, status: pending ? pending.status : shared.status, updatedAt: pending ? pending.updatedAt : shared.updatedAt };
    const current = this.model.get(shared.id);
    if (current !== undefined && sameContent(current, next)) return; // the echo of this host's own write
    const revision = ++this.#revision;
    this.#lastShared.set(shared.id, revision);
    this.model.apply({ type: 'put', record: { ...next, revision } });
  }

  #drop(id: string): void {
    if (!this.#pending.has(id)) return;
    this.#pending.delete(id);
    this.#journal.clear(id);
  }

  #schedulePublish(delay: number): void {
    if (this.#closed || this.#offline || this.#publishTimer !== undefined || this.#pending.size === 0) return;
    this.#publishTimer = setTimeout(() => {
      this.#publishTimer = undefined;
      const before = new Map([...this.#pending].map(([id, p]) => [id, p.seq]));
      void this.#serial(() => this.#publishAll()).then(
        () => {
          // What was written meanwhile goes at once; a round that moved nothing (its records keep moving on) backs off.
          const stuck = this.#pending.size > 0 && [...this.#pending].every(([id, p]) => before.get(id) === p.seq);
          this.#schedulePublish(stuck ? this.#publishWait : 0);
          this.#publishWait = stuck ? Math.min(this.#publishWait * 2, 2000) : (this.#config.retryMs ?? 200);
        },
        (err: unknown) => {
          this.#config.onTrouble?.(err);
          this.#schedulePublish(this.#publishWait);
          this.#publishWait = Math.min(this.#publishWait * 2, 2000);
        },
      );
    }, delay);
    this.#publishTimer.unref();
  }

  /**
   * Publishes every pending status, oldest write first, up to PUBLISH_BATCH
   * records in one txn (each on its own compare); a batch that finds one moved
   * on goes one record at a time. Throws (to be retried) where one cannot be.
   */
  async #publishAll(): Promise<void> {
    if (this.#offline) return; // the first listing publishes (#follow)
    const ready: { id: string; seq: number; next: InstanceRecord }[] = [];
    for (const [id, p] of [...this.#pending.entries()].sort((x, y) => x[1].seq - y[1].seq)) {
      const shared = this.#cluster.get(id);
      if (shared === undefined || shared.owner !== this.hostId) this.#drop(id); // removed, or moved to another host: no longer this host's to publish
      else ready.push({ id, seq: p.seq, next: { ...shared, status: p.record.status, updatedAt: p.record.updatedAt } });
    }
    const current = (w: { id: string; seq: number }) => !this.#closed && this.#pending.get(w.id)?.seq === w.seq; // not superseded or dropped meanwhile
    for (let i = 0; i < ready.length; i += PUBLISH_BATCH) {
      const batch = ready.slice(i, i + PUBLISH_BATCH).filter(current);
      if (batch.length === 0) continue;
      const key = (id: string) => recordKey(this.#prefix, id);
      const r = await this.#txn(
        batch.map((w) => ({ key: key(w.id), target: 'MOD', result: 'EQUAL', value: this.#cluster.get(w.id)?.revision ?? 0 })),
        batch.map((w) => ({ put: { key: key(w.id), value: encodeRecord(w.next) } })),
        key(batch[0]!.id),
        batch[0]!.next.name,
      );
      if (r.succeeded) {
        for (const w of batch) {
          if (current(w)) this.#drop(w.id);
          this.#cluster.apply({ type: 'put', record: { ...w.next, revision: r.revision } });
        }
        continue;
      }
      for (const w of batch) {
        // Its newest status, checked in the same turn as #put reads it (an older one never clears a newer).
        const p = this.#pending.get(w.id);
        const shared = this.#cluster.get(w.id);
        if (this.#closed || p === undefined || shared === undefined || shared.owner !== this.hostId) continue;
        await this.#put(shared, { ...shared, status: p.record.status, updatedAt: p.record.updatedAt }).catch((err: unknown) => {
          if (!(err instanceof StateError && (err.code === 'STALE_REVISION' || err.code === 'RECORD_NOT_FOUND'))) throw err; // the mirror caught up: the next round decides
        });
      }
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#closed) throw new StateError('STATE_UNAVAILABLE', 'the state store is closed (flickd is stopping)');
      return fn();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
