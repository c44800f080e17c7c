// Component tests of the wake path: requests to a sleeping instance park at
// the proxy until the (fake) controller wakes it.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { FakeWaker, request, startProxy, startUpstream, statsOf, until } from './testing.js';

test('200 concurrent requests to a sleeping instance: 200 answers and exactly one wake', async (t) => {
  let served = 0;
  const upstream = await startUpstream(t, (req, res) => {
    served += 1;
    res.end(`ok ${req.url}`);
  });
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const answers = Array.from({ length: 200 }, (_, i) => request(port, { host: 'app.localhost', path: `/${i}` }));
  await until(() => proxy.stats()[0]?.parkedNow === 200, '200 parked requests');
  assert.equal(served, 0);
  waker.release();
  const results = await Promise.all(answers);
  assert.deepEqual(results.map((r) => r.status), new Array(200).fill(200));
  assert.deepEqual(results.map((r) => r.body), Array.from({ length: 200 }, (_, i) => `ok /${i}`));
  assert.equal(waker.wakes.get('i-1'), 1);
  assert.equal(served, 200);
  const stats = statsOf(proxy, 'i-1');
  assert.equal(stats.parkedTotal, 200);
  assert.equal(stats.parkedNow, 0);
  assert.equal(stats.wakeWait.count, 200);
  assert.equal(stats.requests, 200);
  await until(() => waker.inFlight.get('i-1') === 0, 'every request to finish');
});

test('a full parking queue answers 503 with Retry-After; the parked ones are still served', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker, { maxParkedPerInstance: 2, retryAfterSeconds: 3 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const parked = [request(port, { host: 'app.localhost' }), request(port, { host: 'app.localhost' })];
  await until(() => proxy.stats()[0]?.parkedNow === 2, 'two parked requests');
  const refused = await request(port, { host: 'app.localhost' });
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['retry-after'], '3');
  assert.match(refused.body, /i-1 is waking up and 2 requests are already waiting/);
  waker.release();
  assert.deepEqual((await Promise.all(parked)).map((r) => r.status), [200, 200]);
  assert.equal(statsOf(proxy, 'i-1').overflows, 1);
  assert.equal(waker.inFlight.get('i-1'), 0);
});

test('a wake that takes longer than the wake timeout answers 504 and aborts the wake', async (t) => {
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker, { wakeTimeoutMs: 50 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: 9 });
  const answer = await request(port, { host: 'app.localhost' });
  assert.equal(answer.status, 504);
  assert.match(answer.body, /instance i-1 did not wake within 50 ms/);
  assert.equal(waker.signals[0]?.aborted, true);
  assert.equal(statsOf(proxy, 'i-1').wakeTimeouts, 1);
  assert.equal(waker.inFlight.get('i-1'), 0);
});

test('a client that disconnects while parked leaves the queue and nothing is forwarded for it', async (t) => {
  const seen: string[] = [];
  const upstream = await startUpstream(t, (req, res) => {
    seen.push(req.url ?? '');
    res.end('ok');
  });
  const waker = new FakeWaker(false);
  const { proxy, port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const leaver = net.connect(port, '127.0.0.1');
  leaver.on('error', () => {});
  leaver.write('GET /leaver HTTP/1.1\r\nHost: app.localhost\r\n\r\n');
  await until(() => proxy.stats()[0]?.parkedNow === 1, 'the first request to park');
  const stayer = request(port, { host: 'app.localhost', path: '/stayer' });
  await until(() => statsOf(proxy, 'i-1').parkedNow === 2, 'the second request to park');
  leaver.destroy();
  await until(() => statsOf(proxy, 'i-1').parkedNow === 1, 'the leaver to leave the queue');
  waker.release();
  assert.equal((await stayer).status, 200);
  assert.deepEqual(seen, ['/stayer']);
  await until(() => waker.inFlight.get('i-1') === 0, 'every request to finish');
  assert.equal(waker.wakes.get('i-1'), 1);
});

test('parked requests are forwarded in arrival order', async (t) => {
  const seen: string[] = [];
  const upstream = await startUpstream(t, (req, res) => {
    seen.push(req.url ?? '');
    res.end('ok');
  });
  const waker = new FakeWaker(false);
  // One upstream connection, so the order the proxy dispatches in is the order the instance sees.
  const { proxy, port, routes } = await startProxy(t, waker, { maxUpstreamSocketsPerInstance: 1 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const answers: Array<Promise<unknown>> = [];
  const order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7];
  for (const [i, n] of order.entries()) {
    answers.push(request(port, { host: 'app.localhost', path: `/${n}` }));
    await until(() => proxy.stats()[0]?.parkedNow === i + 1, `request ${i} to park`);
  }
  waker.release();
  await Promise.all(answers);
  assert.deepEqual(seen, order.map((n) => `/${n}`));
});

test('an idle keep-alive connection survives standby, and its next request wakes the instance again', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const sockets = new Set<net.Socket>();
  const once = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, agent, headers: { host: 'app.localhost' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('socket', (s) => sockets.add(s));
      req.on('error', reject);
      req.end();
    });
  assert.equal(await once(), 200);
  // The controller suspends the instance: the proxy must close its pooled upstream socket at once
  // (a VM that is paused or ended would never close it).
  waker.standby('i-1');
  await until(() => upstream.open() === 0, 'the pooled upstream connection to be closed');
  assert.equal(await once(), 200);
  assert.equal(sockets.size, 1, 'the client kept its one connection');
  assert.equal(waker.wakes.get('i-1'), 2);
  assert.equal(upstream.connections(), 2, 'a new upstream connection after the wake');
});

test('requestStarted/Finished balance on every path: answered, refused, client gone mid-answer', async (t) => {
  let release: (() => void) | undefined;
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url === '/slow') {
      res.write('partial');
      release = () => res.end();
      return;
    }
    res.end('ok');
  });
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker, { maxParkedPerInstance: 1 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  assert.equal((await request(port, { host: 'app.localhost' })).status, 200);
  assert.equal((await request(port, { host: 'nope.localhost' })).status, 404);
  // A client that leaves in the middle of a streamed answer.
  await new Promise<void>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/slow', headers: { host: 'app.localhost' } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => {});
    req.end();
  });
  // Requests parked then refused (overflow) and parked then abandoned.
  waker.autoWake = false;
  waker.standby('i-1');
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n');
  await until(() => waker.inFlight.get('i-1') === 1, 'the parked request to count');
  assert.equal((await request(port, { host: 'app.localhost' })).status, 503);
  socket.destroy();
  await until(() => waker.inFlight.get('i-1') === 0, 'every request to finish');
  release?.();
  assert.equal(waker.minInFlight, 0, 'never negative');
  await until(() => waker.connections.get('i-1') === 0, 'every client connection to close');
});

test('close answers parked requests with 503 and ends open websockets', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end());
  upstream.server.on('upgrade', (_req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  const waker = new FakeWaker();
  const { proxy, port, routes } = await startProxy(t, waker);
  routes.setHttp('ws', { instanceId: 'i-ws', targetPort: upstream.port });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const ws = await new Promise<net.Socket>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, headers: { host: 'ws.localhost', connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('upgrade', (_res, s) => resolve(s));
    req.on('error', reject);
    req.end();
  });
  t.after(() => ws.destroy());
  const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  waker.autoWake = false;
  const parked = request(port, { host: 'app.localhost' });
  await until(() => statsOf(proxy, 'i-1').parkedNow === 1, 'a parked request');
  await proxy.close();
  const answer = await parked;
  assert.equal(answer.status, 503);
  assert.match(answer.body, /shutting down/);
  await wsClosed;
  await until(() => waker.inFlight.get('i-ws') === 0 && waker.inFlight.get('i-1') === 0, 'the accounting to settle');
});

test('after a hot standby the first request goes on a connection pooled before it, however long the pause; after a cold one on a new connection', async (t) => {
  const upstream = await startUpstream(t, (req, res) => res.end(`ok ${req.url}`));
  const waker = new FakeWaker();
  // A short pool idle timeout: the pause below outlasts it, and must not count against it.
  const { port, routes } = await startProxy(t, waker, { upstreamIdleMs: 100 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  assert.equal((await request(port, { host: 'app.localhost', path: '/a' })).body, 'ok /a');
  assert.equal(upstream.connections(), 1);
  waker.pause('i-1');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(upstream.open(), 1, 'the idle connection is kept while the VM is paused');
  assert.equal((await request(port, { host: 'app.localhost', path: '/b' })).body, 'ok /b');
  assert.equal(waker.wakes.get('i-1'), 2, 'the request after the pause woke the instance');
  assert.equal(upstream.connections(), 1, 'and went on the connection pooled before the pause');
  // Awake again, the pool's idle timeout runs again.
  await until(() => upstream.open() === 0, 'the idle connection to time out once awake');
  assert.equal((await request(port, { host: 'app.localhost', path: '/c' })).body, 'ok /c');
  assert.equal(upstream.connections(), 2);
  waker.standby('i-1');
  await until(() => upstream.open() === 0, 'the pool to be dropped when the VM ends');
  assert.equal((await request(port, { host: 'app.localhost', path: '/d' })).body, 'ok /d');
  assert.equal(upstream.connections(), 3, 'a VM that ended gets a new connection');
});

test("a wake's first forwarded request reports the proxy's side of the breakdown, once per wake", async (t) => {
  const upstream = await startUpstream(t, (_req, res) => setTimeout(() => res.end('ok'), 30));
  const waker = new FakeWaker(false);
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const answers = [request(port, { host: 'app.localhost' }), request(port, { host: 'app.localhost' })];
  // Parked from the first request's arrival (on a loaded machine it can come late): then 40 ms more.
  await until(() => (waker.wakes.get('i-1') ?? 0) >= 1, 'the first request to ask for a wake');
  await new Promise((r) => setTimeout(r, 40));
  waker.release();
  assert.deepEqual((await Promise.all(answers)).map((r) => r.status), [200, 200]);
  await until(() => waker.reports.get('i-1')?.length === 1, 'the report of the wake');
  const [times] = waker.reports.get('i-1')!;
  assert.ok(times!.waitMs >= 30, `parked until released: ${times!.waitMs} ms`);
  assert.ok(times!.upstreamMs >= 25, `the app's 30 ms are the upstream phase: ${times!.upstreamMs} ms`);
  for (const v of Object.values(times!)) assert.ok(v >= 0 && Number.isFinite(v));
  assert.equal((await request(port, { host: 'app.localhost' })).status, 200);
  assert.equal(waker.reports.get('i-1')!.length, 1, 'a request to an awake instance reports nothing');
});
