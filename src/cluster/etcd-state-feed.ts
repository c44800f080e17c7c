// Instance records in etcd, and the StateFeed (controller/state/state-store.ts)
// that follows them: list the records' prefix at revision R, then watch from
// R + 1. Key layout under the cluster's prefix (default /flick/):
//   state/records/<id>   the InstanceRecord as JSON, but its revision, which is
//                        the key's mod_revision (etcd's own counter, so every
//                        write is fenced by comparing it in a txn)
//   state/names/<name>   the id holding that name: names are unique cluster-wide
//                        because a create's txn requires this key not to exist
// etcd's watch is at-least-once and may be compacted: a stream that merely ends
// (a member gone, etcd down) is resumed from the last revision seen, after a
// back-off, for as long as it takes; one cancelled because its start revision
// was compacted says `reset`, and the consumer lists again (followFeed).
import { INSTANCE_RECORD_VERSION, type InstanceRecord } from '../controller/state/instance-record.js';
import { StateError, type StateChange, type StateFeed, type StateListing } from '../controller/state/state-store.js';
import { EtcdError, type EtcdClient, type KeyValue, type WatchHandle } from './etcd-client.js';

export const recordsPrefix = (prefix: string) => `${prefix}state/records/`;
export const recordKey = (prefix: string, id: string) => `${recordsPrefix(prefix)}${id}`;
export const nameKey = (prefix: string, name: string) => `${prefix}state/names/${name}`;

/** A record as stored: everything but its revision (the key's mod_revision is). */
export function encodeRecord(record: Omit<InstanceRecord, 'revision'> & { revision?: number }): string {
  const { revision: _r, ...stored } = record;
  return JSON.stringify(stored);
}

/** The record in `kv`, its revision the key's mod_revision; CORRUPT_RECORD if it cannot be read. */
export function decodeRecord(kv: KeyValue): InstanceRecord {
  let parsed: Partial<InstanceRecord>;
  try {
    parsed = JSON.parse(kv.value) as Partial<InstanceRecord>;
  } catch (cause) {
    throw new StateError('CORRUPT_RECORD', `etcd key ${kv.key} does not hold a JSON record: remove the key (etcdctl del ${kv.key})`, { cause });
  }
  if (parsed.version !== INSTANCE_RECORD_VERSION || typeof parsed.id !== 'string' || typeof parsed.owner !== 'string' || !parsed.spec || !parsed.status) {
    throw new StateError('CORRUPT_RECORD', `etcd key ${kv.key} holds a record of version ${String(parsed.version)}, this flickd reads ${INSTANCE_RECORD_VERSION}: run a matching flickd on every host`);
  }
  return { ...(parsed as InstanceRecord), revision: kv.modRevision };
}

/** The record in `kv`, or undefined (and `onTrouble` told why) if it cannot be read. */
export function tryDecode(kv: KeyValue, onTrouble?: (err: unknown) => void): InstanceRecord | undefined {
  try {
    return decodeRecord(kv);
  } catch (err) {
    onTrouble?.(err);
    return undefined;
  }
}

/** Whether two records say the same (owner, spec, status), whatever the order of their fields. */
export function sameContent(a: InstanceRecord, b: Pick<InstanceRecord, 'owner' | 'spec' | 'status'>): boolean {
  return a.owner === b.owner && canonical(a.spec) === canonical(b.spec) && canonical(a.status) === canonical(b.status);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : v,
  );
}

export interface EtcdStateFeedOptions {
  /** A record that cannot be decoded (skipped), or a watch that ended and is resumed: for logs. */
  onTrouble?: (err: unknown) => void;
  /** Back-off before a lost watch is resumed, ms; default 200, doubling to 2000. */
  retryMs?: number;
}

export class EtcdStateFeed implements StateFeed {
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #opts: EtcdStateFeedOptions;
  /** How many times a watch found its start revision compacted (and said `reset`). */
  resets = 0;

  constructor(etcd: EtcdClient, prefix: string, opts: EtcdStateFeedOptions = {}) {
    this.#etcd = etcd;
    this.#prefix = recordsPrefix(prefix);
    this.#opts = opts;
  }

  async list(): Promise<StateListing> {
    const r = await this.#etcd.range(this.#prefix, { prefix: true });
    const records: InstanceRecord[] = [];
    for (const kv of r.kvs) {
      const record = this.#decode(kv);
      if (record) records.push(record);
    }
    return { revision: r.revision, records };
  }

  watch(afterRevision: number, onChange: (change: StateChange) => void): () => void {
    let seen = afterRevision;
    let handle: WatchHandle | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let wait = this.#opts.retryMs ?? 200;
    const follow = () => {
      if (stopped) return;
      const h = this.#etcd.watch(this.#prefix, seen + 1, (events, revision) => {
        wait = this.#opts.retryMs ?? 200;
        for (const e of events) {
          if (e.type === 'delete') onChange({ type: 'delete', id: e.key.slice(this.#prefix.length), revision: e.modRevision });
          else {
            const record = this.#decode(e.kv);
            if (record) onChange({ type: 'put', record });
          }
          seen = Math.max(seen, e.type === 'delete' ? e.modRevision : e.kv.modRevision);
        }
        // A progress notification moves the watch's revision on without events.
        if (events.length === 0 && revision > seen) seen = revision;
      });
      handle = h;
      h.done.then(
        () => undefined,
        (err: unknown) => {
          if (stopped) return;
          if (err instanceof EtcdError && err.code === 'ETCD_COMPACTED') {
            this.resets++;
            onChange({ type: 'reset' });
            return;
          }
          this.#opts.onTrouble?.(err);
          timer = setTimeout(follow, wait);
          timer.unref();
          wait = Math.min(wait * 2, 2000);
        },
      );
    };
    follow();
    return () => {
      stopped = true;
      clearTimeout(timer);
      handle?.cancel();
    };
  }

  #decode(kv: KeyValue): InstanceRecord | undefined {
    return tryDecode(kv, this.#opts.onTrouble);
  }
}
