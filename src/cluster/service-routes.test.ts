// Component test: service routes shared between two hosts through a real 1-member
// etcd (started here): each host's proxy table routes the other's service over its
// members wherever they are, leaves out a member whose host is down, follows one a
// failover moved, sends an autoscaled service (and a TCP port) to its home's proxy,
// and drops the route with the service. Two hosts writing one service name at once
// (or a removal racing another host's write) never overwrite each other's route.
// The catalog and the hosts are plain maps.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RouteTable, isServiceRoute, type ServiceRoute } from '../proxy/routes.js';
import { until } from '../proxy/testing.js';
import type { CatalogEntry } from './catalog.js';
import { EtcdClient } from './etcd-client.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { ClusterServiceRoutes, ROUTE_SETTLE_MS } from './service-routes.js';

let etcd: EtcdCluster;
let client: EtcdClient;
const hosts: ClusterServiceRoutes[] = [];

before(async () => {
  etcd = await startEtcdCluster({ size: 1 });
  client = new EtcdClient({ endpoints: etcd.endpoints });
});
after(async () => {
  for (const h of hosts) h.stop();
  await client?.close();
  await etcd?.stop();
});

const entry = (name: string, owner: string, id: string | null): CatalogEntry => ({
  version: 1, name, owner, id, state: 'placed', config: { image: 'app@sha256:00' }, stateful: false,
  http: { hostname: `${name}.localhost`, guestPort: 8080 }, updatedAt: new Date().toISOString(),
});

test('two hosts route each other\'s services over every member wherever it is, follow a moved member, and drop a removed service', async () => {
  const catalog = new Map([['web-a', entry('web-a', 'h1', 'ida')], ['web-b', entry('web-b', 'h2', 'idb')], ['web-c', entry('web-c', 'h3', 'idc')]]);
  const up = new Set(['h1', 'h2', 'h3']);
  const prefix = `/t${process.pid}/`;
  const make = (self: string) => {
    const h = new ClusterServiceRoutes({
      self, etcd: client, prefix, log: () => undefined,
      entry: (n) => catalog.get(n),
      nameOf: (id) => [...catalog.values()].find((e) => e.id === id)?.name,
      isUp: (x) => up.has(x),
      upHosts: () => [...up].sort().join(','),
    });
    hosts.push(h);
    const table = new RouteTable();
    const sink = h.sink(table);
    h.start(table);
    return { h, table, sink };
  };
  const h1 = make('h1');
  const h2 = make('h2');
  let moves = 0;
  h1.h.onMoved(() => moves++);
  const members = (t: RouteTable, name: string): string[] | undefined => {
    const r = t.forHost(`${name}.localhost`, 'localhost');
    return r && isServiceRoute(r) ? [...r.members] : undefined;
  };
  const settled = (t: RouteTable, name: string, want: string[] | undefined) => until(() => JSON.stringify(members(t, name)) === JSON.stringify(want), `${name} to route ${want}`, 10_000);

  h1.sink.setService('web', { service: 'web', members: ['ida', '@h2/web-b', '@h3/web-c'], targetPort: 8080 });
  // h1 at once (its own change is in its proxy before it is shared); h2 once the watch brings it: its own member directly.
  assert.deepEqual(members(h1.table, 'web'), ['ida', '@h2/web-b', '@h3/web-c']);
  await settled(h2.table, 'web', ['@h1/web-a', 'idb', '@h3/web-c']);
  assert.equal(h2.h.serviceHost('web'), 'h1');
  assert.equal(h1.h.serviceHost('web'), undefined);

  // h3 down: left out everywhere until it is back or its member moved.
  up.delete('h3');
  h1.h.hostsChanged();
  h2.h.hostsChanged();
  assert.deepEqual(members(h1.table, 'web'), ['ida', '@h2/web-b']);
  assert.deepEqual(members(h2.table, 'web'), ['@h1/web-a', 'idb']);
  // A failover moved web-c to h2: routed there, and h1's service told to follow it by name.
  catalog.set('web-c', entry('web-c', 'h2', 'idc2'));
  h1.h.memberChanged('web-c');
  h2.h.memberChanged('web-c');
  assert.equal(moves, 1);
  assert.equal(h1.h.follow('web-c'), '@h2/web-c');
  assert.equal(h1.h.follow('web-a'), 'ida');
  assert.equal(h1.h.follow('gone'), null);
  assert.deepEqual(members(h1.table, 'web'), ['ida', '@h2/web-b', '@h2/web-c']);
  assert.deepEqual(members(h2.table, 'web'), ['@h1/web-a', 'idb', 'idc2']);

  // A member leaves: once settled, the other host routes without it (and had the settle time to finish its requests).
  const left = Date.now();
  h1.sink.setService('web', { service: 'web', members: ['@h2/web-b', '@h2/web-c'], targetPort: 8080 });
  await h1.h.settled();
  assert.deepEqual(members(h2.table, 'web'), ['idb', 'idc2']);
  assert.ok(Date.now() - left >= ROUTE_SETTLE_MS - 50, `settled after ${Date.now() - left} ms`);

  // An autoscaled service is balanced by its home's proxy: the others send it there whole.
  h1.sink.setService('auto', { service: 'auto', members: ['ida'], targetPort: 8080, targetInFlight: 1 });
  await settled(h2.table, 'auto', ['@h1/auto']);
  assert.equal((h2.table.forHost('auto.localhost', 'localhost') as ServiceRoute).targetInFlight, undefined);

  // A TCP port: tunnelled to the home whole, except where this host's own instance holds the port.
  h2.table.setTcp(6000, { instanceId: 'idb', targetPort: 8080 });
  h1.sink.setTcpService(5432, { service: 'db', members: ['ida'], targetPort: 8080 });
  h1.sink.setTcpService(6000, { service: 'db', members: ['ida'], targetPort: 8080 });
  h1.sink.setService('db', { service: 'db', members: [], targetPort: 80 });
  await until(() => h2.table.tcp(5432) !== undefined, 'db\'s port on h2', 10_000);
  assert.deepEqual(h2.table.tcp(5432), { service: 'db', members: ['@h1/db'], targetPort: 5432 });
  assert.deepEqual(h2.table.tcp(6000), { instanceId: 'idb', targetPort: 8080 }, 'h2\'s own instance keeps its port');
  h1.sink.deleteService('db');
  h1.sink.deleteTcpService(5432);
  h1.sink.deleteTcpService(6000);
  await until(() => h2.table.tcp(5432) === undefined, 'db\'s port to leave h2', 10_000);

  // Removed: gone from every proxy and from etcd.
  h1.sink.deleteService('web');
  h1.sink.deleteService('auto');
  assert.equal(members(h1.table, 'web'), undefined);
  await settled(h2.table, 'web', undefined);
  await settled(h2.table, 'auto', undefined);
  await h1.h.settled();
  assert.equal((await client.range(`${prefix}services/`, { prefix: true })).kvs.length, 0);
});

/** `client`, but each read of a key runs `afterGet` before it answers: what another host does between a host's read and its write. */
const gatedClient = (afterGet: () => Promise<void>): EtcdClient =>
  new Proxy(client, {
    get(target, p) {
      if (p === 'get') return async (key: string) => { const kv = await target.get(key); await afterGet(); return kv; };
      const v = Reflect.get(target, p, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });

const plainHost = (self: string, etcd: EtcdClient, prefix: string, logs: string[]) => {
  const h = new ClusterServiceRoutes({
    self, etcd, prefix, log: (line) => logs.push(`${self}: ${line}`),
    entry: () => undefined, nameOf: () => undefined, isUp: () => true, upHosts: () => 'h1,h2',
  });
  hosts.push(h);
  const table = new RouteTable();
  const sink = h.sink(table);
  h.start(table);
  return { h, sink };
};

test('two hosts making the same service at once (both read no route): the first route shared stays, never overwritten, and the other host says so', async () => {
  const prefix = `/t${process.pid}-race/`;
  // Each host's read waits until both have read: both see no route, as two eventually consistent mirrors would.
  let reads = 0;
  let bothRead!: () => void;
  const gate = new Promise<void>((resolve) => (bothRead = resolve));
  const etcd = gatedClient(async () => { if (++reads === 2) bothRead(); await gate; });
  const logs: string[] = [];
  const h1 = plainHost('h1', etcd, prefix, logs);
  const h2 = plainHost('h2', etcd, prefix, logs);
  h1.sink.setService('same', { service: 'same', members: [], targetPort: 8080 });
  h2.sink.setService('same', { service: 'same', members: [], targetPort: 9090 });
  await Promise.all([h1.h.settled(), h2.h.settled()]);
  const kvs = (await client.range(`${prefix}services/`, { prefix: true })).kvs;
  assert.equal(kvs.length, 1);
  assert.equal(kvs[0]!.version, 1, 'one put only: no host overwrote the other\'s route');
  const home = JSON.parse(kvs[0]!.value).home as string;
  const loser = home === 'h1' ? 'h2' : 'h1';
  assert.equal(JSON.parse(kvs[0]!.value).targetPort, home === 'h1' ? 8080 : 9090);
  assert.ok(logs.some((l) => l.startsWith(`${loser}: `) && l.includes(`is also host ${home}'s`)), logs.join('\n'));
});

test('a host removing its service does not delete the route another host wrote after it read the key', async () => {
  const prefix = `/t${process.pid}-del/`;
  const key = `${prefix}services/gone`;
  let between: (() => Promise<void>) | undefined;
  const etcd = gatedClient(async () => { const f = between; between = undefined; await f?.(); });
  const logs: string[] = [];
  const h1 = plainHost('h1', etcd, prefix, logs);
  h1.sink.setService('gone', { service: 'gone', members: [], targetPort: 8080 });
  await h1.h.settled();
  assert.equal(JSON.parse((await client.get(key))!.value).home, 'h1');
  // h1 removes it; between its read and its delete, host h2 makes its own service of that name.
  const theirs = JSON.stringify({ version: 1, service: 'gone', home: 'h2', members: [], targetPort: 9090 });
  between = async () => { await client.put(key, theirs); };
  h1.sink.deleteService('gone');
  await h1.h.settled();
  assert.equal((await client.get(key))?.value, theirs, 'h2\'s route is still shared');
  assert.ok(logs.some((l) => l.includes("is also host h2's")), logs.join('\n'));
});
