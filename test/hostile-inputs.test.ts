// A hostile API client against a real flickd: a few hundred generated
// malformed, oversized and hostile requests (fast-check) on raw sockets, so
// nothing normalizes them first: garbage request lines and headers, random
// paths and bodies with and without the token, chunked garbage, a huge
// Content-Length, slowloris-style partial requests; then path-traversal names
// (`..`, absolute paths, `%2e%2e`, odd unicode, NUL) as image names, tags and
// instance names. Afterwards flickd must still answer, the instance running
// beside all this must still serve, and nothing may exist outside the data dir.
// Every loop is bounded in count and every request in time; loopback only.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { api, appGet, createRunning, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fhost';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(216);
const IMAGE = 'fixtures/hello:1';
const REQUEST_TIMEOUT_MS = 5_000;
/** Per property: whichever comes first. */
const RUNS = 60;
const TIME_LIMIT_MS = 60_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-hostile-'));
const dataDir = path.join(tmp, 'data');
let f: FlickdUnderTest;
let instance: any;
let port = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  await removeFlickd(undefined, PREFIX, dataDir);
  f = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL });
  port = Number(new URL(f.base).port);
  await pushFixtureImage(f, IMAGE, 'hello-server');
  instance = await createRunning(f, IMAGE, { name: 'bystander' });
});

after(async () => {
  await removeFlickd(f, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface RawAnswer {
  /** The status of the first response, if one came. */
  status?: number;
  timedOut: boolean;
}

/** Writes `data` to flickd on a fresh connection and reads until it closes or REQUEST_TIMEOUT_MS passes. */
function raw(data: string | Buffer, timeoutMs = REQUEST_TIMEOUT_MS): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (timedOut: boolean) => {
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve({ ...(m ? { status: Number(m[1]) } : {}), timedOut });
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    s.on('connect', () => s.end(data));
    s.on('data', (d) => {
      got += d.toString('latin1');
      // One answer is all we judge; flickd may keep the connection open for more.
      if (/\r\n\r\n/.test(got)) done(false);
    });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

const auth = () => `Authorization: Bearer ${f.token}\r\n`;

/** flickd answers its API and the bystander instance serves. */
async function stillHealthy(): Promise<void> {
  const list = await api(f, 'GET', '/v1/instances');
  assert.equal(list.status, 200, `flickd answers: ${list.text}`);
  assert.match(await appGet(instance.address, '/', 20_000), /^hello from flick/);
}

/**
 * A server error to hostile input is a bug (an unhandled case); a 4xx or a closed connection is a
 * refusal, and so is 507 Insufficient Storage, flickd's deliberate answer to a body larger than its
 * free disk (src/limits). A request left hanging (no answer, connection still open when the time is
 * up) is neither: it is a failure.
 */
function refusedOrHandled(a: RawAnswer, what: string): void {
  assert.ok(!a.timedOut, `${what}: hung (no answer and no close in time)`);
  assert.ok(a.status === undefined || a.status < 500 || a.status === 507, `${what}: ${a.status}`);
}

/** Refused: a 4xx or a closed connection, in time (a hung request is a failure). */
function refused(a: RawAnswer, what: string): void {
  assert.ok(!a.timedOut, `${what}: hung (no answer and no close in time)`);
  assert.ok(a.status === undefined || (a.status >= 400 && a.status < 500), `${what}: ${a.status}`);
}

const pathChars = fc.oneof(
  fc.constantFrom('/', '..', '.', '%2e', '%2E%2e', '%2f', '%00', '%', '%zz', '%E0%A4%A', '~', '?', '#', ';', '\\', 'é', '%C0%AE', '\u202e', ':', '@'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 8 }),
);
const hostilePath = fc.array(pathChars, { maxLength: 12 }).map((parts) => parts.join('').replace(/[\s]/g, '') || '/');
const prefixes = fc.constantFrom('/v1/', '/v1/instances/', '/v2/', '/v2/a/manifests/', '/v2/a/blobs/', '/v2/a/blobs/uploads/', '/');
const methods = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'FOO');

test('random paths and methods, with and without the token, get a refusal or an answer, never a server error', async () => {
  await fc.assert(
    fc.asyncProperty(methods, prefixes, hostilePath, fc.boolean(), async (method, prefix, p, withToken) => {
      const a = await raw(`${method} ${prefix}${p} HTTP/1.1\r\nHost: x\r\n${withToken ? auth() : ''}Content-Length: 0\r\nConnection: close\r\n\r\n`);
      refusedOrHandled(a, `${method} ${prefix}${p}`);
      if (!withToken && a.status !== undefined) assert.ok([400, 401, 404, 405].includes(a.status), `${method} ${prefix}${p} without a token: ${a.status}`);
    }),
    { numRuns: RUNS * 2, interruptAfterTimeLimit: TIME_LIMIT_MS },
  );
  await stillHealthy();
});

test('garbage request lines and headers are refused and leave flickd answering', async () => {
  const headerName = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 40 });
  const headerValue = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 200 }), fc.constant('x'.repeat(70_000)));
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary-ascii', maxLength: 300 }), fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }), async (line, headers) => {
      const head = headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
      refusedOrHandled(await raw(`${line}\r\n${head}\r\n`), 'garbage request');
      refusedOrHandled(await raw(`GET /v1/instances HTTP/1.1\r\n${auth()}${head}\r\n`), 'garbage headers');
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  );
  await stillHealthy();
});

test('random and oversized bodies to the API create nothing and are refused with a 4xx', async () => {
  const body = fc.oneof(
    fc.json({ maxDepth: 4 }),
    fc.string({ unit: 'binary', maxLength: 500 }),
    fc.record({ image: fc.string(), name: fc.string(), memory_mb: fc.anything(), vcpus: fc.anything(), env: fc.anything(), ports: fc.anything() }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
    fc.constant(`{"image":"${'a'.repeat(3 * 1024 * 1024)}"}`),
  );
  await fc.assert(
    fc.asyncProperty(body, async (b) => {
      const bytes = Buffer.from(b);
      const a = await raw(Buffer.concat([Buffer.from(`POST /v1/instances HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`), bytes]));
      refusedOrHandled(a, `POST ${b.slice(0, 80)}`);
      assert.notEqual(a.status, 201, `created from ${b.slice(0, 200)}`);
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  );
  const list = await api(f, 'GET', '/v1/instances');
  assert.deepEqual(list.json.data.instances.map((i: any) => i.name), ['bystander']);
  await stillHealthy();
});

test('chunked garbage, a huge Content-Length and lying lengths end in a refusal or a closed connection', async () => {
  const chunked = fc.array(fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), maxLength: 20 }), fc.string({ unit: 'binary-ascii', maxLength: 30 }), fc.constant('fffffffffffffffff'), fc.constant('-1')), { maxLength: 8 });
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('/v1/instances', '/v2/a/blobs/uploads/'), chunked, async (p, chunks) => {
      const a = await raw(`POST ${p} HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n${chunks.join('\r\n')}\r\n`);
      refusedOrHandled(a, `chunked ${JSON.stringify(chunks)}`);
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
  );
  for (const p of ['/v1/instances', '/v2/a/blobs/uploads/', '/v2/a/manifests/latest']) {
    for (const len of ['99999999999999', '1e9', '-5', '1, 2', '18446744073709551617']) {
      const a = await raw(`POST ${p} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: ${len}\r\n\r\n{"a":`, 3000);
      refusedOrHandled(a, `${p} Content-Length ${len}`);
    }
    // Both lengths at once (request smuggling): refused.
    const a = await raw(`POST ${p} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/instances HTTP/1.1\r\n\r\n`);
    refused(a, `smuggling on ${p}`);
  }
  await stillHealthy();
});

test('slowloris: many half-sent requests do not stop flickd answering others', async (t) => {
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < 100; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    s.write(`POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 1000000\r\nX-Slow: `);
    sockets.push(s);
  }
  // Trickle one byte per socket a few times while the API keeps answering.
  for (let round = 0; round < 3; round++) {
    for (const s of sockets) s.write('a');
    await stillHealthy();
  }
});

// Names that must never become a path: traversal, absolute, encoded, control and odd unicode.
const HOSTILE_NAMES = [
  '..',
  '../etc',
  '../../../../etc/passwd',
  '/etc/passwd',
  'a/../../b',
  '%2e%2e',
  '%2e%2e%2fetc',
  '..%2f..%2fetc',
  '%252e%252e',
  'a%00b',
  'a\u0000b',
  '.hidden',
  'a/./b',
  'A-Upper',
  'ａｂｃ', // fullwidth
  'a\u202eb', // right-to-left override
  'caf\u00e9',
  '\u2024\u2024', // one-dot leaders that look like ".."
  'x'.repeat(300),
  '',
  ' ',
  'a b',
  'a\nb',
  'a\\b',
];

test('path-traversal and odd names as image names, tags and instance names are refused', async () => {
  const enc = (s: string) => [...Buffer.from(s, 'utf8')].map((c) => (c > 0x20 && c < 0x7f && c !== 0x25 ? String.fromCharCode(c) : `%${c.toString(16).padStart(2, '0')}`)).join('');
  for (const name of HOSTILE_NAMES) {
    // As the registry's repository name and tag, raw on the wire (no client normalizes "..").
    for (const [method, p] of [
      ['PUT', `/v2/${enc(name)}/manifests/latest`],
      ['PUT', `/v2/fixtures/hello/manifests/${enc(name)}`],
      ['GET', `/v2/${enc(name)}/tags/list`],
      ['POST', `/v2/${enc(name)}/blobs/uploads/`],
      ['GET', `/v2/${name.replace(/[\s\u0000]/g, '')}/manifests/latest`],
    ] as const) {
      const a = await raw(`${method} ${p} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
      refused(a, `${method} ${p}`);
    }
    // As an instance name and as an image reference through /v1.
    const asName = await api(f, 'POST', '/v1/instances', { image: IMAGE, name, autostart: false });
    assert.ok(asName.status >= 400 && asName.status < 500, `instance name ${JSON.stringify(name)}: ${asName.status} ${asName.text}`);
    for (const image of [name, `${name}:1`, `fixtures/hello:${name}`]) {
      const asImage = await api(f, 'POST', '/v1/instances', { image, autostart: false });
      assert.ok(asImage.status >= 400 && asImage.status < 500, `image ${JSON.stringify(image)}: ${asImage.status} ${asImage.text}`);
    }
    // As an instance reference in the URL.
    const get = await raw(`GET /v1/instances/${enc(name)}/log HTTP/1.1\r\nHost: x\r\n${auth()}Connection: close\r\n\r\n`);
    refused(get, `GET instance ${JSON.stringify(name)}`);
  }
  // Nothing was written beside the data dir, and the only instance is the one we made.
  assert.deepEqual(fs.readdirSync(tmp), ['data']);
  assert.deepEqual((await api(f, 'GET', '/v1/instances')).json.data.instances.map((i: any) => i.name), ['bystander']);
  await stillHealthy();
});
