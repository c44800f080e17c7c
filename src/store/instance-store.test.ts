import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { InstanceStore } from './instance-store.js';
import type { InstanceRecord } from './instance-record.js';
import { testRecord } from './testing.js';
import { MIGRATIONS, migrate } from './migrations.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-store-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function record(id: string, name = id): InstanceRecord {
  return testRecord(name, { id, dir: `/nonexistent/${id}` });
}

test('records survive closing and reopening the database', () => {
  const file = path.join(tmp, 'persist', 'state.db');
  const a = InstanceStore.open(file);
  a.insert(record('i-1', 'web'));
  a.update('i-1', { state: 'running', pid: 42 });
  a.close();
  a.close(); // twice is fine
  const b = InstanceStore.open(file);
  const got = b.getByName('web');
  assert.equal(got?.state, 'running');
  assert.equal(got?.pid, 42);
  assert.deepEqual(b.list().map((r) => r.id), ['i-1']);
  b.close();
});

test('a duplicate name is refused with NAME_TAKEN and says what to do', () => {
  const s = InstanceStore.open(':memory:');
  s.insert(record('i-1', 'web'));
  assert.throws(() => s.insert(record('i-2', 'web')), (err: any) => err.code === 'NAME_TAKEN' && err.kind === 'user' && /flick rm web/.test(err.message));
  assert.equal(s.list().length, 1);
  s.close();
});

test('two records never name one network slot', () => {
  const s = InstanceStore.open(':memory:');
  for (const id of ['a', 'b']) s.insert(record(id));
  s.update('a', { networkIndex: 3 });
  assert.throws(() => s.update('b', { networkIndex: 3 }), /UNIQUE/);
  s.update('a', { networkIndex: null });
  assert.equal(s.update('b', { networkIndex: 3 }).networkIndex, 3);
  s.close();
});

test('usesTemplate follows inserts, updates and deletes', () => {
  const s = InstanceStore.open(':memory:');
  const t = { dir: '/t/a', stateFile: '/t/a/state', memoryFile: '/t/a/mem', memoryMb: 128, vcpus: 1, createdAt: '' };
  s.insert({ ...record('a'), snapshots: { template: t } });
  s.insert(record('b'));
  s.update('b', { snapshots: { template: t } });
  assert.equal(s.usesTemplate('/t/a'), true);
  s.delete('a');
  assert.equal(s.usesTemplate('/t/a'), true, 'b still names it');
  s.update('b', { snapshots: {} });
  assert.equal(s.usesTemplate('/t/a'), false);
  assert.equal(s.usesTemplate('/t/other'), false);
  s.close();
});

test('update of an unknown id fails with RECORD_NOT_FOUND (a system error, not a 404); delete reports whether it removed', () => {
  const s = InstanceStore.open(':memory:');
  assert.throws(() => s.update('nope', { state: 'running' }), (err: any) => err.code === 'RECORD_NOT_FOUND' && err.kind === 'system');
  s.insert(record('x'));
  assert.equal(s.delete('x'), true);
  assert.equal(s.delete('x'), false);
  s.close();
});

test('migrations run once, in order, and a newer schema is refused', () => {
  const db = new Database(':memory:');
  const applied: string[] = [];
  const ms = [
    { name: 'one', up: () => applied.push('one') },
    { name: 'two', up: () => applied.push('two') },
  ];
  assert.equal(migrate(db, ms.slice(0, 1)), 1);
  assert.equal(migrate(db, ms), 2);
  assert.equal(migrate(db, ms), 2);
  assert.deepEqual(applied, ['one', 'two']);
  assert.throws(() => migrate(db, ms.slice(0, 1)), (err: any) => err.code === 'SCHEMA_TOO_NEW');
  db.close();
  assert.ok(MIGRATIONS.length >= 1);
});

test('the database uses WAL', () => {
  const file = path.join(tmp, 'wal', 'state.db');
  const s = InstanceStore.open(file);
  s.close();
  const db = new Database(file);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});
