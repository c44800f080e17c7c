// The state seam (controller/state/state-store.ts) on etcd, for a cluster host:
// instance records live in etcd (etcd-state-feed.ts has the key layout), every
// shared write is one txn fenced on the record's mod_revision and, when the
// store is given the host's lease, on the host's liveness key being held by
// that lease (as the catalog's writes are, catalog.ts): a host whose lease
// lapsed can create, change, hand on or remove nothing.
//
// Scope: a host's reads (get, getByName, list, usesTemplate, subscribe) show
// only the records it owns, so its controller never acts on another host's
// instance; `claim` is how a record moves: claimed away, it leaves the old
// owner's reads (a delete to its subscribers) and arrives in the new owner's.
// Every host's records, at their etcd revisions, are in `cluster` (what the
// cluster code reads to decide a move; a claim of a record this host does not
// own names the revision read there).
//
// Reads come from memory: a mirror of every record (a ReadModel fed by
// list-then-watch over etcd, followFeed: list at R, watch from R + 1, reset and
// list again on compaction, retried while etcd is away) from which this host's
// own read model is derived. The revisions the controller sees are this
// store's own counter, not etcd's: a status write must return at once with a
// new revision, and the echo of a write this host published must not move a
// revision under a caller that read it (it would fail with STALE_REVISION for
// nothing). A record's revision moves only when its content does.
//
// Status writes are synchronous, as the seam says: durable in a local journal
// (status-journal.ts) before they return, then published behind to etcd in the
// order written (the newest status of each record; one txn each, fenced like
// any other write), retried with a back-off while etcd is away, and published
// by the next flickd if this one dies first. A shared write of a record carries
// its pending status with it. Shared writes while etcd is unreachable fail with
// STATE_UNAVAILABLE; reads and status writes keep working. All of this store's
// etcd writes run one at a time, so a publish never races a shared write.
import type { InstanceRecord, InstanceSpec, InstanceStatus, NewInstanceRecord } from '../controller/state/instance-record.js';
import { ReadModel, expectRevision, followFeed } from '../controller/state/read-model.js';
import { StateError, type StateChange, type StateReads, type StateStore } from '../controller/state/state-store.js';
import { EtcdError, type Compare, type EtcdClient, type KeyValue, type TxnOp, type TxnResult } from './etcd-client.js';
import { EtcdStateFeed, decodeRecord, encodeRecord, nameKey, recordKey, sameContent } from './etcd-state-feed.js';
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
  /** The host's lease now (HostLease.id): every write requires its liveness key to be held by it. Absent: no lease fence. */
  lease?: () => string;
  /** A publish that failed (retried), a record that cannot be read (skipped), a watch resumed: for logs. */
  onTrouble?: (err: unknown) => void;
  /** First back-off of a failed publish or listing, ms; default 200, doubling to 2000. */
  retryMs?: number;
}

interface Pending {
  seq: number;
  record: InstanceRecord;
}

export class EtcdStateStore implements StateStore {
  readonly hostId: string;
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #config: EtcdStateStoreConfig;
  readonly #journal: StatusJournal;
  /** Every record in etcd, at etcd revisions. */
  readonly #cluster = new ReadModel();
  /** This host's records, at this store's revisions. */
  readonly #own = new ReadModel();
  readonly #pending = new Map<string, Pending>();
  /** The revision at which a record last changed by anything but this host's status writes (a shared write's lenient fence). */
  readonly #lastShared = new Map<string, number>();
  readonly feed: EtcdStateFeed;
  #revision = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #publishTimer: NodeJS.Timeout | undefined;
  #publishWait: number;
  #unfollow: () => void = () => {};
  #closed = false;

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
    this.#unfollow = await followFeed(this.feed, this.#cluster, (err) => this.#config.onTrouble?.(err), this.#config.retryMs ?? 200);
    for (const id of [...this.#pending.keys()]) if (this.#cluster.get(id)?.owner !== this.hostId) this.#drop(id);
    this.#schedulePublish(0);
  }

  /** Every host's records, at their etcd revisions (this host's reads show only its own). */
  get cluster(): StateReads {
    return this.#cluster;
  }

  /** Status writes not yet in etcd. */
  get pendingStatus(): number {
    return this.#pending.size;
  }

  // ---- reads: this host's records ----

  get(id: string): InstanceRecord | undefined {
    return this.#own.get(id);
  }

  getByName(name: string): InstanceRecord | undefined {
    return this.#own.getByName(name);
  }

  list(): InstanceRecord[] {
    return this.#own.list();
  }

  usesTemplate(dir: string): boolean {
    return this.#own.usesTemplate(dir);
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    return this.#own.subscribe(listener);
  }

  // ---- writes ----

  updateStatus(id: string, expected: number, patch: Partial<InstanceStatus>): InstanceRecord {
    if (this.#closed) throw new StateError('STATE_UNAVAILABLE', 'the state store is closed (flickd is stopping)');
    const current = expectRevision(this.#own, id, expected);
    const next: InstanceRecord = { ...current, status: { ...current.status, ...patch }, revision: ++this.#revision, updatedAt: new Date().toISOString() };
    // On disk first, then memory, then etcd behind.
    const seq = this.#journal.put(next);
    this.#pending.set(id, { seq, record: next });
    this.#own.apply({ type: 'put', record: next });
    this.#schedulePublish(0);
    return this.#own.get(id)!;
  }

  create(record: NewInstanceRecord): Promise<InstanceRecord> {
    return this.#serial(async () => {
      const next: InstanceRecord = { ...record, owner: this.hostId, revision: 0, updatedAt: record.createdAt };
      const names = nameKey(this.#prefix, record.name);
      const key = recordKey(this.#prefix, record.id);
      const r = await this.#txn(
        [
          { key: names, target: 'CREATE', result: 'EQUAL', value: 0 },
          { key, target: 'CREATE', result: 'EQUAL', value: 0 },
        ],
        [{ put: { key: names, value: record.id } }, { put: { key, value: encodeRecord(next) } }],
        names,
        record.name,
      );
      if (!r.succeeded) {
        const holder = r.ranges[0]?.[0] ? this.#cluster.get(r.ranges[0][0].value) : undefined;
        throw new StateError('NAME_TAKEN', `an instance named "${record.name}" already exists${holder ? ` (on host ${holder.owner})` : ''}: pick another --name or remove it with 'flick rm ${record.name}'`, { kind: 'user' });
      }
      this.#cluster.apply({ type: 'put', record: { ...next, revision: r.revision } });
      return this.#own.get(record.id)!;
    });
  }

  updateSpec(id: string, expected: number, patch: Partial<InstanceSpec>): Promise<InstanceRecord> {
    return this.#ownWrite(id, expected, async (current) => {
      const next = { ...current, spec: { ...current.spec, ...patch }, updatedAt: new Date().toISOString() };
      await this.#put(current, next);
      return this.#own.get(id)!;
    });
  }

  claim(id: string, expected: number, owner: string): Promise<InstanceRecord> {
    if (this.#own.get(id) === undefined) {
      // Another host's record (or none): fenced on the etcd revision read in `cluster`.
      return this.#serial(async () => {
        const shared = expectRevision(this.#cluster, id, expected);
        const written = await this.#put(shared, { ...shared, owner, updatedAt: new Date().toISOString() });
        return this.#own.get(id) ?? written;
      });
    }
    return this.#ownWrite(id, expected, async (current) => {
      const written = await this.#put(current, { ...current, owner, updatedAt: new Date().toISOString() });
      return this.#own.get(id) ?? written;
    });
  }

  remove(id: string, expected: number): Promise<boolean> {
    if (this.#own.get(id) === undefined) return Promise.resolve(false);
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
      this.#cluster.apply({ type: 'delete', id, revision: r.revision });
      return true;
    }).catch((err: unknown) => {
      if (err instanceof StateError && err.code === 'RECORD_NOT_FOUND') return false;
      throw err;
    });
  }

  /** Stops following etcd and publishing (what is unpublished stays in the journal for the next flickd). Safe twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearTimeout(this.#publishTimer);
      this.#unfollow();
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
      expectRevision(this.#own, id, expected);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#serial(async () => {
      const current = this.#own.get(id);
      if (current === undefined) throw new StateError('RECORD_NOT_FOUND', `instance ${id} is not in this host's state (removed or moved meanwhile)`);
      if ((this.#lastShared.get(id) ?? 0) > expected) expectRevision(this.#own, id, expected);
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

  /**
   * One txn: `compare` plus, with a lease, this host's liveness key held by it.
   * On failure, `failureKey` is ranged first and the liveness key last; a lapsed
   * lease is NOT_OWNER. etcd unreachable is STATE_UNAVAILABLE.
   */
  async #txn(compare: Compare[], success: TxnOp[], failureKey: string, name: string): Promise<TxnResult> {
    const alive = aliveKey(this.#prefix, this.hostId);
    const lease = this.#config.lease?.();
    const fence: Compare[] = lease === undefined ? [] : [{ key: alive, target: 'LEASE', result: 'EQUAL', value: lease }];
    const failure: TxnOp[] = [{ range: { key: failureKey } }, ...(lease === undefined ? [] : [{ range: { key: alive } }])];
    const r = await this.#etcd.txn([...compare, ...fence], success, failure).catch((err: unknown) => unavailable(err, `instance "${name}"`));
    if (!r.succeeded && lease !== undefined && r.ranges[1]?.[0]?.lease !== lease) {
      throw new StateError('NOT_OWNER', `instance "${name}": this host's lease in etcd lapsed (it was cut off or stalled), so it may no longer write the cluster's state: it takes a new lease and re-registers; retry then`);
    }
    return r;
  }

  /** After a failed fenced write: the record as etcd holds it, into the mirror (undefined: it is gone). */
  #settle(r: TxnResult): InstanceRecord | undefined {
    const kv: KeyValue | undefined = r.ranges[0]?.[0];
    if (kv === undefined) return undefined;
    try {
      const record = decodeRecord(kv);
      this.#cluster.apply({ type: 'put', record });
      return record;
    } catch {
      return undefined;
    }
  }

  /** The own read model follows the mirror: a record this host owns, with its pending status; any other leaves. */
  #onShared(change: StateChange): void {
    if (change.type === 'reset') return;
    if (change.type === 'delete' || change.record.owner !== this.hostId) {
      const id = change.type === 'delete' ? change.id : change.record.id;
      this.#drop(id);
      this.#lastShared.delete(id);
      if (this.#own.get(id) !== undefined) this.#own.apply({ type: 'delete', id, revision: ++this.#revision });
      return;
    }
    const shared = change.record;
    const pending = this.#pending.get(shared.id)?.record;
    const next = { ...shared, status: pending ? pending.status : shared.status, updatedAt: pending ? pending.updatedAt : shared.updatedAt };
    const current = this.#own.get(shared.id);
    if (current !== undefined && sameContent(current, next)) return; // the echo of this host's own write
    const revision = ++this.#revision;
    this.#lastShared.set(shared.id, revision);
    this.#own.apply({ type: 'put', record: { ...next, revision } });
  }

  #drop(id: string): void {
    if (!this.#pending.has(id)) return;
    this.#pending.delete(id);
    this.#journal.clear(id);
  }

  #schedulePublish(delay: number): void {
    if (this.#closed || this.#publishTimer !== undefined || this.#pending.size === 0) return;
    this.#publishTimer = setTimeout(() => {
      this.#publishTimer = undefined;
      void this.#serial(() => this.#publishAll()).then(
        () => {
          this.#publishWait = this.#config.retryMs ?? 200;
          this.#schedulePublish(0); // what was written meanwhile
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

  /** Publishes every pending status, oldest write first; throws (to be retried) at the first that cannot be. */
  async #publishAll(): Promise<void> {
    const queue = [...this.#pending.entries()].sort((a, b) => a[1].seq - b[1].seq);
    for (const [id, p] of queue) {
      if (this.#closed) return;
      if (this.#pending.get(id)?.seq !== p.seq) continue; // superseded or dropped meanwhile
      const shared = this.#cluster.get(id);
      if (shared === undefined || shared.owner !== this.hostId) {
        this.#drop(id); // removed, or moved to another host: its status is no longer this host's to publish
        continue;
      }
      const next: InstanceRecord = { ...shared, status: p.record.status, updatedAt: p.record.updatedAt };
      try {
        await this.#put(shared, next);
      } catch (err) {
        if (err instanceof StateError && (err.code === 'STALE_REVISION' || err.code === 'RECORD_NOT_FOUND')) continue; // the mirror caught up: the next round decides
        throw err;
      }
      if (this.#pending.get(id)?.seq === p.seq) this.#drop(id);
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

function unavailable(err: unknown, what: string): never {
  if (err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE') {
    throw new StateError('STATE_UNAVAILABLE', `${what}: the cluster's state (etcd) is unreachable, so nothing can be created, changed, moved or removed until it returns; running instances keep serving: check that the etcd members are up (${err.message})`, { cause: err });
  }
  throw err;
}

function stale(name: string): StateError {
  return new StateError('STALE_REVISION', `instance "${name}" changed in the cluster's state meanwhile: read it again and retry`);
}
