// The one kind of etcd write EtcdStateStore makes (etcd-state-store.ts): a txn
// whose compares are the record's (its mod_revision, or that its key and its
// name's key do not exist yet) plus, when the writer holds a lease, the writer's
// liveness key being held by that lease, as the catalog's ownership writes are
// (catalog.ts). A host whose lease lapsed therefore writes nothing, whatever it
// read before. etcd unreachable is STATE_UNAVAILABLE, with what to do.
import { StateError } from '../controller/state/state-store.js';
import { EtcdError, type Compare, type EtcdClient, type KeyValue, type TxnOp, type TxnResult } from './etcd-client.js';

export interface TxnFence {
  etcd: EtcdClient;
  /** The writer's liveness key (membership.ts aliveKey). */
  alive: string;
  /** The writer's lease now; undefined: no lease fence; null: the writer has none yet (it has not joined), so it may not write. */
  lease: string | null | undefined;
}

/**
 * `compare` (plus the lease fence) then `success`, atomically. On failure,
 * `failureKey` is ranged first (ranges[0]) and the liveness key last; a lapsed
 * lease is NOT_OWNER, thrown; any other failed compare is the caller's to read.
 */
export async function fencedTxn(f: TxnFence, compare: Compare[], success: TxnOp[], failureKey: string, name: string): Promise<TxnResult> {
  const { lease } = f;
  if (lease === null) {
    throw new StateError('NOT_OWNER', `instance "${name}": this host holds no lease in etcd yet (it has not joined the cluster), so it may not write the cluster's state: retry once it has joined`);
  }
  const fence: Compare[] = lease === undefined ? [] : [leaseFence(f.alive, lease)];
  const failure: TxnOp[] = [{ range: { key: failureKey } }, ...(lease === undefined ? [] : [{ range: { key: f.alive } }])];
  const r = await f.etcd.txn([...compare, ...fence], success, failure).catch((err: unknown) => unavailable(err, `instance "${name}"`));
  if (!r.succeeded && lease !== undefined && !holdsLease(r.ranges[1]?.[0], lease)) {
    throw new StateError('NOT_OWNER', `instance "${name}": this host's lease in etcd lapsed (it was cut off or stalled), so it may no longer write the cluster's state: it takes a new lease and re-registers; retry then`);
  }
  return r;
}

/** The compare of every ownership write: the writer's liveness key (`alive`) is held by its lease now, so a host whose lease lapsed writes nothing. */
export function leaseFence(alive: string, lease: string): Compare {
  return { key: alive, target: 'LEASE', result: 'EQUAL', value: lease };
}

/** After a failed fenced txn: whether the liveness key read back (ranged) is still held by `lease` (if not, the write failed for that). */
export function holdsLease(alive: KeyValue | undefined, lease: string): boolean {
  return alive !== undefined && alive.lease === lease;
}

/** etcd unreachable as the seam says it: STATE_UNAVAILABLE, saying what still works and what to do. */
export function unavailable(err: unknown, what: string): never {
  if (err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE') {
    throw new StateError('STATE_UNAVAILABLE', `${what}: the cluster's state (etcd) is unreachable, so nothing can be created, changed, moved or removed until it returns; running instances keep serving: check that the etcd members are up (${err.message})`, { cause: err });
  }
  throw err;
}

export function stale(name: string): StateError {
  return new StateError('STALE_REVISION', `instance "${name}" changed in the cluster's state meanwhile: read it again and retry`);
}
