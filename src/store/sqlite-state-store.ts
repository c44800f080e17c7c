// The embedded state store: SQLite (better-sqlite3, WAL, synchronous=FULL)
// behind the controller's state seam (controller/state/state-store.ts). One row
// per instance: the record as one versioned JSON document ({spec, status}, the
// `data` column) beside the columns the store queries or guards by (name,
// state, network slot, revision, owner). The network slot's UNIQUE column keeps
// two records from naming one slot. Every write is durable before it returns:
// the controller writes a state change here before it acts on it, so a flickd
// killed at any point finds out on restart what it was doing.
//
// Revisions: one store-wide counter (the `state_revision` row), bumped in the
// same transaction as each write; a record's `revision` is the counter at its
// last write, like etcd's mod_revision. Every update names the revision it
// read (`WHERE revision = ?`) and fails with STALE_REVISION otherwise.
//
// Reads come from the in-memory read model (read-model.ts), fed by this
// store's own commits: flickd is the only writer of its data dir, and the
// proxy asks for an instance's record on every request. Shared writes
// (create, spec, ownership, remove) are async by the seam's contract but
// commit synchronously here; they resolve once the read model holds them.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { InstanceRecord, InstanceSpec, InstanceStatus, NewInstanceRecord } from '../controller/state/instance-record.js';
import { ModelReads, ReadModel, expectRevision } from '../controller/state/read-model.js';
import { StateError, type StateStore } from '../controller/state/state-store.js';
import { migrate } from './migrations.js';
import { decodeRecord, type InstanceRow } from './records.js';

/** The owner a single host writes as. */
export const LOCAL_HOST = 'local';

export class SqliteStateStore extends ModelReads implements StateStore {
  readonly hostId: string;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #update: Database.Statement;
  readonly #delete: Database.Statement;
  readonly #bump: Database.Statement;
  #revision: number;
  #closed = false;

  /** Opens (creating if needed, migrating if older) `<dataDir>/state.db`; use ':memory:' as file for tests. */
  static open(file: string, opts: { hostId?: string } = {}): SqliteStateStore {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      // FULL: a state change is on disk before the controller acts on it.
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      migrate(db);
      return new SqliteStateStore(db, opts.hostId ?? LOCAL_HOST);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(db: Database.Database, hostId: string) {
    super(new ReadModel());
    this.#db = db;
    this.hostId = hostId;
    this.#insert = db.prepare('INSERT INTO instances (id, name, state, network_index, version, data, created_at, revision, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.#update = db.prepare('UPDATE instances SET state = ?, network_index = ?, data = ?, revision = ?, owner = ? WHERE id = ? AND revision = ?');
    this.#delete = db.prepare('DELETE FROM instances WHERE id = ? AND revision = ?');
    this.#bump = db.prepare('UPDATE state_revision SET revision = ?');
    this.#revision = (db.prepare('SELECT revision FROM state_revision').get() as { revision: number }).revision;
    const rows = db.prepare('SELECT * FROM instances ORDER BY created_at, id').all() as InstanceRow[];
    this.model.reset({ revision: this.#revision, records: rows.map(decodeRecord) });
  }

  // ---- writes ----

  create(record: NewInstanceRecord): Promise<InstanceRecord> {
    try {
      if (this.model.getByName(record.name) !== undefined) {
        throw new StateError('NAME_TAKEN', `an instance named "${record.name}" already exists: pick another --name or remove it with 'flick rm ${record.name}'`, { kind: 'user' });
      }
      const next: InstanceRecord = { ...record, owner: this.hostId, revision: this.#revision + 1, updatedAt: record.createdAt };
      // The UNIQUE name column still guards the table itself.
      this.#commit(next.revision, () => this.#insert.run(next.id, next.name, next.status.state, next.status.networkIndex, next.version, encode(next), next.createdAt, next.revision, next.owner));
      this.model.apply({ type: 'put', record: next });
      return Promise.resolve(this.model.get(next.id)!);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  updateStatus(id: string, expected: number, patch: Partial<InstanceStatus>): InstanceRecord {
    const current = expectRevision(this.model, id, expected);
    if (current.owner !== this.hostId) {
      throw new StateError('NOT_OWNER', `instance "${current.name}" is owned by host ${current.owner}, not this one (${this.hostId}): only its owner changes its status`);
    }
    return this.#put(current, { ...current, status: { ...current.status, ...patch } });
  }

  updateSpec(id: string, expected: number, patch: Partial<InstanceSpec>): Promise<InstanceRecord> {
    try {
      const current = expectRevision(this.model, id, expected);
      return Promise.resolve(this.#put(current, { ...current, spec: { ...current.spec, ...patch } }));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  claim(id: string, expected: number, owner: string, status?: InstanceStatus): Promise<InstanceRecord> {
    try {
      const current = expectRevision(this.model, id, expected);
      return Promise.resolve(this.#put(current, { ...current, owner, ...(status ? { status } : {}) }));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  remove(id: string, expected: number): Promise<boolean> {
    try {
      if (this.model.get(id) === undefined) return Promise.resolve(false);
      expectRevision(this.model, id, expected);
      const revision = this.#revision + 1;
      this.#commit(revision, () => this.#delete.run(id, expected));
      this.model.apply({ type: 'delete', id, revision });
      return Promise.resolve(true);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Safe to call twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.close();
    }
    return Promise.resolve();
  }

  /** Writes `next` over `current` (fenced on its revision), then the read model. */
  #put(current: InstanceRecord, next: Omit<InstanceRecord, 'revision' | 'updatedAt'>): InstanceRecord {
    const record: InstanceRecord = { ...next, revision: this.#revision + 1, updatedAt: new Date().toISOString() };
    // On disk first; memory only once the write is durable.
    this.#commit(record.revision, () => {
      const r = this.#update.run(record.status.state, record.status.networkIndex, encode(record), record.revision, record.owner, record.id, current.revision);
      if (r.changes !== 1) throw new StateError('STALE_REVISION', `instance "${current.name}" changed on disk meanwhile: read it again and retry`);
    });
    this.model.apply({ type: 'put', record });
    return this.model.get(record.id)!;
  }

  /** One transaction: `write`, and the store's revision moved to `revision`. */
  #commit(revision: number, write: () => void): void {
    this.#db.transaction(() => {
      write();
      this.#bump.run(revision);
    })();
    this.#revision = revision;
  }
}

function encode(record: InstanceRecord): string {
  return JSON.stringify(record);
}
