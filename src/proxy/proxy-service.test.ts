// Component tests of service routes: requests balanced over a service's
// members (real upstreams on port 0, a fake Waker), keep-alive pinning, a retry
// on another member only when the connection was refused, and a burst against
// sleeping members waking as many as the in-flight target needs.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { FakeWaker, request, type Answer, startProxy, startUpstream, until } from './testing.js';

async function closedPort(t: import('node:test').TestContext): Promise<number> {
  const gone = await startUpstream(t, (_req, res) => res.end());
  await new Promise<void>((resolve) => gone.server.close(() => resolve()));
  return gone.port;
}

/** Counts, per member, the requests the proxy started for it (the fake waker's hosts are all 127.0.0.1, so members share one upstream). */
function countStarts(waker: FakeWaker): Map<string, number> {
  const started = new Map<string, number>();
  const orig = waker.requestStarted.bind(waker);
  waker.requestStarted = (id: string) => {
    started.set(id, (started.get(id) ?? 0) + 1);
    orig(id);
  };
  return started;
}

test('a service balances new connections over its members; a keep-alive client stays on one member', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const waker = new FakeWaker();
  const started = countStarts(waker);
  const { port, routes } = await startProxy(t, waker);
  const members = ['m-1', 'm-2', 'm-3'];
  // Three running replicas: each is used from the first requests on, before the proxy has reached any.
  waker.running = new Set(members);
  routes.setService('web', { service: 'web', members, targetPort: upstream.port });
  const answers = await Promise.all(Array.from({ length: 30 }, () => request(port, { host: 'web.localhost' })));
  assert.deepEqual(answers.map((a) => a.status), new Array(30).fill(200));
  assert.deepEqual(members.map((m) => (started.get(m) ?? 0) >= 5), [true, true, true], `every member took a share: ${JSON.stringify([...started])}`);
  // Sequential requests on new connections take the (idle) members in turn.
  started.clear();
  for (let i = 0; i < 30; i++) assert.equal((await request(port, { host: 'web.localhost' })).status, 200);
  assert.deepEqual(members.map((m) => started.get(m)), [10, 10, 10]);
  // A keep-alive client stays on one member.
  started.clear();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 10; i++) assert.equal((await request(port, { host: 'web.localhost', agent })).status, 200);
  assert.equal(started.size, 1, `pinned to one member: ${JSON.stringify([...started])}`);
  agent.destroy();
  await until(() => members.every((m) => (waker.inFlight.get(m) ?? 0) === 0), 'every request to finish');
});

test('a member that refuses the connection is skipped for that request; one that fails after the request reached it gives 502, not a retry', async (t) => {
  const dead = await closedPort(t);
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setService('web', { service: 'web', members: ['m-dead', 'm-live'], targetPort: dead });
  // All members share the route's port, so both refuse here: the request fails only after trying each.
  const bothDead = await request(port, { host: 'web.localhost' });
  assert.equal(bothDead.status, 502);
  assert.equal(waker.wakes.get('m-dead'), 1);
  assert.equal(waker.wakes.get('m-live'), 1, 'the second member was tried after the first refused');

  // Now one member whose app takes the request and then drops the connection: never retried elsewhere.
  const dropper = await startUpstream(t, (req) => req.socket.destroy());
  routes.setService('drop', { service: 'drop', members: ['d-1', 'd-2'], targetPort: dropper.port });
  const dropped = await request(port, { host: 'drop.localhost' });
  assert.equal(dropped.status, 502);
  assert.equal(dropper.connections(), 1, 'the request reached one member only');
  await until(() => ['m-dead', 'm-live', 'd-1', 'd-2'].every((m) => (waker.inFlight.get(m) ?? 0) === 0), 'every request to finish');
});

test('a burst against a sleeping service wakes as many members as the in-flight target needs, at once', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => setTimeout(() => res.end('ok'), 5));
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker);
  const members = ['a', 'b', 'c', 'd', 'e'];
  routes.setService('burst', { service: 'burst', members, targetPort: upstream.port, targetInFlight: 10 });
  const answers = Array.from({ length: 30 }, () => request(port, { host: 'burst.localhost' }));
  await until(() => proxy.stats().reduce((n, s) => n + s.parkedNow, 0) === 30, '30 parked requests');
  assert.equal([...waker.wakes.keys()].length, 3, `ceil(30 / 10) wakes: ${JSON.stringify([...waker.wakes])}`);
  waker.release();
  assert.deepEqual((await Promise.all(answers)).map((a) => a.status), new Array(30).fill(200));
  assert.deepEqual(members.filter((m) => waker.wakes.has(m)).length, 3);
  // An unknown service has no route; one with no members answers 503 saying so.
  routes.setService('empty', { service: 'empty', members: [], targetPort: upstream.port });
  const none = await request(port, { host: 'empty.localhost' });
  assert.equal(none.status, 503);
  assert.match(none.body, /service empty has no instances/);
});

test('parked requests go to whichever member is awake first, up to the target at a time, not to the member whose wake they asked for', async (t) => {
  let active = 0;
  let most = 0;
  const upstream = await startUpstream(t, (_req, res) => {
    active += 1;
    most = Math.max(most, active);
    setTimeout(() => {
      active -= 1;
      res.end('ok');
    }, 5);
  });
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker);
  const members = ['a', 'b', 'c'];
  routes.setService('burst', { service: 'burst', members, targetInFlight: 10, targetPort: upstream.port });
  const answers = Array.from({ length: 60 }, () => request(port, { host: 'burst.localhost' }));
  await until(() => proxy.stats().reduce((n, s) => n + s.parkedNow, 0) === 60, '60 parked requests');
  assert.deepEqual(waker.waking().sort(), members, 'the burst asked every member to wake');
  // Only the second member wakes: every request is answered by it while the other two still wake.
  waker.release('b');
  assert.deepEqual((await Promise.all(answers)).map((a) => a.status), new Array(60).fill(200));
  assert.deepEqual(waker.waking().sort(), ['a', 'c'], 'answered before the other wakes ended');
  assert.ok(most <= 10, `the awake member had at most the target in flight at once: ${most}`);
  assert.equal(proxy.stats().reduce((n, s) => n + s.parkedNow, 0), 0);
  // Every in-flight count moved with its request and came back to 0.
  await until(() => members.every((m) => (waker.inFlight.get(m) ?? 0) === 0), 'every request to finish');
  assert.equal(waker.minInFlight, 0);
  waker.release();
});

test('a parked request whose client leaves is never forwarded; a member whose wake fails refuses the requests counted on it', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker, { wakeTimeoutMs: 300 });
  routes.setService('svc', { service: 'svc', members: ['x', 'y'], targetInFlight: 1, targetPort: upstream.port });
  const gone = http.request({ host: '127.0.0.1', port, headers: { host: 'svc.localhost' } });
  gone.on('error', () => undefined);
  gone.end();
  await until(() => proxy.stats().reduce((n, s) => n + s.parkedNow, 0) === 1, 'one parked request');
  gone.destroy();
  await until(() => proxy.stats().reduce((n, s) => n + s.parkedNow, 0) === 0, 'the parked request to leave');
  // Neither wake ends: the requests counted on each member get its 504 with the reason.
  const late = await Promise.all([request(port, { host: 'svc.localhost' }), request(port, { host: 'svc.localhost' })]);
  assert.deepEqual(late.map((a) => a.status), [504, 504]);
  assert.match(late[0]!.body, /did not wake within 300 ms/);
  assert.equal(upstream.connections(), 0, 'nothing was forwarded');
  await until(() => ['x', 'y'].every((m) => (waker.inFlight.get(m) ?? 0) === 0), 'every count back to 0');
  assert.equal(waker.minInFlight, 0);
});

test('a parked request counted on a member that woke but stays full ends at the park timeout with a 504 saying why, not never', async (t) => {
  // The first request to reach a member holds it (its app answers only at the end of the test).
  const held: http.ServerResponse[] = [];
  const upstream = await startUpstream(t, (_req, res) => void held.push(res));
  t.after(() => held.forEach((res) => res.end('late')));
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker, { wakeTimeoutMs: 300 });
  routes.setService('full', { service: 'full', members: ['a', 'b'], targetInFlight: 1, targetPort: upstream.port });
  // Three requests park: one counted on a, one on b, the third on either.
  const answers = Array.from({ length: 3 }, () => request(port, { host: 'full.localhost' }));
  await until(() => proxy.stats().reduce((n, s) => n + s.parkedNow, 0) === 3, 'three parked requests');
  // b wakes and takes the oldest request, which it holds; a never wakes (its gate refuses its own at 300 ms).
  waker.release('b');
  await until(() => held.length === 1, 'b to hold one request');
  const refused: Answer[] = [];
  for (const a of answers) void a.then((answer) => refused.push(answer));
  // Without the queue's own bound, the one counted on b waits as long as b holds its request: here, forever.
  await until(() => refused.length === 2, 'both requests still parked behind the held one to end', 15_000);
  assert.deepEqual(refused.map((a) => a.status), [504, 504]);
  assert.ok(refused.some((a) => /no instance of service full had room within 300 ms \(1 of 2 awake, each with its target of 1 in flight\)/.test(a.body)), refused.map((a) => a.body).join(' | '));
  assert.equal(proxy.stats().reduce((n, s) => n + s.parkedNow, 0), 0);
  assert.equal(upstream.connections(), 1, 'only the held request was forwarded');
  held.forEach((res) => res.end('late'));
  await until(() => ['a', 'b'].every((m) => (waker.inFlight.get(m) ?? 0) === 0), 'every count back to 0');
  assert.equal(waker.minInFlight, 0);
  waker.release();
});
