// Integration test: the state seam's etcd backend (src/cluster/etcd-state-store.ts)
// against a real etcd (one member, started here, removed at the end; no VM).
// First the StateStore contract every backend runs (controller/state/contract.ts),
// with and without a lease fence; then what only a cluster has: two hosts on one
// etcd, a claim that moves a record, a host whose lease lapsed, a watch whose
// history was compacted under it, etcd stopped and started again, and a host's
// state.db imported into etcd.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { EtcdClient } from '../src/cluster/etcd-client.js';
import { startEtcdCluster, startRelay, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { EtcdStateStore, type EtcdStateStoreConfig } from '../src/cluster/etcd-state-store.js';
import { decodeRecord, recordKey } from '../src/cluster/etcd-state-feed.js';
import { aliveKey } from '../src/cluster/membership.js';
import { newRecord, stateStoreContract } from '../src/controller/state/contract.js';
import type { StateChange } from '../src/controller/state/state-store.js';
import { until } from '../src/daemon/testing.js';
import { importSqliteState, openClusterState } from '../src/cluster/state-import.js';
import { SqliteStateStore } from '../src/store/sqlite-state-store.js';
import { StatusJournal } from '../src/cluster/status-journal.js';

let etcd: EtcdCluster;
let client: EtcdClient;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-etcd-state-'));
let scopes = 0;
const stores: EtcdStateStore[] = [];

before(async () => {
  etcd = await startEtcdCluster({ size: 1 });
  // Short per-call bounds: the etcd-down case waits for them.
  client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 1500 });
});
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await client?.close();
  await etcd?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh key prefix: each case starts from an empty cluster state. */
const scope = () => `/flick-test/${process.pid}/${++scopes}/`;

async function open(config: Partial<EtcdStateStoreConfig> & { prefix: string; hostId: string }): Promise<EtcdStateStore> {
  const s = await EtcdStateStore.open({ etcd: client, journalFile: ':memory:', retryMs: 100, ...config });
  stores.push(s);
  return s;
}

/** A host's lease and its liveness key under it, as membership.ts registers them. */
async function register(prefix: string, host: string): Promise<{ lease: () => string; id: string }> {
  const { id } = await client.leaseGrant(30);
  await client.put(aliveKey(prefix, host), '{}', { lease: id });
  return { lease: () => id, id };
}

/** The record `id` as etcd holds it now. */
async function inEtcd(prefix: string, id: string) {
  const kv = await client.get(recordKey(prefix, id));
  return kv && decodeRecord(kv);
}

stateStoreContract({ name: 'etcd', open: () => EtcdStateStore.open({ etcd: client, hostId: 'h-one', prefix: scope(), journalFile: ':memory:' }), claimedAway: 'leaves' });
stateStoreContract({
  name: 'etcd, lease-fenced',
  open: async () => {
    const prefix = scope();
    return EtcdStateStore.open({ etcd: client, hostId: 'h-one', prefix, journalFile: ':memory:', lease: (await register(prefix, 'h-one')).lease });
  },
  claimedAway: 'leaves',
});

test('two hosts on one etcd: a name is unique across them; a claim moves a record, and it leaves the old owner\'s reads', async () => {
  const prefix = scope();
  const a = await open({ prefix, hostId: 'h-a', lease: (await register(prefix, 'h-a')).lease });
  const b = await open({ prefix, hostId: 'h-b', lease: (await register(prefix, 'h-b')).lease });
  const leftA: string[] = [];
  a.subscribe((c: StateChange) => c.type === 'delete' && leftA.push(c.id));

  const web = await a.create(newRecord('x', 'web'));
  await assert.rejects(b.create(newRecord('y', 'web')), (err: any) => err.code === 'NAME_TAKEN' && err.kind === 'user' && /flick rm web/.test(err.message));
  assert.equal(b.get('x'), undefined, 'a host reads only its own records');
  assert.deepEqual(b.list(), []);
  const seen = await until('h-b to see h-a\'s record in the cluster view', async () => b.cluster.get('x'), 5000);
  assert.equal(seen.owner, 'h-a');

  // h-a's status write reaches etcd behind the call.
  a.updateStatus('x', web.revision, { state: 'running', pid: 4242 });
  await until('h-a\'s status in etcd', async () => ((await inEtcd(prefix, 'x'))?.status.pid === 4242 ? true : undefined), 5000);

  // h-b takes it over (as a failover would), fenced on the revision it read.
  const at = await until('h-b\'s view of the published status', async () => (b.cluster.get('x')?.status.pid === 4242 ? b.cluster.get('x') : undefined), 5000);
  await assert.rejects(b.claim('x', at.revision - 1, 'h-b'), (err: any) => err.code === 'STALE_REVISION');
  const moved = await b.claim('x', at.revision, 'h-b');
  assert.equal(moved.owner, 'h-b');
  assert.equal(b.get('x')?.owner, 'h-b', 'the claimer reads it at once');
  assert.equal(b.get('x')?.status.pid, 4242, 'with the status it had');
  await until('the record to leave h-a\'s reads', async () => (a.get('x') === undefined ? true : undefined), 5000);
  assert.deepEqual(leftA, ['x'], 'h-a\'s subscribers saw it leave');
  assert.throws(() => a.updateStatus('x', web.revision, { state: 'stopped' }), (err: any) => err.code === 'RECORD_NOT_FOUND');
  await assert.rejects(a.create(newRecord('z', 'web')), (err: any) => err.code === 'NAME_TAKEN', 'the name moved with it');

  // Its new owner writes it; removed there, the name is free for any host.
  const mine = b.updateStatus('x', b.get('x')!.revision, { state: 'stopped', pid: null });
  assert.equal(await b.remove('x', mine.revision), true);
  assert.equal(await inEtcd(prefix, 'x'), undefined);
  assert.equal((await a.create(newRecord('z', 'web'))).owner, 'h-a');
});

test('a host without a lease (not joined yet, or lapsed) writes nothing shared; its status writes wait in its journal and go out once it holds a lease again', async () => {
  const prefix = scope();
  // Before it joins (flickd opens its store and reconciles first), a host has no lease: it writes nothing shared.
  let lease: string | undefined;
  const a = await open({ prefix, hostId: 'h-a', lease: () => lease });
  await assert.rejects(a.create(newRecord('x', 'web')), (err: any) => err.code === 'NOT_OWNER' && /not joined/.test(err.message));
  lease = (await register(prefix, 'h-a')).id;
  const r = await a.create(newRecord('x', 'web'));
  // The lease is gone (revoked here, as etcd does when it lapses): the liveness key with it.
  await client.leaseRevoke(lease!);
  await assert.rejects(a.create(newRecord('y', 'db')), (err: any) => err.code === 'NOT_OWNER' && /lease/.test(err.message));
  await assert.rejects(a.updateSpec('x', r.revision, { memoryMb: 512 }), (err: any) => err.code === 'NOT_OWNER');
  await assert.rejects(a.claim('x', r.revision, 'h-b'), (err: any) => err.code === 'NOT_OWNER');
  await assert.rejects(a.remove('x', r.revision), (err: any) => err.code === 'NOT_OWNER');
  const running = a.updateStatus('x', r.revision, { state: 'running', pid: 7 });
  assert.equal(a.get('x')?.status.pid, 7, 'its own reads have it');
  await new Promise((res) => setTimeout(res, 500));
  assert.equal((await inEtcd(prefix, 'x'))?.status.pid, null, 'not published without a lease');
  assert.equal((await inEtcd(prefix, 'x'))?.spec.memoryMb, 128);
  assert.equal(a.pendingStatus, 1);
  assert.equal(await client.get(recordKey(prefix, 'y')), undefined, 'nothing half-written');

  // Registered again under a new lease (HostLease.onLost): the journal drains.
  lease = (await register(prefix, 'h-a')).id;
  await until('the pending status in etcd', async () => ((await inEtcd(prefix, 'x'))?.status.pid === 7 ? true : undefined), 5000);
  // etcd holds the write a moment before its answer reaches the store, which then clears its journal.
  await until('the journal to drain', async () => (a.pendingStatus === 0 ? true : undefined), 5000);
  assert.equal(a.get('x')?.revision, running.revision, 'publishing does not move the revision this host read');
  assert.equal((await a.updateSpec('x', running.revision, { memoryMb: 512 })).spec.memoryMb, 512);
});

test('a watch whose history was compacted while it was cut off lists again, and loses no delete', async () => {
  const prefix = scope();
  const relay = await startRelay(etcd.endpoints[0]!);
  const viaRelay = new EtcdClient({ endpoints: [relay.url], timeoutMs: 1500 });
  try {
    const a = await open({ prefix, hostId: 'h-a', etcd: viaRelay });
    const b = await open({ prefix, hostId: 'h-b' });
    for (const [id, name] of [['x', 'web'], ['y', 'db'], ['k', 'kept']] as const) await a.create(newRecord(id, name));
    await until('h-b to see h-a\'s records', async () => (b.cluster.get('y') ? true : undefined), 5000);
    const left: string[] = [];
    a.subscribe((c: StateChange) => c.type === 'delete' && left.push(c.id));

    relay.cut();
    // Meanwhile: x is claimed by h-b, y deleted outright, and the history of both compacted away.
    await b.claim('x', b.cluster.get('x')!.revision, 'h-b');
    await client.delete(recordKey(prefix, 'y'));
    const { revision } = await client.range('/', { limit: 1 });
    await client.compact(revision);
    assert.equal(a.get('x')?.owner, 'h-a', 'cut off, h-a still reads what it last knew');
    assert.equal(a.get('y')?.name, 'db');

    relay.heal();
    await until('h-a to list again and drop x and y', async () => (a.get('x') === undefined && a.get('y') === undefined ? true : undefined), 15_000);
    assert.ok(a.feed.resets >= 1, 'the watch was told its start revision was compacted');
    assert.deepEqual(left.sort(), ['x', 'y']);
    assert.equal(a.get('k')?.name, 'kept');
    assert.equal(b.get('x')?.owner, 'h-b');
  } finally {
    await viaRelay.close();
    await relay.close();
  }
});

test('etcd stopped: shared writes fail with STATE_UNAVAILABLE, reads and status writes go on, and are published once etcd is back, by the next flickd too', async () => {
  const prefix = scope();
  const journalFile = path.join(tmp, 'journal', 'status.db');
  const a = await open({ prefix, hostId: 'h-a', journalFile });
  const r = await a.create(newRecord('x', 'web'));
  await a.create(newRecord('w', 'other'));
  const member = etcd.members[0]!;
  await member.kill('SIGTERM');
  try {
    await assert.rejects(a.create(newRecord('y', 'db')), (err: any) => err.code === 'STATE_UNAVAILABLE' && /etcd/.test(err.message) && /keep serving/.test(err.message));
    await assert.rejects(a.updateSpec('x', r.revision, { memoryMb: 512 }), (err: any) => err.code === 'STATE_UNAVAILABLE');
    const started = Date.now();
    const s1 = a.updateStatus('x', r.revision, { state: 'starting' });
    const s2 = a.updateStatus('x', s1.revision, { state: 'running', pid: 99 });
    a.updateStatus('w', a.get('w')!.revision, { state: 'failed', error: 'boom' });
    assert.ok(Date.now() - started < 500, 'status writes do not wait for etcd');
    assert.equal(a.get('x')?.status.state, 'running');
    assert.equal(a.getByName('web')?.revision, s2.revision);
    assert.equal(a.list().length, 2);
  } finally {
    await member.start();
  }
  await until('x\'s newest status in etcd', async () => ((await inEtcd(prefix, 'x'))?.status.pid === 99 ? true : undefined), 15_000);
  assert.equal((await inEtcd(prefix, 'x'))?.status.state, 'running');
  await until('w\'s status in etcd', async () => ((await inEtcd(prefix, 'w'))?.status.error === 'boom' ? true : undefined), 5000);
  await until('the journal to drain', async () => (a.pendingStatus === 0 ? true : undefined), 5000);
  assert.equal((await a.create(newRecord('y', 'db'))).name, 'db', 'shared writes work again');

  // A status write left in the journal by a flickd that stopped before etcd came back is published by the next one.
  await member.kill('SIGTERM');
  try {
    a.updateStatus('x', a.get('x')!.revision, { state: 'standby', pid: null });
    await a.close();
  } finally {
    await member.start();
  }
  const next = await open({ prefix, hostId: 'h-a', journalFile });
  await until('the journal\'s status in etcd', async () => ((await inEtcd(prefix, 'x'))?.status.state === 'standby' ? true : undefined), 10_000);
  assert.equal(next.get('x')?.status.state, 'standby');
  await until('the journal to drain', async () => (next.pendingStatus === 0 ? true : undefined), 5000);
});

test('a host started while etcd is away serves its records as it last knew them, and follows etcd once it answers', async () => {
  const prefix = scope();
  const journalFile = path.join(tmp, 'offline', 'status.db');
  const a = await open({ prefix, hostId: 'h-a', journalFile });
  await a.create(newRecord('x', 'web'));
  await a.create(newRecord('y', 'db'));
  await a.close();
  // Removed while h-a was down (as a removal through another host would), then etcd goes away.
  await client.delete(recordKey(prefix, 'y'));
  const member = etcd.members[0]!;
  await member.kill('SIGTERM');
  // A client that gives up on etcd sooner: each call below waits out its bound.
  const quick = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 500 });
  let back: EtcdStateStore;
  try {
    await assert.rejects(open({ prefix, hostId: 'h-never-listed', journalFile: ':memory:', etcd: quick }), (err: any) => err.code === 'STATE_UNAVAILABLE', 'a host that never listed etcd has nothing to serve');
    back = await open({ prefix, hostId: 'h-a', journalFile, etcd: quick });
    assert.equal(back.offline, true);
    assert.deepEqual(back.list().map((r) => r.name), ['web', 'db']);
    const x = back.updateStatus('x', back.getByName('web')!.revision, { state: 'running', pid: 5 });
    assert.equal(x.status.pid, 5);
    await assert.rejects(back.updateSpec('x', x.revision, { memoryMb: 512 }), (err: any) => err.code === 'STATE_UNAVAILABLE');
  } finally {
    await member.start();
  }
  await until('h-a to list etcd again', async () => (!back.offline && back.get('y') === undefined ? true : undefined), 15_000);
  assert.deepEqual(back.list().map((r) => r.name), ['web']);
  await until('the status written offline in etcd', async () => ((await inEtcd(prefix, 'x'))?.status.pid === 5 ? true : undefined), 5000);
  assert.equal((await back.updateSpec('x', back.get('x')!.revision, { memoryMb: 512 })).spec.memoryMb, 512);
  await back.close();
  await quick.close();
});

test('a host that ran on SQLite imports its state.db into etcd once, as its own records; a replay after a start killed half way skips what is there; a name another host holds fails the start, nothing renamed', async () => {
  const prefix = scope();
  const dir = fs.mkdtempSync(path.join(tmp, 'import-'));
  const sqlite = SqliteStateStore.open(path.join(dir, 'state.db'));
  await sqlite.create(newRecord('i-web', 'web'));
  await sqlite.create(newRecord('i-api', 'api'));
  await sqlite.create(newRecord('i-dup', 'dup'));
  await sqlite.close();
  // Another host holds "dup" in the cluster already; "api" went in before a flickd was killed half way.
  const other = await open({ prefix, hostId: 'h-other' });
  const theirs = await other.create(newRecord('i-theirs', 'dup'));
  const lines: string[] = [];
  const half = await importSqliteState({ etcd: client, prefix, hostId: 'h-me', dataDir: fs.mkdtempSync(path.join(tmp, 'none-')), log: (l) => lines.push(l) });
  assert.equal(half, undefined, 'no state.db: nothing to import');
  await client.txn([], [{ put: { key: recordKey(prefix, 'i-api'), value: '{}' } }]);
  await assert.rejects(
    importSqliteState({ etcd: client, prefix, hostId: 'h-me', dataDir: dir, log: (l) => lines.push(l) }),
    (err: any) => err.code === 'NAME_TAKEN' && err.kind === 'user' && /instance "dup" \(i-dup\) of .*state\.db: host h-other has that name; remove one of them \('flick rm dup' there\) and restart flickd/.test(err.message),
  );
  assert.equal(fs.existsSync(path.join(dir, 'state.db')), true, 'not renamed: "dup" is neither dropped nor orphaned');
  // The user removes the other host's "dup": the next start imports it (and skips what went in before).
  await other.remove(theirs.id, theirs.revision);
  const r = await importSqliteState({ etcd: client, prefix, hostId: 'h-me', dataDir: dir, log: (l) => lines.push(l) });
  assert.deepEqual(r, { imported: 1, present: 2, nameTaken: [], taken: [] });
  assert.match(lines.join('\n'), /imported 1 instance record\(s\) of .*state\.db into etcd \(2 there already\)/);
  assert.equal(fs.existsSync(path.join(dir, 'state.db')), false);
  assert.equal(fs.existsSync(path.join(dir, 'state.db.imported')), true, 'kept, renamed');
  const mine = await open({ prefix, hostId: 'h-me' });
  assert.deepEqual(mine.list().map((x) => [x.name, x.owner]).sort(), [['dup', 'h-me'], ['web', 'h-me']]);
  // Once imported, a start imports nothing again.
  assert.equal(await importSqliteState({ etcd: client, prefix, hostId: 'h-me', dataDir: dir, log: (l) => lines.push(l) }), undefined);
});

test('a host whose records were removed (or claimed) while it was down leaves them, to be released; one whose records a new etcd lost (its revision below the one the host last saw) puts them back as its own', async () => {
  const prefix = scope();
  const dataDir = fs.mkdtempSync(path.join(tmp, 'vanished-'));
  const journal = path.join(dataDir, 'cluster-state.db');
  const lines: string[] = [];
  const opts = { etcd: client, prefix, hostId: 'h-v', dataDir, lease: (await register(prefix, 'h-v')).lease, log: (l: string) => lines.push(l) };
  const first = await openClusterState(opts);
  await first.create(newRecord('i-kept', 'kept'));
  await first.create(newRecord('i-moved', 'moved'));
  await first.create(newRecord('i-gone', 'gone'));
  const cachedNow = () => {
    const j = new StatusJournal(journal);
    try {
      return j.cached().records.length;
    } finally {
      j.close();
    }
  };
  await until('the journal to cache all three', async () => (cachedNow() === 3 ? true : undefined), 5000);
  await first.close();
  // While h-v is down: another host claims "moved"; "gone" is removed from the cluster (etcd keeps its history).
  const other = await open({ prefix, hostId: 'h-o' });
  await other.claim('i-moved', other.cluster.get('i-moved')!.revision, 'h-o');
  await client.delete(recordKey(prefix, 'i-gone'));
  await client.delete(`${prefix}state/names/gone`);
  const again = await openClusterState(opts);
  assert.equal(again.etcdLost, false);
  assert.deepEqual(again.list().map((r) => r.name), ['kept'], 'neither the removed record nor the claimed one comes back');
  assert.equal(await inEtcd(prefix, 'i-gone'), undefined);
  assert.deepEqual(again.leftWhileAway.map((r) => r.name).sort(), ['gone', 'moved'], 'what the agent releases');
  assert.match(lines.join('\n'), /1 instance record\(s\) of this host were removed from the cluster while it was down \(gone\): released here/);
  await again.close();
  // etcd replaced by a new one (emptied, or restored from an older backup): its revision is below the one h-v saw.
  const fresh = await startEtcdCluster({ size: 1 });
  const freshClient = new EtcdClient({ endpoints: fresh.endpoints, timeoutMs: 1500 });
  try {
    const restored = await openClusterState({ ...opts, etcd: freshClient });
    stores.push(restored);
    assert.equal(restored.etcdLost, true);
    assert.deepEqual(restored.list().map((r) => r.name), ['kept'], 'the lost record is back, this host\'s');
    const kv = await freshClient.get(recordKey(prefix, 'i-kept'));
    assert.equal(kv && decodeRecord(kv).owner, 'h-v');
    assert.match(lines.join('\n'), /1 instance record\(s\) of this host were no longer in etcd \(emptied or restored while it was down\): 1 put back as this host's/);
    await restored.close();
  } finally {
    await freshClient.close();
    await fresh.stop();
  }
});
