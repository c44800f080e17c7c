// The state seam: where instance records live, declared by the controller that
// consumes it (STYLE.md: one interface per seam, owned by its user). flickd
// plugs in the embedded SQLite store (src/store/); a cluster plugs in an etcd
// one (src/cluster/). The controller and the proxy never import either.
//
// Reads are synchronous and come from an in-memory read model (read-model.ts):
// the proxy looks an instance up on every request, and the controller's
// suspend decision must not yield between its in-flight check and its state
// change. The read model is fed list-then-watch (StateFeed): a list at a
// revision, then every change after it, and a fresh list whenever the feed says
// it lost events (etcd compacts its history; its watch is at-least-once).
//
// Writes name the revision they read (optimistic concurrency: etcd's txn
// `compare(mod_revision) == expected`, SQLite's `WHERE revision = ?`) and fail
// with STALE_REVISION when the record moved on. Two kinds of write:
//   - shared writes (create, spec updates, ownership, remove) are async: in a
//     cluster they are a round trip to the shared state and a fenced txn. Each
//     resolves once the read model holds its result (read your own writes).
//   - status writes are synchronous: status is what the owning host observed
//     (pid, run folder, network, snapshots), durable on that host before the
//     call returns, in the same turn as the decision that made it. A cluster
//     backend keeps it durable locally and publishes it to shared state behind
//     (write-behind); a host that lost ownership learns it from the feed (the
//     record arrives with another owner) and stops acting on it.
import { FlickError } from '../../errors.js';
import type { InstanceRecord, InstanceSpec, InstanceStatus, NewInstanceRecord } from './instance-record.js';

export type StateErrorCode =
  | 'NAME_TAKEN' // another instance has this name (a user error)
  | 'RECORD_NOT_FOUND' // no record with this id (removed meanwhile)
  | 'STALE_REVISION' // the record changed since the caller read it: read again, decide again
  | 'NOT_OWNER' // another host owns the record; only it writes its status
  | 'SCHEMA_TOO_NEW' // the database was written by a newer flickd
  | 'CORRUPT_RECORD' // a stored record cannot be decoded
  | 'STATE_UNAVAILABLE'; // the backend cannot be reached (a cluster's etcd)

export class StateError extends FlickError<StateErrorCode> {}

/** A change the read model applies, in revision order. At-least-once: a change at or below the revision held is ignored. */
export type StateChange =
  | { type: 'put'; record: InstanceRecord }
  | { type: 'delete'; id: string; revision: number }
  /** The feed lost changes (etcd: compacted): the consumer lists again. */
  | { type: 'reset' };

/** Every record at one revision of the store. */
export interface StateListing {
  revision: number;
  records: InstanceRecord[];
}

/** What a read model is fed by: list, then watch from the listing's revision. */
export interface StateFeed {
  list(): Promise<StateListing>;
  /** Calls `onChange` for every change with a revision above `afterRevision`, in order; returns the unsubscribe function. */
  watch(afterRevision: number, onChange: (change: StateChange) => void): () => void;
}

/** Synchronous lookups, served from memory. Records handed out are frozen. */
export interface StateReads {
  get(id: string): InstanceRecord | undefined;
  getByName(name: string): InstanceRecord | undefined;
  /** Every record, oldest first (createdAt, then id). */
  list(): InstanceRecord[];
  /** Whether any record's status names the shared template in `dir`. */
  usesTemplate(dir: string): boolean;
}

export interface StateStore extends StateReads {
  /** The host this store writes as: records it creates are owned by it. */
  readonly hostId: string;
  /** Stores a new record owned by this host; NAME_TAKEN if its name is in use. */
  create(record: NewInstanceRecord): Promise<InstanceRecord>;
  /** Replaces spec fields; STALE_REVISION unless the record is at `expected`. */
  updateSpec(id: string, expected: number, patch: Partial<InstanceSpec>): Promise<InstanceRecord>;
  /**
   * Replaces status fields, durably, before it returns; STALE_REVISION unless the
   * record is at `expected`, NOT_OWNER unless this host owns it.
   */
  updateStatus(id: string, expected: number, patch: Partial<InstanceStatus>): InstanceRecord;
  /**
   * Hands the record to `owner` (fenced on `expected`): in a cluster, the move of an instance to another
   * host. With `status`, the record's status is replaced by it in the same write (what the new owner
   * starts from: nothing of the old owner's VM, network, folder or snapshots).
   */
  claim(id: string, expected: number, owner: string, status?: InstanceStatus): Promise<InstanceRecord>;
  /** Removes the record; STALE_REVISION unless it is at `expected`. Resolves false if it was gone already. */
  remove(id: string, expected: number): Promise<boolean>;
  /** Every change the read model applies from now on, after it applied it (a console's events, a cluster's peers). */
  subscribe(listener: (change: StateChange) => void): () => void;
  /** Safe twice. */
  close(): Promise<void>;
}
