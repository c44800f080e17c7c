// Component tests of HTTP forwarding: real upstream servers on port 0, a real
// proxy, a fake Waker whose instances are always awake.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { FakeWaker, request, startProxy, startUpstream, until } from './testing.js';

test('keep-alive: many requests on one client connection reuse one upstream connection', async (t) => {
  const upstream = await startUpstream(t, (req, res) => res.end(`hello ${req.url}`));
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 5; i++) {
    const answer = await request(port, { host: 'app.localhost', path: `/${i}`, agent });
    assert.equal(answer.status, 200);
    assert.equal(answer.body, `hello /${i}`);
  }
  assert.equal(upstream.connections(), 1);
  assert.equal(waker.connections.get('i-1'), 1, 'one client connection, opened once');
  assert.equal(waker.wakes.get('i-1'), 1);
  agent.destroy();
  await until(() => waker.connections.get('i-1') === 0, 'the client connection to be reported closed');
  assert.equal(waker.inFlight.get('i-1'), 0);
});

test('chunked bodies stream both ways: each echoed chunk arrives before the request ends', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    req.on('data', (chunk: Buffer) => res.write(chunk));
    req.on('end', () => res.end('|end'));
  });
  const { port, routes } = await startProxy(t, new FakeWaker());
  routes.setHttp('echo', { instanceId: 'i-1', targetPort: upstream.port });
  const received = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { host: 'echo.localhost', 'transfer-encoding': 'chunked' } });
    req.on('error', reject);
    req.on('response', (res) => {
      assert.equal(res.headers['transfer-encoding'], 'chunked');
      let body = '';
      let sent = 1;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        // Only send the next chunk once the previous one came back: a buffering proxy would hang here.
        if (sent < 3 && body.endsWith(`ping${sent}`)) {
          sent += 1;
          req.write(`ping${sent}`);
          if (sent === 3) req.end();
        }
      });
      res.on('end', () => resolve(body));
    });
    req.flushHeaders();
    req.write('ping1');
  });
  assert.equal(received, 'ping1ping2ping3|end');
});

test('Content-Length bodies pass through with their length', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const text = `${req.headers['content-length']}:${req.headers['transfer-encoding'] ?? 'none'}:${body}`;
      res.writeHead(201, { 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  const { port, routes } = await startProxy(t, new FakeWaker());
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const answer = await request(port, { host: 'app.localhost', method: 'PUT', body: 'twelve bytes' });
  assert.equal(answer.status, 201);
  assert.equal(answer.body, '12:none:twelve bytes');
  assert.equal(answer.headers['content-length'], String(answer.body.length));
});

test('routing by Host: case-insensitive, port ignored, 404 naming the host for unknown names', async (t) => {
  const a = await startUpstream(t, (_req, res) => res.end('from a'));
  const b = await startUpstream(t, (_req, res) => res.end('from b'));
  const { port, routes } = await startProxy(t, new FakeWaker());
  routes.setHttp('a', { instanceId: 'i-a', targetPort: a.port });
  routes.setHttp('b', { instanceId: 'i-b', targetPort: b.port });
  assert.equal((await request(port, { host: 'A.LocalHost:8080' })).body, 'from a');
  assert.equal((await request(port, { host: 'b.localhost' })).body, 'from b');
  const missing = await request(port, { host: 'c.localhost:8080' });
  assert.equal(missing.status, 404);
  assert.match(missing.headers['content-type'] ?? '', /^text\/plain/);
  assert.match(missing.body, /no instance is routed at host "c\.localhost:8080"/);
  assert.match(missing.body, /flick ls/);
  routes.deleteHttp('a');
  assert.equal((await request(port, { host: 'a.localhost' })).status, 404);
});

test('the instance sees X-Forwarded-* and no hop-by-hop fields; the client sees none from the instance', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    res.setHeader('Keep-Alive', 'timeout=5');
    res.setHeader('X-Internal', 'secret');
    res.setHeader('Connection', 'X-Internal');
    res.end(JSON.stringify(req.headers));
  });
  const { port, routes } = await startProxy(t, new FakeWaker(), { via: 'flick' });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const answer = await request(port, { host: 'app.localhost', headers: { connection: 'X-Hop', 'x-hop': '1', 'x-forwarded-for': '6.6.6.6' } });
  const seen = JSON.parse(answer.body) as Record<string, string>;
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen['x-forwarded-host'], 'app.localhost');
  assert.equal(seen['via'], '1.1 flick');
  assert.equal(seen['host'], 'app.localhost');
  assert.equal(seen['x-hop'], undefined);
  assert.equal(answer.headers['x-internal'], undefined);
  assert.equal(answer.headers['keep-alive'], 'timeout=65', "the proxy's own keep-alive, not the instance's");
  assert.equal(answer.headers['via'], '1.1 flick');
});

test('an instance that refuses connections gives 502 naming the instance and port', async (t) => {
  const gone = await startUpstream(t, (_req, res) => res.end());
  const deadPort = gone.port;
  await new Promise<void>((resolve) => gone.server.close(() => resolve()));
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('app', { instanceId: 'i-1', targetPort: deadPort });
  const answer = await request(port, { host: 'app.localhost' });
  assert.equal(answer.status, 502);
  assert.match(answer.body, new RegExp(`instance i-1 did not answer on port ${deadPort}: ECONNREFUSED`));
  assert.equal(waker.inFlight.get('i-1'), 0);
});

test('websocket upgrade: after the 101 bytes flow both ways, and the upgraded connection counts as in flight', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end());
  upstream.server.on('upgrade', (req, socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n\r\n`);
    socket.pipe(socket);
  });
  const waker = new FakeWaker();
  const { port, routes } = await startProxy(t, waker);
  routes.setHttp('ws', { instanceId: 'i-1', targetPort: upstream.port });
  const socket = await new Promise<import('node:net').Socket>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, headers: { host: 'ws.localhost', connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('upgrade', (res, s) => {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers.upgrade, 'websocket');
      resolve(s);
    });
    req.on('response', (res) => reject(new Error(`expected 101, got ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
  t.after(() => socket.destroy());
  const echoed = await new Promise<string>((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.write('frame-1');
  });
  assert.equal(echoed, 'frame-1');
  assert.equal(waker.inFlight.get('i-1'), 1);
  socket.destroy();
  await until(() => waker.inFlight.get('i-1') === 0, 'the upgraded connection to finish');
});

test('an upgrade to an unknown host gets 404 and is closed', async (t) => {
  const { port } = await startProxy(t, new FakeWaker());
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, headers: { host: 'nope.localhost', connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('upgrade', () => reject(new Error('upgraded to an unknown host')));
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 404);
});

test('TLS termination: HTTPS in with the given certificate, plain HTTP to the instance', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'flick-test-proxy-tls-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=app.localhost', '-addext', 'subjectAltName=DNS:app.localhost', '-keyout', key, '-out', cert,
  ]);
  const certPem = await fs.readFile(cert);
  const upstream = await startUpstream(t, (req, res) => res.end(`proto=${req.headers['x-forwarded-proto']}`));
  const { port, routes } = await startProxy(t, new FakeWaker(), { tls: { cert: certPem, key: await fs.readFile(key) } });
  routes.setHttp('app', { instanceId: 'i-1', targetPort: upstream.port });
  const body = await new Promise<string>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername: 'app.localhost', ca: certPem, headers: { host: 'app.localhost' }, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(body, 'proto=https');
});
