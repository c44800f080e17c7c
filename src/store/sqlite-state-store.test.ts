import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStateStore } from './sqlite-state-store.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { newRecord, stateStoreContract } from '../controller/state/contract.js';
import { MIGRATIONS, migrate } from './migrations.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-store-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const record = newRecord;

// What every backend promises (controller/state/contract.ts); below, what only SQLite does.
stateStoreContract({ name: 'sqlite', open: () => Promise.resolve(SqliteStateStore.open(':memory:')), claimedAway: 'visible' });

test('records survive closing and reopening the database, with their revisions', async () => {
  const file = path.join(tmp, 'persist', 'state.db');
  const a = SqliteStateStore.open(file);
  const created = await a.create(record('i-1', 'web'));
  assert.equal(created.owner, 'local');
  const running = a.updateStatus('i-1', created.revision, { state: 'running', pid: 42 });
  assert.ok(running.revision > created.revision);
  await a.close();
  await a.close(); // twice is fine
  const b = SqliteStateStore.open(file);
  const got = b.getByName('web');
  assert.equal(got?.status.state, 'running');
  assert.equal(got?.status.pid, 42);
  assert.equal(got?.revision, running.revision);
  assert.deepEqual(b.list().map((r) => r.id), ['i-1']);
  // The store-wide revision goes on from where it was: a new write is above every old one.
  assert.ok((await b.create(record('i-2'))).revision > running.revision);
  await b.close();
});

test('two records never name one network slot', async () => {
  const s = SqliteStateStore.open(':memory:');
  for (const id of ['a', 'b']) await s.create(record(id));
  const at = (id: string) => s.get(id)!.revision;
  s.updateStatus('a', at('a'), { networkIndex: 3 });
  assert.throws(() => s.updateStatus('b', at('b'), { networkIndex: 3 }), /UNIQUE/);
  s.updateStatus('a', at('a'), { networkIndex: null });
  assert.equal(s.updateStatus('b', at('b'), { networkIndex: 3 }).status.networkIndex, 3);
  await s.close();
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
  assert.ok(MIGRATIONS.length >= 2);
});

test('the database uses WAL', async () => {
  const file = path.join(tmp, 'wal', 'state.db');
  const s = SqliteStateStore.open(file);
  await s.close();
  const db = new Database(file);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});

test('a database written by the previous flickd (schema 1, flat version-1 records) opens with every field carried over', async () => {
  const file = path.join(tmp, 'v1', 'state.db');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // The previous version's schema and records, byte for byte what it wrote (its migration 1).
  const old = new Database(file);
  old.exec(`
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version (version) VALUES (1);
    CREATE TABLE instances (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      state TEXT NOT NULL,
      network_index INTEGER UNIQUE,
      version INTEGER NOT NULL,
      data TEXT NOT NULL,
      created_at TEXT NOT NULL
    );
  `);
  const vm = {
    id: 'a1b2c3',
    runDir: '/data/instances/a1b2c3/run',
    kernel: '/cache/vmlinux',
    initrd: '/cache/initrd',
    rootfs: '/cache/rootfs.erofs',
    memoryMb: 256,
    vcpus: 2,
    guest: { argv: ['/usr/bin/node', 'server.js'], env: ['PORT=8080'], cwd: '/app', uid: 1000, gid: 1000, hostname: 'hello-node' },
    network: { netns: 'flk-n3', tap: 'tap0', guestMac: '52:54:00:f1:1c:02', guestIp: '172.31.255.2', gatewayIp: '172.31.255.1', prefixLength: 30, hostReachableIp: '10.210.0.13' },
  };
  const snap = (dir: string) => ({ dir, stateFile: `${dir}/state`, memoryFile: `${dir}/mem`, memoryMb: 256, vcpus: 2, createdAt: '2026-11-30T10:00:01.000Z' });
  const v1Running = {
    version: 1,
    id: 'a1b2c3',
    name: 'web',
    image: { ref: 'hello-node:latest', digest: 'sha256:feed' },
    args: ['server.js'],
    env: { PORT: '8080' },
    memoryMb: 256,
    vcpus: 2,
    service: { http: { hostname: 'web.localhost', guestPort: 8080 }, tcp: [{ hostPort: 5432, guestPort: 5432 }] },
    autostart: true,
    restartPolicy: 'on-failure',
    scaleToZero: { policy: 'idle', cooldownTimeMs: 30000, stateful: true },
    volumes: [{ name: 'pgdata', path: '/var/lib/postgresql', readOnly: false }],
    state: 'standby',
    error: 'the VM exited unexpectedly with code 1',
    networkIndex: 3,
    pid: 4242,
    vm,
    dir: '/data/instances/a1b2c3',
    snapshots: { template: snap('/data/templates/k1'), own: snap('/data/instances/a1b2c3/snapshots/own') },
    standbyTier: 'hot',
    counters: { boots: 2, wakes: 7, restarts: 1, wakesHot: 5, wakesCold: 2 },
    lastExitCode: 1,
    createdAt: '2026-11-30T10:00:00.000Z',
    updatedAt: '2026-11-30T11:00:00.000Z',
    startedAt: '2026-11-30T10:00:02.000Z',
    stoppedAt: '2026-11-30T10:30:00.000Z',
  };
  // A record from before tiers and volumes: its optional fields are absent and must stay so.
  const v1Stopped = {
    version: 1,
    id: 'd4e5f6',
    name: 'old',
    image: { ref: 'hello:1', digest: 'sha256:beef' },
    args: [],
    env: {},
    memoryMb: 128,
    vcpus: 1,
    service: { tcp: [] },
    autostart: false,
    restartPolicy: 'never',
    scaleToZero: { policy: 'off', cooldownTimeMs: 1000, stateful: false },
    state: 'stopped',
    networkIndex: null,
    pid: null,
    vm: null,
    dir: '/data/instances/d4e5f6',
    snapshots: {},
    counters: { boots: 0, wakes: 0, restarts: 0 },
    lastExitCode: null,
    createdAt: '2026-11-29T09:00:00.000Z',
    updatedAt: '2026-11-29T09:00:00.000Z',
    startedAt: null,
    stoppedAt: null,
  };
  const insert = old.prepare('INSERT INTO instances (id, name, state, network_index, version, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  for (const r of [v1Running, v1Stopped]) insert.run(r.id, r.name, r.state, r.networkIndex, r.version, JSON.stringify(r), r.createdAt);
  old.close();

  const s = SqliteStateStore.open(file);
  const [first, second] = s.list();
  const expectRunning: InstanceRecord = {
    version: 2,
    id: 'a1b2c3',
    name: 'web',
    createdAt: '2026-11-30T10:00:00.000Z',
    updatedAt: '2026-11-30T11:00:00.000Z',
    owner: 'local',
    revision: 2,
    spec: {
      image: { ref: 'hello-node:latest', digest: 'sha256:feed' },
      args: ['server.js'],
      env: { PORT: '8080' },
      memoryMb: 256,
      vcpus: 2,
      service: { http: { hostname: 'web.localhost', guestPort: 8080 }, tcp: [{ hostPort: 5432, guestPort: 5432 }] },
      autostart: true,
      restartPolicy: 'on-failure',
      scaleToZero: { policy: 'idle', cooldownTimeMs: 30000, stateful: true },
      volumes: [{ name: 'pgdata', path: '/var/lib/postgresql', readOnly: false }],
    },
    status: {
      state: 'standby',
      error: 'the VM exited unexpectedly with code 1',
      networkIndex: 3,
      pid: 4242,
      vm,
      dir: '/data/instances/a1b2c3',
      snapshots: { template: snap('/data/templates/k1'), own: snap('/data/instances/a1b2c3/snapshots/own') },
      standbyTier: 'hot',
      counters: { boots: 2, wakes: 7, restarts: 1, wakesHot: 5, wakesCold: 2 },
      lastExitCode: 1,
      startedAt: '2026-11-30T10:00:02.000Z',
      stoppedAt: '2026-11-30T10:30:00.000Z',
    },
  };
  // Oldest first: the stopped one was created a day earlier (revision 1).
  assert.deepEqual(second, expectRunning);
  assert.deepEqual(first, {
    version: 2,
    id: 'd4e5f6',
    name: 'old',
    createdAt: '2026-11-29T09:00:00.000Z',
    updatedAt: '2026-11-29T09:00:00.000Z',
    owner: 'local',
    revision: 1,
    spec: { image: { ref: 'hello:1', digest: 'sha256:beef' }, args: [], env: {}, memoryMb: 128, vcpus: 1, service: { tcp: [] }, autostart: false, restartPolicy: 'never', scaleToZero: { policy: 'off', cooldownTimeMs: 1000, stateful: false } },
    status: { state: 'stopped', networkIndex: null, pid: null, vm: null, dir: '/data/instances/d4e5f6', snapshots: {}, counters: { boots: 0, wakes: 0, restarts: 0 }, lastExitCode: null, startedAt: null, stoppedAt: null },
  });
  assert.ok(!('standbyTier' in first!.status) && !('error' in first!.status) && !('volumes' in first!.spec), 'absent stays absent');
  // The lookups the proxy and the controller use, and writes fenced on the carried-over revisions.
  assert.equal(s.getByName('web')?.id, 'a1b2c3');
  assert.equal(s.usesTemplate('/data/templates/k1'), true);
  assert.equal(s.updateStatus('a1b2c3', 2, { state: 'starting' }).revision, 3);
  assert.throws(() => s.updateStatus('a1b2c3', 2, { state: 'failed' }), (err: any) => err.code === 'STALE_REVISION');
  await s.close();
  // The columns agree with the documents, and the schema is the current one.
  const db = new Database(file);
  assert.deepEqual(db.prepare('SELECT id, state, network_index, version, revision, owner FROM instances ORDER BY id').all(), [
    { id: 'a1b2c3', state: 'starting', network_index: 3, version: 2, revision: 3, owner: 'local' },
    { id: 'd4e5f6', state: 'stopped', network_index: null, version: 2, revision: 1, owner: 'local' },
  ]);
  assert.equal((db.prepare('SELECT version FROM schema_version').get() as { version: number }).version, MIGRATIONS.length);
  db.close();
});
