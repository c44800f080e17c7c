import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyError } from './errors.js';
import { instanceNameFromHost, RouteTable, type RouteChange } from './routes.js';

test('instanceNameFromHost finds <name>.<domain>, case-insensitively and without the port', () => {
  const cases: Array<[string | undefined, string, string | undefined]> = [
    ['app.localhost', 'localhost', 'app'],
    ['App.LocalHost:8080', 'localhost', 'app'],
    ['app.localhost.', 'localhost', 'app'],
    ['app.example.com', 'example.com', 'app'],
    ['a-1.example.com:443', 'example.com', 'a-1'],
    ['localhost', 'localhost', undefined],
    ['.localhost', 'localhost', undefined],
    ['a.b.localhost', 'localhost', undefined],
    ['appxlocalhost', 'localhost', undefined],
    ['app.otherhost', 'localhost', undefined],
    ['[::1]:80', 'localhost', undefined],
    ['127.0.0.1:80', 'localhost', undefined],
    ['', 'localhost', undefined],
    [undefined, 'localhost', undefined],
  ];
  for (const [host, domain, expected] of cases) {
    assert.equal(instanceNameFromHost(host, domain), expected, `host ${host}`);
  }
});

test('RouteTable routes names case-insensitively and rejects names that cannot be host labels', () => {
  const routes = new RouteTable();
  routes.setHttp('Web', { instanceId: 'i-1', targetPort: 8080 });
  assert.deepEqual(routes.http('web'), { instanceId: 'i-1', targetPort: 8080 });
  routes.deleteHttp('WEB');
  assert.equal(routes.http('web'), undefined);
  for (const bad of ['', 'a.b', '-a', 'a_b', 'x'.repeat(64)]) {
    assert.throws(() => routes.setHttp(bad, { instanceId: 'i', targetPort: 80 }), (err: unknown) => err instanceof ProxyError && err.code === 'invalid_route' && err.kind === 'user');
  }
  assert.throws(() => routes.setHttp('ok', { instanceId: 'i', targetPort: 0 }), ProxyError);
  assert.throws(() => routes.setTcp(70000, { instanceId: 'i', targetPort: 80 }), ProxyError);
});

test('RouteTable tells subscribers about TCP routes and removes every route of a removed instance', () => {
  const routes = new RouteTable();
  const changes: RouteChange[] = [];
  const stop = routes.subscribe((c) => changes.push(c));
  routes.setHttp('a', { instanceId: 'i-1', targetPort: 80 });
  routes.setHttp('b', { instanceId: 'i-2', targetPort: 80 });
  routes.setTcp(5432, { instanceId: 'i-1', targetPort: 5432 });
  routes.setTcp(5432, { instanceId: 'i-1', targetPort: 5433 });
  routes.removeInstance('i-1');
  assert.equal(routes.http('a'), undefined);
  assert.deepEqual(routes.http('b'), { instanceId: 'i-2', targetPort: 80 });
  assert.deepEqual(routes.tcpPorts(), []);
  assert.deepEqual(
    changes.map((c) => (c.kind === 'instance-removed' ? `${c.kind} ${c.instanceId}` : `${c.kind} ${c.port}->${c.route.targetPort}`)),
    ['tcp-added 5432->5432', 'tcp-removed 5432->5432', 'tcp-added 5432->5433', 'tcp-removed 5432->5433', 'instance-removed i-1'],
  );
  stop();
  routes.setTcp(1, { instanceId: 'x', targetPort: 1 });
  assert.equal(changes.length, 5);
});

test('removing an instance removes only the routes it still holds (a name taken over by another instance stays), across every kind', () => {
  const routes = new RouteTable();
  routes.setHttp('web', { instanceId: 'old', targetPort: 80 });
  routes.setHttpHost('shop.example.com', { instanceId: 'old', targetPort: 80 });
  routes.setTcp(6379, { instanceId: 'old', targetPort: 6379 });
  routes.setHttp('web', { instanceId: 'new', targetPort: 8080 }); // a deploy's replacement takes the name over
  routes.setTcp(6379, { instanceId: 'new', targetPort: 6380 });
  routes.removeInstance('old');
  assert.deepEqual(routes.http('web'), { instanceId: 'new', targetPort: 8080 });
  assert.equal(routes.forHost('shop.example.com', 'localhost'), undefined);
  assert.deepEqual(routes.tcpPorts(), [6379]);
  routes.deleteHttp('web');
  routes.removeInstance('new');
  assert.deepEqual(routes.tcpPorts(), []);
  // Many instances: each removal leaves every other route in place.
  for (let i = 0; i < 1000; i++) routes.setHttp(`i${i}`, { instanceId: `id-${i}`, targetPort: 80 });
  for (let i = 0; i < 1000; i += 2) routes.removeInstance(`id-${i}`);
  for (let i = 0; i < 1000; i++) assert.equal(routes.http(`i${i}`)?.instanceId, i % 2 ? `id-${i}` : undefined, `i${i}`);
});
