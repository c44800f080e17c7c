// Component test: the etcd client and the list-then-watch read model against a
// real 3-member etcd on loopback ports (started here, removed at the end).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EtcdClient, EtcdError, prefixEnd } from './etcd-client.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { ReadModel, type ModelChange } from './read-model.js';

let etcd: EtcdCluster;
let client: EtcdClient;

before(async () => {
  etcd = await startEtcdCluster();
  client = new EtcdClient({ endpoints: etcd.endpoints });
});
after(async () => {
  await client?.close();
  await etcd?.stop();
});

const until = async (what: string, check: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('prefixEnd is the key just past the prefix', () => {
  assert.equal(Buffer.from(prefixEnd('/a/'), 'base64').toString(), '/a0');
});

test('put, range by prefix and delete', async () => {
  await client.put('/t/kv/a', 'one');
  await client.put('/t/kv/b', 'two');
  await client.put('/t/kvx', 'outside');
  const r = await client.range('/t/kv/', { prefix: true });
  assert.deepEqual(r.kvs.map((kv) => [kv.key, kv.value]), [['/t/kv/a', 'one'], ['/t/kv/b', 'two']]);
  assert.ok(r.revision >= r.kvs[1]!.modRevision);
  assert.equal(await client.delete('/t/kv/', { prefix: true }), 2);
  assert.equal(await client.get('/t/kv/a'), undefined);
});

test('a txn fenced on mod_revision refuses a stale writer', async () => {
  await client.put('/t/fence', 'v1');
  const seen = (await client.get('/t/fence'))!;
  const first = await client.txn([{ key: '/t/fence', target: 'MOD', result: 'EQUAL', value: seen.modRevision }], [{ put: { key: '/t/fence', value: 'v2' } }]);
  assert.equal(first.succeeded, true);
  // A second writer that read the same revision loses, and learns the current value.
  const second = await client.txn([{ key: '/t/fence', target: 'MOD', result: 'EQUAL', value: seen.modRevision }], [{ put: { key: '/t/fence', value: 'v3' } }], [{ range: { key: '/t/fence' } }]);
  assert.equal(second.succeeded, false);
  assert.equal(second.ranges[0]![0]!.value, 'v2');
  // Create-if-absent: CREATE revision 0.
  const absent = await client.txn([{ key: '/t/new', target: 'CREATE', result: 'EQUAL', value: 0 }], [{ put: { key: '/t/new', value: 'x' } }]);
  assert.equal(absent.succeeded, true);
  const again = await client.txn([{ key: '/t/new', target: 'CREATE', result: 'EQUAL', value: 0 }], [{ put: { key: '/t/new', value: 'y' } }]);
  assert.equal(again.succeeded, false);
});

test('a key under a lease goes when the lease lapses; keep-alive tells it lapsed', async () => {
  const lease = await client.leaseGrant(2);
  assert.ok(lease.ttl >= 2);
  await client.put('/t/leased', 'here', { lease: lease.id });
  assert.ok((await client.leaseKeepAlive(lease.id)) > 0);
  const fenced = await client.txn([{ key: '/t/leased', target: 'LEASE', result: 'EQUAL', value: lease.id }], [{ put: { key: '/t/owned', value: 'yes', lease: lease.id } }]);
  assert.equal(fenced.succeeded, true);
  const deadline = Date.now() + 10_000;
  while ((await client.get('/t/leased')) !== undefined) {
    assert.ok(Date.now() < deadline, 'the leased key outlived its lease');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(await client.leaseKeepAlive(lease.id), 0);
  assert.equal(await client.get('/t/owned'), undefined);
});

test('the read model lists, then follows puts and deletes; a watch from a compacted revision ends ETCD_COMPACTED', async () => {
  await client.put('/t/model/a', '1');
  await client.put('/t/model/b', '1');
  const changes: ModelChange[] = [];
  const model = new ReadModel(client, '/t/model/', { onChange: (c) => changes.push(c) });
  await model.ready;
  assert.deepEqual(model.values().map((kv) => kv.key).sort(), ['/t/model/a', '/t/model/b']);
  await client.put('/t/model/c', '1');
  await client.delete('/t/model/a');
  const rev = await client.put('/t/model/b', '2');
  await until('the changes to arrive', () => model.get('/t/model/b')?.value === '2');
  assert.equal(model.get('/t/model/a'), undefined);
  assert.deepEqual(changes.map((c) => `${c.type} ${c.type === 'put' ? c.kv.key : c.key}`), ['put /t/model/c', 'delete /t/model/a', 'put /t/model/b']);
  assert.ok(model.revision >= rev);
  model.stop();
  await client.compact(rev);
  await assert.rejects(client.watch('/t/model/', 1, () => {}).done, (e: unknown) => e instanceof EtcdError && e.code === 'ETCD_COMPACTED');
});

test('a watch cut by a member loss re-lists and emits what it missed', async () => {
  await client.put('/t/gap/x', '1');
  await client.put('/t/gap/y', '1');
  const changes: ModelChange[] = [];
  const model = new ReadModel(client, '/t/gap/', { onChange: (c) => changes.push(c) });
  await model.ready;
  // Kill the members one at a time under the model's watch: each loss ends the stream, the model re-lists.
  const m0 = etcd.members.find((m) => m.clientUrl === client.currentEndpoint)!;
  await m0.kill();
  await client.delete('/t/gap/x');
  await client.put('/t/gap/z', '1');
  await until('the model to follow through a member loss', () => model.get('/t/gap/z') !== undefined && model.get('/t/gap/x') === undefined);
  assert.ok(changes.some((c) => c.type === 'delete' && c.key === '/t/gap/x'), 'the delete made while the member died was not emitted');
  await m0.start();
  model.stop();
});

test('losing one member of three changes nothing for the client', async () => {
  const m1 = etcd.members[1]!;
  await m1.kill();
  try {
    await client.put('/t/quorum', 'still');
    assert.equal((await client.get('/t/quorum'))?.value, 'still');
  } finally {
    await m1.start();
  }
});

test('etcd unreachable is a typed error that says what to check', async () => {
  const dead = new EtcdClient({ endpoints: ['http://127.0.0.1:9'], timeoutMs: 500 });
  await assert.rejects(dead.get('/x'), (e: unknown) => e instanceof EtcdError && e.code === 'ETCD_UNAVAILABLE' && /etcd members are up/.test(e.message));
  await dead.close();
  assert.throws(() => new EtcdClient({ endpoints: ['127.0.0.1:2379'] }), (e: unknown) => e instanceof EtcdError && e.code === 'ETCD_INVALID_ENDPOINT');
});
