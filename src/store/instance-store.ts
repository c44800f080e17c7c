// The instance store: SQLite (better-sqlite3, WAL) holding one versioned JSON
// record per instance, with the network slot its live VM holds (if any; slots
// are handed out by src/network's pool, the UNIQUE column keeps two records
// from naming one). The controller writes every state change here before it
// acts on it, so a flickd killed at any point finds out on restart what it was
// doing.
//
// Reads are served from memory: flickd is the store's only writer (one flickd
// per data dir), so every record is decoded once at open and kept in step by
// each write, after its transaction commits. The proxy asks for an instance's
// record on every request; a SQLite round trip and a JSON parse there cost
// more than the forwarding itself. Records handed out are frozen: a caller that
// wants a change writes it with update().
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
  readonly #byId = new Map<string, InstanceRecord>();
  readonly #idByName = new Map<string, string>();
  /** How many records name each shared template: removing one of 10,000 instances asks "is it still used?". */
  readonly #templateUsers = new Map<string, number>();
  readonly #insert: Database.Statement;
  readonly #update: Database.Statement;
  readonly #delete: Database.Statement;
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
    this.#insert = db.prepare('INSERT INTO instances (id, name, state, network_index, version, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.#update = db.prepare('UPDATE instances SET name = ?, state = ?, network_index = ?, data = ? WHERE id = ?');
    this.#delete = db.prepare('DELETE FROM instances WHERE id = ?');
    for (const row of db.prepare('SELECT * FROM instances ORDER BY created_at, id').all() as Row[]) this.#remember(decode(row));
  }

  #remember(record: InstanceRecord): InstanceRecord {
    const frozen = Object.freeze(record);
    const previous = this.#byId.get(record.id);
    if (previous && previous.name !== record.name) this.#idByName.delete(previous.name);
    this.#countTemplate(previous, -1);
    this.#countTemplate(frozen, 1);
    this.#byId.set(record.id, frozen);
    this.#idByName.set(record.name, record.id);
    return frozen;
  }

  /** Inserts a new record; NAME_TAKEN if the name is in use. */
  insert(record: InstanceRecord): void {
    if (this.#idByName.has(record.name)) {
      throw new StoreError('NAME_TAKEN', `an instance named "${record.name}" already exists: pick another --name or remove it with 'flick rm ${record.name}'`, {
        kind: 'user',
      });
    }
    // The UNIQUE name column still guards the table itself.
    this.#insert.run(record.id, record.name, record.state, record.networkIndex, record.version, JSON.stringify(record), record.createdAt);
    this.#remember({ ...record });
  }

  get(id: string): InstanceRecord | undefined {
    return this.#byId.get(id);
  }

  getByName(name: string): InstanceRecord | undefined {
    const id = this.#idByName.get(name);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  /** Every record, oldest first. */
  list(): InstanceRecord[] {
    return [...this.#byId.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Applies `patch` to the stored record and returns the new record; `updatedAt` is set here. */
  update(id: string, patch: Partial<Omit<InstanceRecord, 'id' | 'version' | 'createdAt'>>): InstanceRecord {
    const current = this.#byId.get(id);
    if (current === undefined) throw new StoreError('RECORD_NOT_FOUND', `instance ${id} is not in the store`);
    const next: InstanceRecord = { ...current, ...patch, updatedAt: new Date().toISOString() };
    if (next.name !== current.name && this.#idByName.has(next.name)) {
      throw new StoreError('NAME_TAKEN', `an instance named "${next.name}" already exists: pick another name`, { kind: 'user' });
    }
    // On disk first; memory only once the write is durable.
    this.#update.run(next.name, next.state, next.networkIndex, JSON.stringify(next), id);
    return this.#remember(next);
  }

  delete(id: string): boolean {
    const changed = this.#delete.run(id).changes > 0;
    const current = this.#byId.get(id);
    if (current) {
      this.#byId.delete(id);
      this.#idByName.delete(current.name);
      this.#countTemplate(current, -1);
    }
    return changed;
  }

  /** Whether any record names the shared template in `dir`. */
  usesTemplate(dir: string): boolean {
    return (this.#templateUsers.get(dir) ?? 0) > 0;
  }

  #countTemplate(record: InstanceRecord | undefined, delta: 1 | -1): void {
    const dir = record?.snapshots.template?.dir;
    if (dir === undefined) return;
    const n = (this.#templateUsers.get(dir) ?? 0) + delta;
    if (n > 0) this.#templateUsers.set(dir, n);
    else this.#templateUsers.delete(dir);
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
