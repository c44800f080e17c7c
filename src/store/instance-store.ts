// The instance store: SQLite (better-sqlite3, WAL) holding one versioned JSON
// record per instance, with the network slot its live VM holds (if any; slots
// are handed out by src/network's pool, the UNIQUE column keeps two records
// from naming one). The controller writes every state change here before it
// acts on it, so a flickd killed at any point finds out on restart what it was
// doing.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { INSTANCE_RECORD_VERSION, type InstanceRecord } from './instance-record.js';
import { migrate } from './migrations.js';
import { StoreError } from './store-error.js';

interface Row {
  id: string;
  name: string;
  state: string;
  network_index: number | null;
  version: number;
  data: string;
}

export class InstanceStore {
  readonly #db: Database.Database;
  #closed = false;

  /** Opens (creating if needed) `<dataDir>/state.db`; use ':memory:' as file for tests. */
  static open(file: string): InstanceStore {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      // FULL: a state change is on disk before the controller acts on it.
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      migrate(db);
    } catch (err) {
      db.close();
      throw err;
    }
    return new InstanceStore(db);
  }

  private constructor(db: Database.Database) {
    this.#db = db;
  }

  /** Inserts a new record; NAME_TAKEN if the name is in use (checked in the same transaction). */
  insert(record: InstanceRecord): void {
    this.#db.transaction(() => {
      if (this.getByName(record.name) !== undefined) {
        throw new StoreError('NAME_TAKEN', `an instance named "${record.name}" already exists: pick another --name or remove it with 'flick rm ${record.name}'`, {
          kind: 'user',
        });
      }
      this.#db
        .prepare('INSERT INTO instances (id, name, state, network_index, version, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(record.id, record.name, record.state, record.networkIndex, record.version, JSON.stringify(record), record.createdAt);
    })();
  }

  get(id: string): InstanceRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM instances WHERE id = ?').get(id) as Row | undefined;
    return row && decode(row);
  }

  getByName(name: string): InstanceRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM instances WHERE name = ?').get(name) as Row | undefined;
    return row && decode(row);
  }

  list(): InstanceRecord[] {
    const rows = this.#db.prepare('SELECT * FROM instances ORDER BY created_at, id').all() as Row[];
    return rows.map(decode);
  }

  /** Applies `patch` to the stored record and returns the new record; `updatedAt` is set here. */
  update(id: string, patch: Partial<Omit<InstanceRecord, 'id' | 'version' | 'createdAt'>>): InstanceRecord {
    return this.#db.transaction(() => {
      const current = this.get(id);
      if (current === undefined) throw new StoreError('NOT_FOUND', `instance ${id} is not in the store`);
      const next: InstanceRecord = { ...current, ...patch, updatedAt: new Date().toISOString() };
      this.#db
        .prepare('UPDATE instances SET name = ?, state = ?, network_index = ?, data = ? WHERE id = ?')
        .run(next.name, next.state, next.networkIndex, JSON.stringify(next), id);
      return next;
    })();
  }

  delete(id: string): boolean {
    return this.#db.prepare('DELETE FROM instances WHERE id = ?').run(id).changes > 0;
  }

  /** Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

function decode(row: Row): InstanceRecord {
  if (row.version !== INSTANCE_RECORD_VERSION) {
    throw new StoreError('CORRUPT_RECORD', `instance ${row.id} has record version ${row.version}, this flickd reads ${INSTANCE_RECORD_VERSION}: run a matching flickd`);
  }
  try {
    return JSON.parse(row.data) as InstanceRecord;
  } catch (cause) {
    throw new StoreError('CORRUPT_RECORD', `instance ${row.id}'s record is not valid JSON: remove it or restore the data dir from a backup`, { cause });
  }
}
