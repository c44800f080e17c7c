import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ConsoleAssets, CONTENT_SECURITY_POLICY } from './assets.js';
import { ConsoleFeed, type FeedController } from './feed.js';
import { createConsoleHandler } from './handler.js';
import { SessionStore } from './session.js';

const TOKEN = 'a-host-token-of-enough-length-000000';
const assetsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-console-assets-'));
fs.mkdirSync(path.join(assetsDir, 'assets'));
fs.writeFileSync(path.join(assetsDir, 'index.html'), '<!doctype html><title>t</title>');
fs.writeFileSync(path.join(assetsDir, 'assets', 'app-abc123.js'), 'console.log(1)');

const apiCalls: string[] = [];
const controller: FeedController = { on: () => () => undefined, list: () => [], get: () => { throw new Error('none'); }, hotStandby: () => ({ budgetBytes: 1, usedBytes: 0, instances: [] }) };
const sessions = new SessionStore();
const feed = new ConsoleFeed({ controller, view: () => ({}) });
const handler = createConsoleHandler({
  sessions,
  feed,
  assets: new ConsoleAssets(assetsDir),
  images: { list: async () => [], manifestPath: async () => '/nonexistent' },
  api: async (req, res) => {
    apiCalls.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"success","data":{}}');
  },
  identify: (req) => (req.headers.authorization === `Bearer ${TOKEN}` ? { kind: 'token' } : { kind: 'anonymous', loopback: true }),
  verifyToken: (t) => t === TOKEN,
});
const server = http.createServer((req, res) => void handler(req, res));
let base = '';

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  feed.dispose();
  server.close();
  fs.rmSync(assetsDir, { recursive: true, force: true });
});

async function signIn(): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/console/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
  assert.equal(r.status, 200);
  return { cookie: r.headers.get('set-cookie')!.split(';')[0]!, csrf: ((await r.json()) as { data: { csrf: string } }).data.csrf };
}

test('pages carry the CSP; hashed assets are immutable, the index is revalidated', async () => {
  const index = await fetch(`${base}/console/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const js = await fetch(`${base}/console/assets/app-abc123.js`);
  assert.match(js.headers.get('cache-control')!, /immutable/);
  assert.equal(js.headers.get('content-encoding'), 'gzip');
  assert.equal((await fetch(`${base}/console/assets/nope.js`)).status, 404);
});

test('a wrong token is refused; the right one gives an HttpOnly session cookie', async () => {
  const wrong = await fetch(`${base}/console/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"token":"nope"}' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('set-cookie'), null);
  const form = await fetch(`${base}/console/api/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
  assert.equal(form.status, 415, 'a cross-site form post cannot sign in');
  const { cookie } = await signIn();
  const s = (await (await fetch(`${base}/console/api/session`, { headers: { cookie } })).json()) as { data: { signed_in: boolean } };
  assert.equal(s.data.signed_in, true);
  assert.equal(((await (await fetch(`${base}/console/api/session`)).json()) as { data: { signed_in: boolean } }).data.signed_in, false);
});

test('mutating API calls need the CSRF token and a same-origin Origin; reads need a session', async () => {
  const { cookie, csrf } = await signIn();
  apiCalls.length = 0;
  assert.equal((await fetch(`${base}/console/api/v1/instances`)).status, 401, 'no session');
  assert.equal((await fetch(`${base}/console/api/v1/instances`, { headers: { cookie } })).status, 200);
  const noCsrf = await fetch(`${base}/console/api/v1/instances/web/stop`, { method: 'PUT', headers: { cookie } });
  assert.equal(noCsrf.status, 403);
  assert.equal(((await noCsrf.json()) as { error: { code: string } }).error.code, 'CSRF_REJECTED');
  assert.equal((await fetch(`${base}/console/api/v1/instances/web/stop`, { method: 'PUT', headers: { cookie, 'x-csrf-token': 'wrong' } })).status, 403);
  assert.equal((await fetch(`${base}/console/api/v1/instances/web/stop`, { method: 'PUT', headers: { cookie, 'x-csrf-token': csrf, origin: 'http://evil.example' } })).status, 403);
  assert.equal((await fetch(`${base}/console/api/v1/instances/web/stop`, { method: 'PUT', headers: { cookie, 'x-csrf-token': csrf } })).status, 200);
  assert.deepEqual(apiCalls, ['GET /v1/instances', 'PUT /v1/instances/web/stop'], 'only the allowed calls reached the API, under /v1');
});

test('a sign-in code needs the token and works once', async () => {
  assert.equal((await fetch(`${base}/console/api/codes`, { method: 'POST' })).status, 401);
  const { cookie, csrf } = await signIn();
  assert.equal((await fetch(`${base}/console/api/codes`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf } })).status, 403, 'a session cannot mint codes');
  const made = await fetch(`${base}/console/api/codes`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(made.status, 201);
  const { path: link } = ((await made.json()) as { data: { path: string } }).data;
  const first = await fetch(`${base}${link}`, { redirect: 'manual' });
  assert.equal(first.status, 303);
  assert.equal(first.headers.get('location'), '/console/');
  assert.match(first.headers.get('set-cookie')!, /HttpOnly; SameSite=Strict/);
  const again = await fetch(`${base}${link}`, { redirect: 'manual' });
  assert.equal(again.headers.get('set-cookie'), null, 'a used code opens nothing');
  assert.match(again.headers.get('location')!, /error=code/);
});
