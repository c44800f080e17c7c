// A cluster host's journal of status writes not yet published to etcd: a small
// SQLite file (WAL, synchronous=FULL) in the host's data dir, one row per
// record (its latest status write wins: publishing is of the newest status, in
// order, never an older one after a newer). A status write is here, on disk,
// before StateStore.updateStatus returns; a row leaves once etcd holds that
// write (or the record is gone or another host's). A flickd killed meanwhile
// publishes what it finds here when it opens again.
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
  #seq: number;
  #closed = false;

  /** Opens (creating if needed) the journal at `file`; ':memory:' keeps it in memory (tests). */
  constructor(file: string) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.exec('CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL)');
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

  /** Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
