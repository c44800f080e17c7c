// The primed pool for real: one flickd (its own data dir, namespace prefix and address pool) with
// the ingress proxy and --primed-pool-mb, the guest helper's static hello server as a stateless
// scale-to-zero app. Its first cold wake restores on the wake's path and puts its template in
// demand; the pool then restores a VM of it paused, and the next cold wake resumes that one:
// served right, with the guest's clock right, shown as a primed wake in flick get and /metrics.
// Removing the instance (the template's last) empties the pool: no QEMU, namespace or folder left.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api as apiOf, createRunning, proxyPortOf, pushFixtureImage, removeFlickd, runFlick, startFlickd, until, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { isAlive } from '../src/vmm/qemu/qemu-process.js';

const TAG = 'prmt';
const PREFIX = runPrefix(TAG);
const POOL = runPool(217);
const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-primed-'));
const dataDir = path.join(tmp, 'data');
const primedDir = path.join(dataDir, 'primed');
let flickd: FlickdUnderTest | undefined;
let proxyPort = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  await sweepLeftovers(PREFIX);
  // Hot standby off: every suspend is cold, the tier the pool serves.
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-standby-budget', '0', '--primed-pool-mb', '256'] });
  proxyPort = proxyPortOf(flickd);
  await pushFixtureImage(flickd, IMAGE, 'hello-server');
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const api = (method: string, p: string, body?: unknown) => apiOf(flickd!, method, p, body);

function viaProxy(name: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent: false, headers: { host: `${name}.localhost` }, timeout: 60_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
}

async function pool(): Promise<{ vms: number; hits: number; misses: number; used_bytes: number; budget_bytes: number }> {
  return (await api('GET', '/v1/metrics')).json.data.primed_pool;
}

/** QEMU processes whose run folder is in the pool's folder (taken or not), with their namespaces. */
async function primedQemus(): Promise<Array<{ pid: number; netns: string }>> {
  const out: Array<{ pid: number; netns: string }> = [];
  for (const n of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmd.includes('qemu-system') || !cmd.includes(`${primedDir}/`)) continue;
    const netns = await new Promise<string>((r) => execFile('ip', ['netns', 'identify', n], (_e, o) => r(String(o ?? '').trim())));
    out.push({ pid: Number(n), netns });
  }
  return out;
}

/** A process that runs (a zombie has ended: its parent, the killed flickd, is gone and nobody reaped it yet). */
const alive = isAlive;

function namespaces(): string[] {
  return fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : [];
}

test('a cold wake of a stateless instance resumes a primed VM once the pool filled: right answer, right clock, shown as primed; rm empties the pool', async (t) => {
  const manual = { policy: 'on', cooldown_time_ms: 600_000 };
  await createRunning(flickd!, IMAGE, { name: 'solo', scale_to_zero: manual });
  const suspend = async () => {
    const r = await api('PUT', '/v1/instances/solo/suspend?tier=cold');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.json.data.state, r.json.data.standby_tier], ['standby', 'cold']);
  };
  await suspend();
  assert.equal((await viaProxy('solo')).status, 200, 'the first cold wake restores as before');
  assert.equal((await pool()).misses, 1, 'it found no primed VM');

  const filled = await until('a primed VM in the pool', async () => ((await pool()).vms >= 1 ? pool() : undefined), 60_000);
  assert.ok(filled.used_bytes > 0 && filled.used_bytes <= filled.budget_bytes, `within its budget: ${JSON.stringify(filled)}`);
  const pooled = await primedQemus();
  assert.equal(pooled.length, filled.vms, 'one QEMU per primed VM');
  assert.ok(pooled.every((q) => q.netns.startsWith(PREFIX)), `each in a namespace of the pool: ${JSON.stringify(pooled)}`);
  t.diagnostic(`pool: ${filled.vms} VM(s), ${(filled.used_bytes / 1024 / 1024).toFixed(1)} MiB`);

  await suspend();
  // Standing still a while: a guest clock left at template time would show it.
  await new Promise((r) => setTimeout(r, 2500));
  const sent = performance.now();
  const answer = await viaProxy('solo');
  const waited = performance.now() - sent;
  assert.equal(answer.status, 200);
  assert.match(answer.body, /requests \d+/, `the hello server answered: ${answer.body}`);
  const guest = Number(/time (\d+\.\d+)/.exec(answer.body)![1]);
  assert.ok(Math.abs(guest - Date.now() / 1000) < 1.5, `the app saw its clock right on its first request: guest ${guest}, host ${Date.now() / 1000}`);

  const flick = (...args: string[]) => runFlick(flickd!, path.join(tmp, 'config'), ...args);
  const w = await until('the primed wake in flick get -o json', async () => {
    const r = await flick('get', 'solo', '-o', 'json');
    const lw = JSON.parse(r.stdout).last_wake;
    return lw?.tier === 'primed' && lw.phases_ms.total !== undefined ? lw : undefined;
  }, 30_000);
  t.diagnostic(`primed wake: ${JSON.stringify(w.phases_ms)}; the client waited ${waited.toFixed(1)} ms`);
  assert.ok(w.phases_ms.total <= waited);
  const view = (await api('GET', '/v1/instances/solo')).json.data;
  assert.equal(view.wakes_cold, 2, 'a primed wake is a cold wake');
  const served = pooled.find((q) => q.pid === view.pid);
  assert.ok(served, `the instance runs in the primed VM (pid ${view.pid} among ${JSON.stringify(pooled)})`);
  const stats = await pool();
  assert.equal(stats.hits, 1);
  const prom = await (await fetch(`${flickd!.base}/metrics`, { headers: { authorization: `Bearer ${flickd!.token}` } })).text();
  assert.match(prom, /^flick_instance_primed_wakes_total\{instance_id="[0-9a-f]+",name="solo"\} 1$/m);
  assert.match(prom, /^flick_instance_wake_phase_seconds_count\{instance_id="[0-9a-f]+",name="solo",tier="primed",phase="total"\} 1$/m);
  assert.match(prom, /^flick_primed_pool_hits_total 1$/m);
  assert.match((await flick('get', 'solo')).stdout, /last wake:\s+primed at /);

  // The pool refills; then the instance goes, and with it its template and every primed VM of it.
  await until('the pool refilled', async () => ((await pool()).vms >= 1 ? true : undefined), 60_000);
  const before = await primedQemus();
  assert.ok(before.length >= 2, `the instance's VM and the pool's: ${JSON.stringify(before)}`);
  const rm = await api('DELETE', '/v1/instances/solo?force=true');
  assert.equal(rm.status, 200, rm.text);
  await until('no primed QEMU, namespace or folder left', async () => {
    const left = { qemus: (await primedQemus()).length, vms: (await pool()).vms, folders: fs.existsSync(primedDir) ? fs.readdirSync(primedDir) : [], netns: before.map((q) => q.netns).filter((ns) => namespaces().includes(ns)) };
    return left.qemus === 0 && left.vms === 0 && left.folders.length === 0 && left.netns.length === 0 ? true : undefined;
  }, 30_000);
});

test('flickd killed with a VM in the pool: the next flickd ends it and removes its folder; a clean stop leaves none', async () => {
  await createRunning(flickd!, IMAGE, { name: 'crashy', scale_to_zero: { policy: 'on', cooldown_time_ms: 600_000 } });
  assert.equal((await api('PUT', '/v1/instances/crashy/suspend?tier=cold')).status, 200);
  assert.equal((await viaProxy('crashy')).status, 200);
  await until('a primed VM in the pool', async () => ((await pool()).vms >= 1 ? true : undefined), 60_000);
  const bound = (await api('GET', '/v1/instances/crashy')).json.data.pid as number;
  const orphans = (await primedQemus()).filter((q) => q.pid !== bound);
  assert.ok(orphans.length >= 1, 'an unbound primed QEMU');
  await flickd!.stop('SIGKILL');
  assert.ok(orphans.every((q) => alive(q.pid)), 'a killed flickd leaves its pool behind');
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-standby-budget', '0', '--primed-pool-mb', '256'] });
  proxyPort = proxyPortOf(flickd);
  await until('the unbound primed QEMUs ended and their folders gone', async () => {
    const left = orphans.filter((q) => alive(q.pid));
    const folders = fs.existsSync(primedDir) ? fs.readdirSync(primedDir) : [];
    const done = left.length === 0 && orphans.every((q) => !namespaces().includes(q.netns)) && folders.length === (await primedQemus()).length;
    return done ? true : undefined;
  }, 30_000);
  assert.equal((await api('GET', '/v1/instances/crashy')).json.data.pid, bound, 'the running instance was adopted, its primed VM with it');
  // The instance sleeps and wakes again: the new flickd's pool fills; a clean stop ends what it holds.
  assert.equal((await api('PUT', '/v1/instances/crashy/suspend?tier=cold')).status, 200);
  assert.equal((await viaProxy('crashy')).status, 200);
  await until('the new pool filled', async () => ((await pool()).vms >= 1 ? true : undefined), 60_000);
  const running = (await api('GET', '/v1/instances/crashy')).json.data.pid as number;
  const pooled = (await primedQemus()).filter((q) => q.pid !== running);
  await flickd!.stop();
  assert.ok(pooled.length >= 1 && pooled.every((q) => !alive(q.pid)), `a clean stop ends the pool's VMs: ${JSON.stringify(pooled)}`);
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--primed-pool-mb', '0'] });
});
