// Scale to zero for real: one flickd (its own data dir, namespace prefix and
// address pool) with the ingress proxy, the guest helper's static hello server
// as the app (GET / answers "requests <n>" counted by the process, and the
// guest's wall clock), real microVMs suspended to hot and cold standby and
// woken by requests through the proxy. The hot tier pages out at suspend
// (--hot-page-out-after 0), so hot wakes here go through the page-out path.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api as apiOf, createRunning, pushFixtureImage, removeFlickd, runFlick, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 's2zt';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(218);
const IMAGE = 'fixtures/hello:1';
const MAX_PARKED = 250;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-s2z-'));
const dataDir = path.join(tmp, 'data');
let flickd: FlickdUnderTest | undefined;
let base = '';
let proxyPort = 0;
let token = '';

before(async () => {
  await sweepDeadRuns(TAG);
  await sweepLeftovers(PREFIX);
  // No primed pool: cold wakes here restore on the wake's path (test/primed.test.ts has the pool).
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-page-out-after', '0', '--proxy-max-parked', String(MAX_PARKED), '--primed-pool-mb', '0'] });
  ({ base, token } = flickd);
  proxyPort = Number(/proxy: listening on http:\/\/[^:]+:(\d+)/.exec(flickd.log())?.[1] ?? 0);
  assert.ok(proxyPort > 0, 'flickd says where its proxy listens');
  await pushFixtureImage(flickd, IMAGE, 'hello-server');
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function api(method: string, p: string, body?: unknown): ReturnType<typeof apiOf> {
  return apiOf(flickd!, method, p, body);
}

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** GET / through the proxy on a connection of its own. */
function viaProxy(name: string, signal?: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent: false, headers: { host: `${name}.localhost` }, timeout: 60_000, ...(signal ? { signal } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

/** The hello server's request counter in an answer. */
function served(body: string): number {
  const m = /requests (\d+)/.exec(body);
  assert.ok(m, `a hello answer: ${body}`);
  return Number(m[1]);
}

function guestTime(body: string): number {
  return Number(/time (\d+\.\d+)/.exec(body)![1]);
}

function create(name: string, scaleToZero: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<any> {
  return createRunning(flickd!, IMAGE, { name, scale_to_zero: scaleToZero, ...extra });
}

async function get(name: string): Promise<any> {
  return (await api('GET', `/v1/instances/${name}`)).json.data;
}

async function suspend(name: string, tier: 'hot' | 'cold'): Promise<any> {
  const r = await api('PUT', `/v1/instances/${name}/suspend?tier=${tier}`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.data.state, 'standby', r.text);
  assert.equal(r.json.data.standby_tier, tier);
  return r.json.data;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const manual = { policy: 'on', cooldown_time_ms: 600_000 }; // suspended by the tests, never by the clock

test('200 concurrent requests to a sleeping instance: 200 answers, one wake; hot and cold wakes counted by tier', async (t) => {
  await create('burst', manual);
  for (const tier of ['cold', 'hot'] as const) {
    await suspend('burst', tier);
    const before = await get('burst');
    const answers = await Promise.all(Array.from({ length: 200 }, () => viaProxy('burst')));
    assert.deepEqual(answers.map((a) => a.status), new Array(200).fill(200), `${tier}: every request answered`);
    const after = await get('burst');
    assert.equal(after.wakes - before.wakes, 1, `${tier}: exactly one wake`);
    assert.equal(after[`wakes_${tier}`] - before[`wakes_${tier}`], 1, `the wake is counted as ${tier}`);
  }
  const m = (await api('GET', '/v1/instances/burst/metrics')).json.data;
  assert.deepEqual([m.wakes.hot, m.wakes.cold], [1, 1]);
  assert.equal(m.wake_latency_ms.hot.count, 1);
  assert.equal(m.proxy.parked_now, 0);
  assert.ok(m.proxy.parked_total >= 1);
  t.diagnostic(`wake: hot ${m.wake_latency_ms.hot.sum_ms.toFixed(1)} ms, cold ${m.wake_latency_ms.cold.sum_ms.toFixed(1)} ms; hot standby after page-out ${m.hot_bytes_after_page_out} bytes`);
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  assert.match(text, /flick_instance_wakes_total\{instance_id="[0-9a-f]+",name="burst",tier="hot"\} 1/);
  assert.match(text, /flick_instance_wake_duration_seconds_count\{instance_id="[0-9a-f]+",name="burst",tier="cold"\} 1/);
  assert.equal((await fetch(`${base}/metrics`)).status, 401, 'metrics need the token');
});

const PHASES = ['controller', 'vmm', 'clock', 'forward', 'upstream', 'client'];

test('a wake through the proxy shows its phases in flick get and /metrics: all of them, in order, adding up to no more than the total the client waited', async (t) => {
  await create('phases', manual);
  const flick = (...args: string[]) => runFlick(flickd!, path.join(tmp, 'config'), ...args);
  for (const tier of ['cold', 'hot'] as const) {
    await suspend('phases', tier);
    const sent = performance.now();
    const answer = await viaProxy('phases');
    const waited = performance.now() - sent;
    assert.equal(answer.status, 200);
    // The proxy reports once the first byte went to the client: poll until flickd shows it.
    const w = await until(`${tier}: the last wake's whole breakdown in flick get -o json`, async () => {
      const r = await flick('get', 'phases', '-o', 'json');
      assert.equal(r.code, 0, r.stderr);
      const lw = JSON.parse(r.stdout).last_wake;
      return lw?.tier === tier && lw.phases_ms.total !== undefined ? lw : undefined;
    }, 30_000);
    assert.deepEqual(Object.keys(w.phases_ms), [...PHASES, 'total'], `${tier}: every phase, in order`);
    const phases = PHASES.map((p) => w.phases_ms[p] as number);
    assert.ok(phases.every((ms) => ms >= 0), `${tier}: no negative phase: ${JSON.stringify(w.phases_ms)}`);
    const sum = phases.reduce((a, b) => a + b, 0);
    assert.ok(sum <= w.phases_ms.total + 0.01, `${tier}: the phases (${sum} ms) add up to no more than the total (${w.phases_ms.total} ms)`);
    assert.ok(w.phases_ms.total <= waited, `${tier}: the total (${w.phases_ms.total} ms) fits in what the client waited (${waited.toFixed(1)} ms)`);
    assert.ok(w.phases_ms.vmm > 0, `${tier}: the VMM took some time`);
    t.diagnostic(`${tier} wake: ${JSON.stringify(w.phases_ms)}; the client waited ${waited.toFixed(1)} ms`);
    const text = await flick('get', 'phases');
    assert.match(text.stdout, new RegExp(`last wake:\\s+${tier} at .* to the first byte \\(controller [0-9.]+ ms · vmm [0-9.]+ ms · clock`), text.stdout);
  }
  const prom = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  for (const tier of ['cold', 'hot']) {
    for (const p of [...PHASES, 'total']) {
      assert.match(prom, new RegExp(`^flick_instance_wake_phase_seconds_count\\{instance_id="[0-9a-f]+",name="phases",tier="${tier}",phase="${p}"\\} 1$`, 'm'), `${tier} ${p} in /metrics`);
    }
  }
  await api('DELETE', '/v1/instances/phases?force=true');
});

test('a stateful instance keeps its count across sleep and wake; a stateless one starts again from its template', async () => {
  await create('keeper', { ...manual, stateful: true });
  await create('forgetter', manual);
  for (const name of ['keeper', 'forgetter']) {
    await viaProxy(name);
    await viaProxy(name);
  }
  const keep0 = served((await viaProxy('keeper')).body);
  const forget0 = served((await viaProxy('forgetter')).body);
  await suspend('keeper', 'cold');
  await suspend('forgetter', 'cold');
  // Standing still a while: a guest clock left at snapshot time would show it.
  await new Promise((r) => setTimeout(r, 2500));
  const keep1 = await viaProxy('keeper');
  const forget1 = await viaProxy('forgetter');
  assert.equal(served(keep1.body), keep0 + 1, 'stateful: the count goes on');
  assert.ok(served(forget1.body) < forget0, `stateless: the count starts over from the template (${served(forget1.body)} after ${forget0})`);
  for (const a of [keep1, forget1]) assert.ok(Math.abs(guestTime(a.body) - Date.now() / 1000) < 1.5, `the guest clock is right after a cold wake: ${a.body}`);
  // Hot: the paused process goes on, with its clock set before the request reaches the app.
  await suspend('keeper', 'hot');
  await new Promise((r) => setTimeout(r, 2500));
  const keep2 = await viaProxy('keeper');
  assert.equal(served(keep2.body), keep0 + 2);
  assert.ok(Math.abs(guestTime(keep2.body) - Date.now() / 1000) < 1.5, `the guest clock is right after a hot wake: ${keep2.body}`);
});

test('a request racing a suspend is served exactly once', async () => {
  const n0 = served((await viaProxy('keeper')).body);
  const [answer, suspended] = await Promise.all([viaProxy('keeper'), api('PUT', '/v1/instances/keeper/suspend?tier=cold')]);
  assert.equal(answer.status, 200);
  assert.equal(suspended.status, 200);
  assert.equal(served(answer.body), n0 + 1);
  assert.equal(served((await viaProxy('keeper')).body), n0 + 2, 'the racing request reached the app once, and its effect survived');
});

test('with policy idle an open connection survives a suspend and gets its answer after its next byte; with on it keeps the instance up', async () => {
  await create('idler', { policy: 'idle', cooldown_time_ms: 300 });
  await create('stayer', { policy: 'on', cooldown_time_ms: 300 });
  const ask = (socket: net.Socket, name: string) =>
    new Promise<string>((resolve, reject) => {
      let got = '';
      const onData = (d: Buffer) => {
        got += d.toString();
        const m = /content-length: (\d+)\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/i.exec(got);
        if (m && Buffer.byteLength(m[2]!) >= Number(m[1])) {
          socket.off('data', onData);
          resolve(got);
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.write(`GET / HTTP/1.1\r\nHost: ${name}.localhost\r\nConnection: keep-alive\r\n\r\n`);
    });
  const open = (): Promise<net.Socket> => new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const idle = await open();
  const stay = await open();
  try {
    assert.match(await ask(idle, 'idler'), /hello from flick/);
    assert.match(await ask(stay, 'stayer'), /hello from flick/);
    const wakes0 = (await get('idler')).wakes;
    const slept = await api('GET', '/v1/instances/idler/wait?state=standby&timeout_ms=60000');
    assert.equal(slept.status, 200, 'idle: standby with the connection open');
    assert.equal(idle.destroyed, false, 'the client connection stays open');
    const again = await ask(idle, 'idler');
    assert.match(again, /^HTTP\/1\.1 200/);
    assert.equal((await get('idler')).wakes, wakes0 + 1, 'the next byte woke it');
    assert.equal((await get('stayer')).state, 'running', 'on: an open connection keeps it up');
  } finally {
    idle.destroy();
    stay.destroy();
  }
  assert.equal((await api('GET', '/v1/instances/stayer/wait?state=standby&timeout_ms=60000')).status, 200, 'on: standby once the connection closed');
});

test('a client that leaves while parked is dropped and the instance goes back to sleep', async () => {
  await suspend('burst', 'cold');
  const ac = new AbortController();
  const left = viaProxy('burst', ac.signal).catch((err: Error) => err);
  await until('the request to park', async () => ((await api('GET', '/v1/instances/burst/metrics')).json.data.proxy.parked_now === 1 ? true : undefined), 10_000);
  ac.abort();
  assert.ok((await left) instanceof Error);
  const m = await until('the parking queue to empty', async () => {
    const d = (await api('GET', '/v1/instances/burst/metrics')).json.data;
    return d.proxy.parked_now === 0 ? d : undefined;
  });
  assert.equal(m.proxy.parked_now, 0);
  // Nothing holds it awake: the in-flight count went back to zero, so a suspend is not refused.
  const s = await api('PUT', '/v1/instances/burst/suspend?tier=cold');
  assert.equal(s.json.data.state, 'standby', 'nothing left in flight');
});

test('a full parking queue answers 503 with Retry-After', async () => {
  await suspend('burst', 'cold');
  const answers = await Promise.all(Array.from({ length: MAX_PARKED + 100 }, () => viaProxy('burst')));
  const refused = answers.filter((a) => a.status === 503);
  assert.ok(refused.length >= 1, 'some requests overflowed the queue');
  assert.equal(refused.length + answers.filter((a) => a.status === 200).length, answers.length, 'every other request was answered');
  assert.ok(refused.every((a) => a.headers['retry-after'] === '1'));
  assert.ok((await api('GET', '/v1/instances/burst/metrics')).json.data.proxy.overflows >= 1);
});

test('instances created from an existing template sleep without a network namespace; the last one wakes and answers', async () => {
  const namespaces = () => (fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => n.startsWith(PREFIX)).length : 0);
  await create('many-0', manual);
  const before = namespaces();
  const N = 40;
  const made = [];
  for (let i = 1; i <= N; i++) made.push(await create(`many-${i}`, manual));
  assert.ok(made.every((m) => m.state === 'standby' && m.standby_tier === 'cold' && m.address === null), 'cold standby, no address');
  assert.ok(namespaces() <= before, `no namespace per sleeping instance (${before} before, ${namespaces()} after ${N} creates)`);
  const [first, last] = [await viaProxy('many-1'), await viaProxy(`many-${N}`)];
  assert.deepEqual([first.status, last.status], [200, 200], last.body);
  assert.equal(served(last.body), served(first.body), 'the last wakes from the template as the first did');
  const awake = await get(`many-${N}`);
  assert.equal(awake.state, 'running');
  assert.match(awake.address, /^10\.218\./, 'the address of the network it took at its wake');
  for (let i = 0; i <= N; i++) assert.equal((await api('DELETE', `/v1/instances/many-${i}?force=true`)).status, 200);
});

test('instances of one image and configuration share one template; it goes with the last of them', async () => {
  const a = await create('twin-a', manual);
  const b = await create('twin-b', manual);
  assert.equal(b.state, 'standby', 'the second does not boot: the template exists');
  assert.ok(a.template && a.template === b.template, 'one template');
  const answers = await Promise.all([viaProxy('twin-a'), viaProxy('twin-b')]);
  assert.deepEqual(answers.map((x) => x.status), [200, 200], 'each answers at its own address');
  assert.equal((await get('twin-b')).wakes_cold, 1, 'b woke from the shared template');
  // Every scale-to-zero instance of this file has this configuration: all share it.
  const all = (await api('GET', '/v1/instances')).json.data.instances as any[];
  assert.deepEqual([...new Set(all.map((i) => i.template))], [a.template]);
  const templates = path.join(dataDir, 'templates');
  for (const i of all.slice(0, -1)) assert.equal((await api('DELETE', `/v1/instances/${i.name}?force=true`)).status, 200);
  assert.ok(fs.existsSync(path.join(templates, a.template)), 'kept while an instance uses it');
  assert.equal((await api('DELETE', `/v1/instances/${all.at(-1).name}?force=true`)).status, 200);
  assert.ok(!fs.existsSync(path.join(templates, a.template)), 'removed with its last instance');
});
