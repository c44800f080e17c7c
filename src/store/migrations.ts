// Schema migrations, applied in order inside one transaction each. A migration
// is never edited once released: add a new one at the end. `schema_version`
// holds the number of migrations applied.
import type Database from 'better-sqlite3';
import { StoreError } from './store-error.js';

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
];

/** Brings the schema up to date; refuses a database written by a newer Flick. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
  if (row === undefined) db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
  const current = row?.version ?? 0;
  if (current > migrations.length) {
    throw new StoreError(
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
