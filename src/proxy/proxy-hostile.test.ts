// Component tests of hostile input at the proxy: every shape of HOSTILE_CASES
// against a real proxy and a real upstream that records what reached it (a
// smuggled request must never), then slow heads, slow bodies, idle floods and
// the connection cap, with short timeouts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { HOSTILE_CASES, rawRequest, SMUGGLED_PATH } from './testing-hostile.js';
import { FakeWaker, request, startProxy, startUpstream, until } from './testing.js';

test('every hostile request shape gets its 4xx saying what was wrong; nothing smuggled reaches the instance', async (t) => {
  const seen: string[] = [];
  const upstream = await startUpstream(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  for (const c of HOSTILE_CASES) {
    const a = await rawRequest(port, c.data('app.localhost'));
    assert.equal(a.status, c.status, `${c.what}: ${a.text.slice(0, 200)}`);
    assert.match(a.text.split('\r\n\r\n').slice(1).join(''), c.says, c.what);
  }
  assert.deepEqual(seen.filter((s) => s.includes(SMUGGLED_PATH)), []);
  assert.deepEqual(seen, [], 'no hostile request was forwarded at all');
  assert.equal((await request(port, { host: 'app.localhost' })).body, 'ok');
  await until(() => waker.inFlight.get('i-1') === 0, 'every request to finish');
  assert.equal(waker.minInFlight, 0, 'never a finished without a started');
});

test('a head that never completes, and a connection that never sends, get 408 after the head timeout', async (t) => {
  const { port, routes } = await startProxy(t, new FakeWaker(), { clientHeadersTimeoutMs: 300 });
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const t0 = Date.now();
  const [slow, idle] = await Promise.all([rawRequest(port, 'GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Slow: a', 5_000), rawRequest(port, '', 5_000)]);
  assert.equal(slow.status, 408);
  assert.equal(idle.status, 408);
  assert.match(slow.text, /Connection: close/);
  assert.match(idle.text, /did not arrive in time/);
  assert.ok(Date.now() - t0 < 3_000, `cut within a few checking intervals, not at the 5 s deadline (${Date.now() - t0} ms)`);
});

test('a request body that stalls gets 408 and its upstream connection is closed; a slow but steady body is served', async (t) => {
  let bodies = 0;
  const upstream = await startUpstream(t, (req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      bodies += 1;
      res.end(`got ${n}`);
    });
  });
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker, { clientBodyIdleMs: 300 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const stalled = await rawRequest(port, 'POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 100\r\n\r\nabc', 5_000);
  assert.equal(stalled.status, 408);
  assert.match(stalled.text, /request body stalled/);
  await until(() => upstream.open() === 0, 'the upstream connection of the stalled body to close');
  assert.equal(bodies, 0);

  // 10 bytes, one every 100 ms: slower than a burst, never idle for 300 ms.
  const steady = await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write('POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n');
    let sent = 0;
    const timer = setInterval(() => {
      s.write('x');
      if (++sent === 10) clearInterval(timer);
    }, 100);
  });
  assert.match(steady, /^HTTP\/1\.1 200[\s\S]*got 10$/);
  await until(() => waker.inFlight.get('i-1') === 0, 'every request to finish');
});

test('beyond the connection cap new clients are closed at once; open ones keep being served', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const { port, routes } = await startProxy(t, new FakeWaker(), { maxClientConnections: 20 });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const idle: net.Socket[] = [];
  t.after(() => idle.forEach((s) => s.destroy()));
  for (let i = 0; i < 19; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    idle.push(s);
    await new Promise((resolve) => s.once('connect', resolve));
  }
  // One left: a real request gets it.
  assert.equal((await request(port, { host: 'app.localhost' })).body, 'ok');
  const keep = net.connect(port, '127.0.0.1');
  keep.on('error', () => {});
  idle.push(keep);
  await new Promise((resolve) => keep.once('connect', resolve));
  const refused = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 3_000);
  assert.ok(refused.closed && refused.status === undefined, `closed without an answer: ${refused.text}`);
  for (const s of idle.splice(0, 10)) s.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal((await request(port, { host: 'app.localhost' })).body, 'ok', 'served again once connections closed');
});
