// Hostile clients against the ingress proxy of a real flickd, with two real
// microVMs behind it: a target the hostile requests are addressed to, and a
// bystander. Oversized headers, smuggling shapes (CL.TE, TE.CL, duplicate
// lengths), folding, bad chunk sizes, bad Host names (the table of
// src/proxy/testing-hostile.ts), generated garbage heads (fast-check), slow
// heads and slow bodies, websocket upgrade abuse and 3,000 idle connections.
// Each gets a 4xx or a closed connection, never a 5xx, and afterwards the
// proxy, flickd's API, the target and the bystander all still serve.
// Every loop is bounded in count and every request in time; loopback only.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { api, createRunning, removeFlickd, startFlickdWithFixture, type FlickdUnderTest } from '../src/daemon/testing.js';
import { HOSTILE_CASES, rawRequest } from '../src/proxy/testing-hostile.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fphost';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(222);
const IMAGE = 'fixtures/hello:1';
const IDLE_CONNECTIONS = 3_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-proxy-hostile-'));
const dataDir = path.join(tmp, 'data');
let f: FlickdUnderTest;
let proxyPort = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  ({ f, proxyPort } = await startFlickdWithFixture({ dataDir, prefix: PREFIX, pool: POOL, image: IMAGE }));
  await Promise.all([createRunning(f, IMAGE, { name: 'target' }), createRunning(f, IMAGE, { name: 'bystander' })]);
});

after(async () => {
  await removeFlickd(f, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** GET / through the proxy; the status and body. */
function viaProxy(host: string, timeoutMs = 30_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent: false, headers: { host }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host} timed out`)));
    req.on('error', reject);
  });
}

/** The proxy, flickd's API, the target and the bystander all answer. */
async function stillHealthy(): Promise<void> {
  const list = await api(f, 'GET', '/v1/instances');
  assert.equal(list.status, 200, `flickd answers: ${list.text}`);
  for (const name of ['bystander', 'target']) {
    const a = await viaProxy(`${name}.localhost`);
    assert.equal(a.status, 200, `${name}: ${a.body}`);
    assert.match(a.body, /^hello from flick/);
  }
  assert.equal(f.process.exitCode, null, 'flickd is still running');
}

function open(data = ''): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort });
    s.on('error', () => s.destroy());
    s.once('connect', () => {
      if (data) s.write(data);
      resolve(s);
    });
    s.once('close', () => reject(new Error('closed while connecting')));
  });
}

test('every hostile request shape gets its 4xx saying what was wrong, and everything keeps serving', async () => {
  for (const c of HOSTILE_CASES) {
    const a = await rawRequest(proxyPort, c.data('target.localhost'));
    assert.equal(a.status, c.status, `${c.what}: ${a.text.slice(0, 200)}`);
    assert.match(a.text.split('\r\n\r\n').slice(1).join(''), c.says, c.what);
  }
  await stillHealthy();
});

test('generated garbage request lines and headers get a refusal or an answer, never a server error', async () => {
  const headerName = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 30 });
  const headerValue = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 100 }), fc.constant('x'.repeat(20_000)), fc.constantFrom('chunked', '0', '-1', '1e9', 'target.localhost', 'Upgrade', 'websocket'));
  const line = fc.oneof(
    fc.string({ unit: 'binary-ascii', maxLength: 200 }),
    fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PRI', 'get', 'G ET'), fc.string({ unit: 'grapheme-ascii', maxLength: 40 }), fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', '')).map(([m, p, v]) => `${m} /${p} ${v}`),
  );
  await fc.assert(
    fc.asyncProperty(line, fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }), fc.string({ unit: 'binary-ascii', maxLength: 100 }), async (l, headers, body) => {
      const head = headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
      const garbage = await rawRequest(proxyPort, `${l}\r\n${head}\r\n${body}`, 5_000);
      assert.ok(garbage.status === undefined || garbage.status < 500, `${JSON.stringify(l)}: ${garbage.status}`);
      const routed = await rawRequest(proxyPort, `POST / HTTP/1.1\r\nHost: target.localhost\r\n${head}\r\n${body}`, 5_000);
      assert.ok(routed.status === undefined || routed.status < 500, `headers ${JSON.stringify(headers).slice(0, 200)}: ${routed.status}`);
    }),
    { numRuns: 60, interruptAfterTimeLimit: 60_000 },
  );
  await stillHealthy();
});

test('slow heads and slow bodies (200 at once) do not stop the proxy serving the target and the bystander', async (t) => {
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < 100; i++) sockets.push(await open(`GET / HTTP/1.1\r\nHost: target.localhost\r\nX-Slow: `));
  for (let i = 0; i < 100; i++) sockets.push(await open(`POST / HTTP/1.1\r\nHost: ${i % 2 ? 'target' : 'bystander'}.localhost\r\nContent-Length: 1000000\r\n\r\n`));
  for (let round = 0; round < 3; round++) {
    for (const s of sockets) if (!s.destroyed) s.write('a');
    await stillHealthy();
  }
});

test('websocket upgrade abuse: 100 upgrades at once to an app that speaks none, upgrades with garbage after them; all answered or closed', async () => {
  const upgrade = (extra: string) => rawRequest(proxyPort, `GET /ws HTTP/1.1\r\nHost: target.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n${extra}`, 60_000);
  const answers = await Promise.all([
    ...Array.from({ length: 100 }, () => upgrade('')),
    ...Array.from({ length: 20 }, () => upgrade('\x81\xff' + 'garbage'.repeat(100))),
    rawRequest(proxyPort, `GET / HTTP/1.1\r\nHost: target.localhost\r\nConnection: Upgrade\r\nUpgrade: ${'x'.repeat(10_000)}\r\n\r\n`, 60_000),
    rawRequest(proxyPort, `GET / HTTP/1.1\r\nHost: target.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, 60_000),
  ]);
  for (const a of answers) {
    assert.ok(!a.timedOut, 'answered or closed, not left hanging');
    assert.ok(a.status === undefined || a.status < 500, `upgrade: ${a.text.slice(0, 200)}`);
  }
  // The app answers the handshake as a plain request (200); the proxy relays that and closes.
  assert.ok(answers.filter((a) => a.status === 200).length >= 100, 'the plain answers of the app were relayed');
  await stillHealthy();
});

test(`${IDLE_CONNECTIONS} idle connections (loopback) leave the proxy, flickd and both instances serving`, async (t) => {
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < IDLE_CONNECTIONS; i += 100) sockets.push(...(await Promise.all(Array.from({ length: 100 }, () => open()))));
  await stillHealthy();
  // The idle ones stay open (under the cap, before the head timeout) and are cut cleanly when they go.
  assert.ok(sockets.filter((s) => !s.destroyed).length > IDLE_CONNECTIONS * 0.9, 'the idle connections were held, not dropped');
  for (const s of sockets) s.destroy();
  await stillHealthy();
});
