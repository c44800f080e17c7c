// Component tests of the API forwarder: real HTTP servers on port 0 stand for
// this host's API handler and a peer's API; the directory is a hand-written fake.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createForwarder, type ForwardConfig } from './api-forward.js';
import type { HostDirectory, HostView } from './membership.js';
import type { PendingCreates, PlacementRequest } from './placement.js';

async function serve(t: TestContext, handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const readAll = async (req: http.IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
};

/** This host "a" with forwarder `extra`, and a peer "b" whose API echoes what it got. */
async function setup(t: TestContext, place: (req: PlacementRequest, pending: PendingCreates) => string) {
  const peerApi = await serve(t, async (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ where: 'b', url: req.url, authorization: req.headers.authorization, body: await readAll(req) }));
  });
  const view = (name: string, api: string): HostView => ({
    record: { version: 1, name, api, proxy: null, capacity: { memoryBytes: 1, vcpus: 1 }, joinedAt: '' },
    load: { version: 1, lease: '1', memoryFreeBytes: 1, loadAvg1m: 0, instances: 0, startedAt: '', updatedAt: '' },
  });
  const hosts = [view('a', 'http://127.0.0.1:1'), view('b', peerApi)];
  const directory = { list: () => hosts, get: (n: string) => hosts.find((h) => h.record.name === n) } as unknown as HostDirectory;
  const config: ForwardConfig = {
    self: 'a',
    token: 'the-cluster-token',
    directory: () => directory,
    place,
    ownerOf: (ref) => (ref === 'remote' ? 'b' : undefined),
    holds: (ref) => ref === 'mine',
    local: async (req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ where: 'a', url: req.url, body: await readAll(req) }));
    },
  };
  const forward = createForwarder(config);
  return serve(t, (req, res) => void forward(req, res));
}

const post = (base: string, path: string, body: string) => fetch(`${base}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));

test('a create placed here reaches this host\'s handler with its body whole; placed on a peer, it goes there with the cluster token', async (t) => {
  const asked: PlacementRequest[] = [];
  let where = 'a';
  const base = await setup(t, (req) => (asked.push(req), where));
  const body = JSON.stringify({ image: 'app:1', memory_mb: 512, name: 'x'.repeat(10_000) });
  const here = await post(base, '/v1/instances', body);
  assert.deepEqual([here.status, here.json.where, here.json.body], [200, 'a', body]);
  assert.deepEqual(asked, [{ image: 'app:1', memoryMb: 512 }]);
  where = 'b';
  const there = await post(base, '/v1/instances', body);
  assert.deepEqual([there.json.where, there.json.url, there.json.authorization, there.json.body], ['b', '/v1/instances?host=b', 'Bearer the-cluster-token', body]);
  // ?host= is not placed again; a body placement cannot read goes to this host's handler, which says why.
  const pinned = await post(base, '/v1/instances?host=b', body);
  assert.equal(pinned.json.where, 'b');
  assert.equal(asked.length, 2);
  const junk = await post(base, '/v1/instances', 'not json');
  assert.deepEqual([junk.json.where, junk.json.body], ['a', 'not json']);
});

test('calls for another host\'s instance go to it with the token; this host\'s own stay here', async (t) => {
  const base = await setup(t, () => 'a');
  const remote = (await fetch(`${base}/v1/instances/remote`).then((r) => r.json())) as any;
  assert.deepEqual([remote.where, remote.authorization], ['b', 'Bearer the-cluster-token']);
  const mine = (await fetch(`${base}/v1/instances/mine`).then((r) => r.json())) as any;
  assert.equal(mine.where, 'a');
  const unknown = await post(base, '/v1/instances?host=nowhere', '{}');
  assert.equal(unknown.status, 404);
  assert.match(unknown.json.error.message, /host "nowhere" is not an up host/);
});
