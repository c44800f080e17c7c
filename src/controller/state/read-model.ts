// The in-memory read model behind every StateStore's synchronous reads: the
// records by id and by name, and how many name each shared template. A backend
// feeds it: SQLite applies each of its own commits, etcd a list then its watch
// (followFeed). Changes are applied at least once and in revision order; a
// change at or below the revision a record already has is ignored, so a
// replayed watch event is harmless.
import { StateError, type StateChange, type StateFeed, type StateListing, type StateReads } from './state-store.js';
import type { InstanceRecord } from './instance-record.js';

type Listener = (change: StateChange) => void;

/** Deleted records' revisions kept (read-model's #deletedAt): a replay older than 10,000 deletes ago is not expected. */
const TOMBSTONES = 10_000;

export class ReadModel implements StateReads {
  readonly #byId = new Map<string, InstanceRecord>();
  readonly #idByName = new Map<string, string>();
  /** How many records name each shared template: removing one of 10,000 instances asks "is it still used?". */
  readonly #templateUsers = new Map<string, number>();
  readonly #listeners = new Set<Listener>();
  /**
   * The revision each recently deleted record was deleted at: a put at or below it is a replay of an
   * older change (a store applies its own delete at once, and its watch may deliver the put before it
   * afterwards), never the record again. The oldest go beyond TOMBSTONES; a listing clears those it covers.
   */
  readonly #deletedAt = new Map<string, number>();
  #revision = 0;

  /** The highest revision applied (of a put, a delete or a listing). */
  get revision(): number {
    return this.#revision;
  }

  get(id: string): InstanceRecord | undefined {
    return this.#byId.get(id);
  }

  getByName(name: string): InstanceRecord | undefined {
    const id = this.#idByName.get(name);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  list(): InstanceRecord[] {
    return [...this.#byId.values()].sort(byAge);
  }

  /** Every record, in no order (list() sorts: this does not). */
  values(): IterableIterator<InstanceRecord> {
    return this.#byId.values();
  }

  usesTemplate(dir: string): boolean {
    return (this.#templateUsers.get(dir) ?? 0) > 0;
  }

  /** Every change applied from now on (after it is applied); returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Applies one change; false if it was stale (already applied). */
  apply(change: StateChange): boolean {
    if (change.type === 'reset') return false; // the feed's consumer lists again (followFeed)
    const applied = change.type === 'put' ? this.#put(change.record) : this.#delete(change.id, change.revision);
    if (applied) this.#emit(change);
    return applied;
  }

  /** Replaces everything with a listing, telling subscribers what changed (as puts and deletes). */
  reset(listing: StateListing): void {
    for (const [id, revision] of this.#deletedAt) if (revision <= listing.revision) this.#deletedAt.delete(id);
    const changes: Exclude<StateChange, { type: 'reset' }>[] = [];
    const keep = new Set<string>();
    for (const record of listing.records) {
      keep.add(record.id);
      if (this.#byId.get(record.id)?.revision !== record.revision) changes.push({ type: 'put', record });
    }
    for (const id of this.#byId.keys()) if (!keep.has(id)) changes.push({ type: 'delete', id, revision: listing.revision });
    for (const c of changes) {
      if (c.type === 'put') this.#forget(c.record.id);
      if (c.type === 'put' ? this.#put(c.record) : this.#delete(c.id, c.revision)) this.#emit(c);
    }
    this.#revision = Math.max(this.#revision, listing.revision);
  }

  #put(record: InstanceRecord): boolean {
    const previous = this.#byId.get(record.id);
    if (previous && previous.revision >= record.revision) return false;
    if ((this.#deletedAt.get(record.id) ?? 0) >= record.revision) return false;
    this.#deletedAt.delete(record.id);
    const frozen = Object.freeze(record);
    if (previous) this.#forget(record.id);
    this.#byId.set(record.id, frozen);
    this.#idByName.set(record.name, record.id);
    this.#countTemplate(frozen, 1);
    this.#revision = Math.max(this.#revision, record.revision);
    return true;
  }

  #delete(id: string, revision: number): boolean {
    const previous = this.#byId.get(id);
    if (previous === undefined || previous.revision >= revision) return false;
    this.#forget(id);
    this.#deletedAt.set(id, revision);
    if (this.#deletedAt.size > TOMBSTONES) this.#deletedAt.delete(this.#deletedAt.keys().next().value!);
    this.#revision = Math.max(this.#revision, revision);
    return true;
  }

  #forget(id: string): void {
    const previous = this.#byId.get(id);
    if (previous === undefined) return;
    this.#byId.delete(id);
    if (this.#idByName.get(previous.name) === id) this.#idByName.delete(previous.name);
    this.#countTemplate(previous, -1);
  }

  #countTemplate(record: InstanceRecord, delta: 1 | -1): void {
    const dir = record.status.snapshots.template?.dir;
    if (dir === undefined) return;
    const n = (this.#templateUsers.get(dir) ?? 0) + delta;
    if (n > 0) this.#templateUsers.set(dir, n);
    else this.#templateUsers.delete(dir);
  }

  #emit(change: StateChange): void {
    for (const l of this.#listeners) {
      try {
        l(change);
      } catch {
        // A subscriber's bug must not break the store that called it.
      }
    }
  }
}

/** The synchronous reads of a store whose records are in `model`: every backend's StateReads (and subscribe). */
export class ModelReads implements StateReads {
  constructor(protected readonly model: ReadModel) {}

  get(id: string): InstanceRecord | undefined {
    return this.model.get(id);
  }

  getByName(name: string): InstanceRecord | undefined {
    return this.model.getByName(name);
  }

  list(): InstanceRecord[] {
    return this.model.list();
  }

  usesTemplate(dir: string): boolean {
    return this.model.usesTemplate(dir);
  }

  subscribe(listener: Listener): () => void {
    return this.model.subscribe(listener);
  }
}

/**
 * The record `id` as a writer must find it: present and at `expected`. Throws
 * RECORD_NOT_FOUND or STALE_REVISION (what a backend's fenced txn reports).
 */
export function expectRevision(reads: StateReads, id: string, expected: number): InstanceRecord {
  const current = reads.get(id);
  if (current === undefined) throw new StateError('RECORD_NOT_FOUND', `instance ${id} is not in the state store (removed meanwhile)`);
  if (current.revision !== expected) {
    throw new StateError('STALE_REVISION', `instance "${current.name}" changed meanwhile (revision ${current.revision}, the write expected ${expected}): read it again and retry`, {
      details: { id, expected, actual: current.revision },
    });
  }
  return current;
}

/**
 * Feeds `model` from `feed`: a listing, then its watch; on a `reset` (history
 * compacted), lists again, retrying a listing that fails (the backend is away)
 * after a back-off (`retryMs`, doubling to 5 s) until one succeeds. Resolves
 * once the first listing is applied (rejects if that one fails); the returned
 * function stops following.
 */
export async function followFeed(feed: StateFeed, model: ReadModel, onError: (err: unknown) => void = () => {}, retryMs = 200): Promise<() => void> {
  let stopped = false;
  let unwatch: () => void = () => {};
  let timer: NodeJS.Timeout | undefined;
  const relist = async (): Promise<void> => {
    unwatch();
    unwatch = () => {};
    const listing = await feed.list();
    if (stopped) return;
    model.reset(listing);
    unwatch = feed.watch(listing.revision, (change) => {
      if (change.type === 'reset') void again(retryMs);
      else model.apply(change);
    });
  };
  const again = async (wait: number): Promise<void> => {
    if (stopped) return;
    try {
      await relist();
    } catch (err) {
      onError(err);
      if (stopped) return;
      timer = setTimeout(() => void again(Math.min(wait * 2, 5000)), wait);
      timer.unref();
    }
  };
  await relist();
  return () => {
    stopped = true;
    clearTimeout(timer);
    unwatch();
  };
}

function byAge(a: InstanceRecord, b: InstanceRecord): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
