// A cluster host's journal of status writes not yet published to etcd: a small
// SQLite file (WAL, synchronous=FULL) in the host's data dir, one row per
// record (its latest status write wins: publishing is of the newest status, in
// order, never an older one after a newer). A status write is here, on disk,
// before StateStore.updateStatus returns; a row leaves once etcd holds that
// write (or the record is gone or another host's). A flickd killed meanwhile
// publishes what it finds here when it opens again.
//
// Beside it, a cache of this host's records as etcd last held them (`own`),
// so that a flickd started while etcd is away serves what it holds, as it last
// knew it, until etcd answers and a fresh listing replaces the cache's view.
// Cache writes are batched into one transaction per turn (a listing of 10,000
// records is one commit); losing the last batch in a crash costs only
// freshness, never a status write (those are in `pending`, each committed).
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { InstanceRecord } from '../controller/state/instance-record.js';

export interface PendingStatus {
  id: string;
  /** Increases with every write to the journal: a row is cleared only by the publish of its own write. */
  seq: number;
  record: InstanceRecord;
}

export class StatusJournal {
  readonly #db: Database.Database;
  readonly #put: Database.Statement;
  readonly #clear: Database.Statement;
  readonly #cachePut: Database.Statement;
  readonly #cacheDelete: Database.Statement;
  readonly #cacheBatch = new Map<string, InstanceRecord | null>();
  #seq: number;
  #closed = false;

  /** Opens (creating if needed) the journal at `file`; ':memory:' keeps it in memory (tests). */
  constructor(file: string) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.exec('CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL)');
    this.#db.exec('CREATE TABLE IF NOT EXISTS own (id TEXT PRIMARY KEY, record TEXT NOT NULL)');
    this.#db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    this.#cachePut = this.#db.prepare('INSERT INTO own (id, record) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record');
    this.#cacheDelete = this.#db.prepare('DELETE FROM own WHERE id = ?');
    this.#put = this.#db.prepare('INSERT INTO pending (id, seq, record) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, record = excluded.record');
    this.#clear = this.#db.prepare('DELETE FROM pending WHERE id = ? AND seq <= ?');
    this.#seq = (this.#db.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM pending').get() as { seq: number }).seq;
  }

  /** Durably records `record` as the status to publish for its id; the write's seq. */
  put(record: InstanceRecord): number {
    const seq = ++this.#seq;
    this.#put.run(record.id, seq, JSON.stringify(record));
    return seq;
  }

  /** Forgets the id's pending status if nothing newer than `seq` was written since (Infinity: whatever it is). */
  clear(id: string, seq = Number.MAX_SAFE_INTEGER): void {
    if (!this.#closed) this.#clear.run(id, seq);
  }

  /** Every pending status, oldest write first. */
  list(): PendingStatus[] {
    const rows = this.#db.prepare('SELECT id, seq, record FROM pending ORDER BY seq').all() as { id: string; seq: number; record: string }[];
    return rows.map((r) => ({ id: r.id, seq: r.seq, record: JSON.parse(r.record) as InstanceRecord }));
  }

  /** Caches `record` (this host's, at its etcd revision) or forgets `id` (null), in this turn's batch. */
  cache(id: string, record: InstanceRecord | null): void {
    if (this.#closed) return;
    if (this.#cacheBatch.size === 0) queueMicrotask(() => this.#flushCache());
    this.#cacheBatch.set(id, record);
  }

  /** The cached records, and whether the cache was ever filled from a listing (a host that never reached etcd has none). */
  cached(): { listed: boolean; records: InstanceRecord[]; revision: number | undefined } {
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = 'listed'").get() as { value: string } | undefined;
    const rows = this.#db.prepare('SELECT record FROM own').all() as { record: string }[];
    // `revision`: etcd's revision when this host last listed it (or stopped); undefined if a flickd before it wrote a date.
    const revision = row && /^\d+$/.test(row.value) ? Number(row.value) : undefined;
    return { listed: row !== undefined, records: rows.map((r) => JSON.parse(r.record) as InstanceRecord), revision };
  }

  /** Notes that the cache now reflects a listing of etcd, at etcd revision `revision` (or the revision it had reached at a stop); `gone`: cached ids the listing no longer gave this host. */
  markListed(revision: number, gone: readonly string[] = []): void {
    if (this.#closed) return;
    for (const id of gone) this.#cacheDelete.run(id);
    this.#db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('listed', ?)").run(String(revision));
  }

  #flushCache(): void {
    if (this.#closed || this.#cacheBatch.size === 0) return;
    const batch = [...this.#cacheBatch];
    this.#cacheBatch.clear();
    this.#db.transaction(() => {
      for (const [id, record] of batch) {
        if (record === null) this.#cacheDelete.run(id);
        else this.#cachePut.run(id, JSON.stringify(record));
      }
    })();
  }

  /** Writes the cache's last batch and closes; safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#flushCache();
    this.#closed = true;
    this.#db.close();
  }
}
