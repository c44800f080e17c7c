// Schema migrations, applied in order inside one transaction each. A migration
// is never edited once released: add a new one at the end. `schema_version`
// holds the number of migrations applied.
import type Database from 'better-sqlite3';
import { StateError } from '../controller/state/state-store.js';
import { upgradeRecordV1, type InstanceRecordV1 } from './records.js';

/** Who owns the records a single-host database held before ownership existed. */
const LEGACY_OWNER = 'local';

export interface Migration {
  name: string;
  up(db: Database.Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    name: 'instances',
    up(db) {
      db.exec(`
        CREATE TABLE instances (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          state TEXT NOT NULL,
          -- NULL while the instance holds no address; UNIQUE makes allocation race-free.
          network_index INTEGER UNIQUE,
          version INTEGER NOT NULL,
          data TEXT NOT NULL,
          created_at TEXT NOT NULL
        );
      `);
    },
  },
  {
    // The state seam: each record split into spec and status (record version 2), a revision per
    // record from one store-wide counter (fenced writes), and an owner (the host that acts on it).
    name: 'spec-status-revision-owner',
    up(db) {
      db.exec(`
        ALTER TABLE instances ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE instances ADD COLUMN owner TEXT NOT NULL DEFAULT '${LEGACY_OWNER}';
        CREATE TABLE state_revision (revision INTEGER NOT NULL);
      `);
      const rows = db.prepare('SELECT id, version, data FROM instances ORDER BY created_at, id').all() as { id: string; version: number; data: string }[];
      const update = db.prepare('UPDATE instances SET version = ?, data = ?, revision = ? WHERE id = ?');
      let revision = 0;
      for (const row of rows) {
        if (row.version !== 1) throw new StateError('CORRUPT_RECORD', `instance ${row.id} has record version ${row.version} in a version-1 database: restore the data dir from a backup`);
        let old: InstanceRecordV1;
        try {
          old = JSON.parse(row.data) as InstanceRecordV1;
        } catch (cause) {
          throw new StateError('CORRUPT_RECORD', `instance ${row.id}'s record is not valid JSON: remove it or restore the data dir from a backup`, { cause });
        }
        const next = upgradeRecordV1(old, ++revision, LEGACY_OWNER);
        update.run(next.version, JSON.stringify(next), next.revision, row.id);
      }
      db.prepare('INSERT INTO state_revision (revision) VALUES (?)').run(revision);
    },
  },
];

/** Brings the schema up to date; refuses a database written by a newer Flick. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
  if (row === undefined) db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
  const current = row?.version ?? 0;
  if (current > migrations.length) {
    throw new StateError(
      'SCHEMA_TOO_NEW',
      `the state database has schema version ${current} but this flickd knows ${migrations.length}: run a newer flickd or move the data dir aside`,
    );
  }
  for (let v = current; v < migrations.length; v++) {
    const m = migrations[v]!;
    db.transaction(() => {
      m.up(db);
      db.prepare('UPDATE schema_version SET version = ?').run(v + 1);
    })();
  }
  return migrations.length;
}
