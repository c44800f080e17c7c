// An in-memory copy of every key under one etcd prefix, kept in step by
// list-then-watch: range the prefix (which gives the store revision R), then
// watch from R + 1. etcd's watch is treated as at-least-once and possibly
// compacted: an event at or below a key's known mod revision is a duplicate and
// is dropped; a watch that ends (compaction, a member gone, etcd down) is
// followed by a fresh list and a new watch, retried with back-off until etcd
// answers, and the list's differences are emitted as changes, so a consumer
// never misses a deletion that happened during the gap.
import { EtcdError, type EtcdClient, type KeyValue, type WatchHandle } from './etcd-client.js';

export type ModelChange = { type: 'put'; kv: KeyValue; previous: KeyValue | undefined } | { type: 'delete'; key: string; previous: KeyValue };

export interface ReadModelOptions {
  /** Called for each change after the first list (which `ready` covers). */
  onChange?: (change: ModelChange) => void;
  /** Called when the watch ended and a re-list begins (compaction, member lost), for logs. */
  onGap?: (err: unknown) => void;
  /** Back-off between failed re-lists, ms. Default 200, doubling to 5000. */
  retryMs?: number;
}

export class ReadModel {
  readonly prefix: string;
  readonly #etcd: EtcdClient;
  readonly #opts: ReadModelOptions;
  readonly #kvs = new Map<string, KeyValue>();
  #watch: WatchHandle | undefined;
  #revision = 0;
  #stopped = false;
  #relists = 0;
  /** Resolves once the first list is in. */
  readonly ready: Promise<void>;

  constructor(etcd: EtcdClient, prefix: string, opts: ReadModelOptions = {}) {
    this.#etcd = etcd;
    this.prefix = prefix;
    this.#opts = opts;
    this.ready = this.#list(false).then(() => this.#follow());
  }

  /** The revision the model reflects (every change up to it is in). */
  get revision(): number {
    return this.#revision;
  }

  /** How many times the model re-listed after a gap. */
  get relists(): number {
    return this.#relists;
  }

  get(key: string): KeyValue | undefined {
    return this.#kvs.get(key);
  }

  values(): KeyValue[] {
    return [...this.#kvs.values()];
  }

  get size(): number {
    return this.#kvs.size;
  }

  async #list(emit: boolean): Promise<void> {
    const r = await this.#etcd.range(this.prefix, { prefix: true });
    const seen = new Set<string>();
    for (const kv of r.kvs) {
      seen.add(kv.key);
      this.#apply({ type: 'put', kv }, emit);
    }
    for (const [key, previous] of [...this.#kvs]) {
      if (!seen.has(key)) {
        this.#kvs.delete(key);
        if (emit) this.#opts.onChange?.({ type: 'delete', key, previous });
      }
    }
    this.#revision = r.revision;
  }

  #apply(e: { type: 'put'; kv: KeyValue } | { type: 'delete'; key: string; modRevision: number }, emit: boolean): void {
    if (e.type === 'put') {
      const previous = this.#kvs.get(e.kv.key);
      if (previous && previous.modRevision >= e.kv.modRevision) return; // a duplicate
      this.#kvs.set(e.kv.key, e.kv);
      if (emit) this.#opts.onChange?.({ type: 'put', kv: e.kv, previous });
    } else {
      const previous = this.#kvs.get(e.key);
      if (!previous || previous.modRevision >= e.modRevision) return;
      this.#kvs.delete(e.key);
      if (emit) this.#opts.onChange?.({ type: 'delete', key: e.key, previous });
    }
  }

  #follow(): void {
    if (this.#stopped) return;
    const watch = this.#etcd.watch(this.prefix, this.#revision + 1, (events, revision) => {
      for (const e of events) this.#apply(e, true);
      if (revision > this.#revision) this.#revision = revision;
    });
    this.#watch = watch;
    watch.done.then(
      () => undefined,
      (err: unknown) => void this.#recover(err),
    );
  }

  async #recover(err: unknown): Promise<void> {
    if (this.#stopped) return;
    this.#opts.onGap?.(err);
    let wait = this.#opts.retryMs ?? 200;
    // A compaction needs a fresh list; so does a lost stream (events may have been missed while down).
    for (;;) {
      if (this.#stopped) return;
      try {
        await this.#list(true);
        this.#relists++;
        break;
      } catch (e) {
        if (!(e instanceof EtcdError)) throw e;
        await new Promise((r) => setTimeout(r, wait).unref());
        wait = Math.min(wait * 2, 5000);
      }
    }
    this.#follow();
  }

  /** Stops watching; safe to call twice. */
  stop(): void {
    this.#stopped = true;
    this.#watch?.cancel();
  }
}
