// Component tests of the cluster hop (hop.ts): an origin proxy whose route goes
// to a second proxy's hop listener with the credential, real upstream servers,
// real sockets. The hop listener refuses requests without the credential, never
// forwards a hop again, and the instance never sees the credential.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { hopHeaders } from './hop.js';
import { freePort } from '../network/free-port.js';
import { FakeWaker, request, startProxy, startUpstream } from './testing.js';
import type { AwakeInstance } from './waker.js';

const CREDENTIAL = 'cluster-token-for-tests';

/** Sends `send` on a new connection to 127.0.0.1:`port`; resolves with what came back by the first line (or HTTP answer). */
function exchange(port: number, send: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(send));
    let got = '';
    s.setEncoding('utf8').on('data', (d: string) => {
      got += d;
      if (got.includes('\n') || got.startsWith('HTTP/')) s.end();
    });
    s.on('close', () => resolve(got)).on('error', reject);
  });
}

/** A proxy whose TCP routes tunnel through the hop listener on `hopPort`, with the credential. */
async function tunnellingTo(t: TestContext, hopPort: number) {
  const waker = new FakeWaker();
  const ensure = waker.ensureAwake.bind(waker);
  waker.ensureAwake = async (id, signal): Promise<AwakeInstance> => ({ ...(await ensure(id, signal)), tunnel: { port: hopPort, headers: hopHeaders(CREDENTIAL) } });
  return startProxy(t, waker);
}

/** Proxy B (public + hop listener) in front of an upstream that echoes its request headers; proxy A routes `app` to B's hop. */
async function twoHosts(t: TestContext) {
  let reached = 0;
  const upstream = await startUpstream(t, (req, res) => {
    reached += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  const b = await startProxy(t, new FakeWaker(), { hopListen: { listen: { host: '127.0.0.1', port: 0 }, credential: CREDENTIAL, serves: (id) => !id.startsWith('@') } });
  b.routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  b.routes.setHttp('elsewhere', { instanceId: '@c/elsewhere', targetPort: 1 });
  const hopPort = b.proxy.hopAddress!.port;
  // A's waker reaches "@b/app" at B's hop listener, with the credential (as the cluster agent's does).
  const waker = new FakeWaker();
  const ensure = waker.ensureAwake.bind(waker);
  waker.ensureAwake = async (id, signal): Promise<AwakeInstance> => ({ ...(await ensure(id, signal)), headers: hopHeaders(CREDENTIAL) });
  const a = await startProxy(t, waker);
  a.routes.setHttp('app', { instanceId: '@b/app', targetPort: hopPort });
  return { a, b, hopPort, reached: () => reached };
}

test('a hop carries the credential to the peer\'s hop listener, which strips it; the instance sees the client as the first proxy saw it', async (t) => {
  const { a } = await twoHosts(t);
  const r = await request(a.port, { host: 'app.localhost', headers: { 'x-forwarded-for': '6.6.6.6', 'proxy-authorization': 'Bearer the-clients-own' } });
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as Record<string, string>;
  assert.equal(seen['proxy-authorization'], undefined, 'the instance must not see the cluster credential');
  assert.doesNotMatch(r.body, new RegExp(CREDENTIAL));
  // A does not trust the client's X-Forwarded-For; B trusts A's (an authenticated hop) and appends A's address.
  assert.equal(seen['x-forwarded-for'], '127.0.0.1, 127.0.0.1');
  assert.equal(seen['x-forwarded-host'], 'app.localhost');
});

test('the hop listener refuses a request without the credential, or with another, before it is routed (407)', async (t) => {
  const { hopPort, reached } = await twoHosts(t);
  for (const headers of [{}, { 'proxy-authorization': 'Bearer not-the-token' }, { 'proxy-authorization': `Basic ${CREDENTIAL}` }, { authorization: `Bearer ${CREDENTIAL}` }]) {
    const r = await request(hopPort, { host: 'app.localhost', headers });
    assert.equal(r.status, 407, JSON.stringify(headers));
    assert.equal(r.headers['proxy-authenticate'], 'Bearer realm="flick-cluster"');
    assert.match(r.body, /cluster/);
  }
  const twice = await new Promise<string>((resolve, reject) => {
    const s = net.connect(hopPort, '127.0.0.1', () => s.end(`GET / HTTP/1.1\r\nHost: app.localhost\r\nProxy-Authorization: Bearer ${CREDENTIAL}\r\nProxy-Authorization: Bearer ${CREDENTIAL}\r\nConnection: close\r\n\r\n`));
    let out = '';
    s.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', () => resolve(out)).on('error', reject);
  });
  assert.match(twice, /^HTTP\/1\.1 407 /);
  assert.equal(reached(), 0, 'no refused request reached the instance');
  // An upgrade is refused the same way.
  const upgrade = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: hopPort, headers: { host: 'app.localhost', connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('response', (res) => (res.resume(), resolve(res.statusCode ?? 0)));
    req.on('upgrade', () => resolve(101));
    req.on('error', reject);
    req.end();
  });
  assert.equal(upgrade, 407);
  assert.equal(reached(), 0);
  // With the credential it is served.
  assert.equal((await request(hopPort, { host: 'app.localhost', headers: { 'proxy-authorization': `Bearer ${CREDENTIAL}` } })).status, 200);
});

test('a hop is never forwarded again: the hop listener answers 421 for another host\'s instance', async (t) => {
  const { hopPort } = await twoHosts(t);
  const r = await request(hopPort, { host: 'elsewhere.localhost', headers: { 'proxy-authorization': `Bearer ${CREDENTIAL}` } });
  assert.equal(r.status, 421);
  assert.match(r.body, /not on this host: a cluster hop is never forwarded again/);
});

test('the public ingress serves as before, without the credential, and passes no Proxy-Authorization on', async (t) => {
  const { b, reached } = await twoHosts(t);
  const r = await request(b.port, { host: 'app.localhost', headers: { 'proxy-authorization': 'Bearer whatever', 'x-forwarded-for': '6.6.6.6' } });
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as Record<string, string>;
  assert.equal(seen['proxy-authorization'], undefined);
  assert.equal(seen['x-forwarded-for'], '127.0.0.1', 'the public ingress does not trust a client\'s X-Forwarded-For');
  assert.equal(reached(), 1);
});

test('raw TCP crosses the hop as a CONNECT tunnel with the credential; without it the hop listener refuses the tunnel', async (t) => {
  const echo = net.createServer((s) => s.on('data', (d) => s.write(`echo ${d}`)));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.after(() => echo.close());
  const [bPort, aPort] = [await freePort(), await freePort()];
  const b = await startProxy(t, new FakeWaker(), { hopListen: { listen: { host: '127.0.0.1', port: 0 }, credential: CREDENTIAL, serves: (id) => !id.startsWith('@') } });
  b.routes.setTcp(bPort, { instanceId: 'i-1', targetPort: (echo.address() as net.AddressInfo).port });
  b.routes.setTcp(await freePort(), { instanceId: '@c/other', targetPort: 1 });
  await b.proxy.settled();
  const a = await tunnellingTo(t, b.proxy.hopAddress!.port);
  // A's route for B's instance names B's host port; the bytes go through B's hop listener.
  a.routes.setTcp(aPort, { instanceId: '@b/app', targetPort: bPort });
  await a.proxy.settled();
  assert.equal(await exchange(aPort, 'ping\n'), 'echo ping\n');
  const hopPort = b.proxy.hopAddress!.port;
  assert.match(await exchange(hopPort, `CONNECT flick-tcp:${bPort} HTTP/1.1\r\nHost: flick-tcp:${bPort}\r\n\r\n`), /^HTTP\/1\.1 407 /);
  assert.match(await exchange(hopPort, `CONNECT flick-tcp:${bPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer not-it\r\n\r\n`), /^HTTP\/1\.1 407 /);
  const other = b.routes.tcpPorts().find((p) => p !== bPort)!;
  assert.match(await exchange(hopPort, `CONNECT flick-tcp:${other} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer ${CREDENTIAL}\r\n\r\n`), /^HTTP\/1\.1 421 /);
  // The public ingress still answers CONNECT with 405.
  assert.match(await exchange(b.port, `CONNECT flick-tcp:${bPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer ${CREDENTIAL}\r\n\r\n`), /^HTTP\/1\.1 405 /);
});

test('a service port reached over the hop skips a member that refuses the connection, as on its own host', async (t) => {
  const echo = net.createServer((s) => s.on('data', (d) => s.write(`echo ${d}`)));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.after(() => echo.close());
  let accepted = 0;
  echo.on('connection', () => (accepted += 1));
  const [bPort, aPort] = [await freePort(), await freePort()];
  // On B, m-dead answers at 127.0.0.2, where nothing listens on the echo's port: its connection is refused.
  const bWaker = new FakeWaker();
  const wake = bWaker.ensureAwake.bind(bWaker);
  bWaker.ensureAwake = async (id, signal) => ({ ...(await wake(id, signal)), ...(id === 'm-dead' ? { host: '127.0.0.2' } : {}) });
  const b = await startProxy(t, bWaker, { tcpQuietMs: 10, hopListen: { listen: { host: '127.0.0.1', port: 0 }, credential: CREDENTIAL, serves: (id) => !id.startsWith('@') } });
  b.routes.setTcpService(bPort, { service: 'db', members: ['m-dead', 'm-live'], targetPort: (echo.address() as net.AddressInfo).port });
  await b.proxy.settled();
  const a = await tunnellingTo(t, b.proxy.hopAddress!.port);
  a.routes.setTcp(aPort, { instanceId: '@b/db', targetPort: bPort });
  await a.proxy.settled();
  for (let i = 0; i < 4; i++) {
    const got = await exchange(aPort, `hello ${i}\n`);
    assert.equal(got, `echo hello ${i}\n`, `connection ${i} through the hop`);
  }
  assert.ok((bWaker.wakes.get('m-dead') ?? 0) >= 1, 'the refusing member was tried');
  assert.equal(accepted, 4, 'every connection reached the live member once');
});

test("a service balanced on one host reaches a member on another: the hop names the member (Flick-Route), which the app never sees", async (t) => {
  const { a, b, hopPort, reached } = await twoHosts(t);
  // A's service "web" has one member, B's instance "app"; the hop carries its host name as the cluster agent's waker adds it.
  const waker = new FakeWaker();
  const ensure = waker.ensureAwake.bind(waker);
  waker.ensureAwake = async (id, signal): Promise<AwakeInstance> => ({ ...(await ensure(id, signal)), port: hopPort, headers: [...hopHeaders(CREDENTIAL), 'Flick-Route', 'app.localhost'] });
  const c = await startProxy(t, waker);
  // The service's port is the app's (8080 in its guest); the member is reached at the hop listener's port.
  c.routes.setService('web', { service: 'web', members: ['@b/app'], targetPort: 1 });
  const r = await request(c.port, { host: 'web.localhost' });
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as Record<string, string>;
  assert.equal(seen.host, 'web.localhost', 'the app sees the Host the client sent');
  assert.equal(seen['flick-route'], undefined, 'the route name is the hop\'s, not the app\'s');
  assert.equal(reached(), 1);
  // Without the credential the hop still refuses; on the public ingress a client's Flick-Route is ignored (routed by Host).
  assert.equal((await request(hopPort, { host: 'web.localhost', headers: { 'flick-route': 'app.localhost' } })).status, 407);
  const publicly = await request(b.port, { host: 'nothing.localhost', headers: { 'flick-route': 'app.localhost' } });
  assert.equal(publicly.status, 404);
  assert.equal(reached(), 1);
  void a;
});
