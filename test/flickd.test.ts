// flickd for real: a flickd process on a free port with its own data dir,
// network namespace prefix and address pool; a Flick image (the guest helper's
// static hello server, the built kernel and initrd) pushed over /v2; real
// microVMs started, stopped, crashed, suspended and woken through /v1, the
// ingress proxy and the CLI; and flickd killed with SIGKILL and started again.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api as apiOf, createRunning as createRunningOf, pushFixtureImage, removeFlickd, startFlickd as startFlickdUnderTest, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fkd';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(214);
const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-flickd-'));
const dataDir = path.join(tmp, 'data');
let flickd: FlickdUnderTest | undefined;

async function startFlickd(): Promise<void> {
  flickd = await startFlickdUnderTest({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0'] });
}

function stopFlickd(signal: NodeJS.Signals): Promise<void> {
  const f = flickd;
  flickd = undefined;
  return f ? f.stop(signal) : Promise.resolve();
}

function api(method: string, p: string, body?: unknown): ReturnType<typeof apiOf> {
  if (!flickd) throw new Error('flickd is not running');
  return apiOf(flickd, method, p, body);
}

/** GET / of an instance's app, directly at its host-reachable address or through the proxy with a Host header. */
function hello(url: string, hostHeader?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: hostHeader ? { host: hostHeader } : {}, timeout: 60_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
  });
}

function createRunning(body: Record<string, unknown>): Promise<any> {
  return createRunningOf(flickd!, IMAGE, body);
}

before(async () => {
  await sweepDeadRuns(TAG);
  await sweepLeftovers(PREFIX);
  await startFlickd();
  await pushFixtureImage(flickd!, IMAGE, 'hello-server');
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('an instance created through /v1 boots and answers at its address; list, get, log and images show it', async () => {
  const web = await createRunning({ name: 'web' });
  assert.equal(web.state, 'running');
  assert.match(await hello(`http://${web.address}:8080/`), /hello from flick/);
  assert.deepEqual((await api('GET', '/v1/instances')).json.data.instances.map((i: any) => i.name), ['web']);
  assert.equal((await api('GET', '/v1/instances/web')).json.data.id, web.id);
  const log = await api('GET', '/v1/instances/web/log');
  assert.equal(log.status, 200);
  assert.deepEqual((await api('GET', '/v1/images')).json.data.images.map((i: any) => i.ref), [IMAGE]);
});

test('bad requests get a 4xx with a message that says what to do, and flickd stays healthy', async () => {
  assert.equal((await api('POST', '/v1/instances', { image: IMAGE, name: 'idle', autostart: false })).status, 201);
  const table: Array<[string, string, string, unknown, number, RegExp]> = [
    ['malformed JSON', 'POST', '/v1/instances', '{"image": ', 400, /not valid JSON/],
    ['unknown image', 'POST', '/v1/instances', { image: 'fixtures/nope:1' }, 404, /not found/],
    ['memory "lots"', 'POST', '/v1/instances', { image: IMAGE, memory_mb: 'lots' }, 400, /memory_mb must be a whole number of MiB, e\.g\. 256/],
    ['duplicate name', 'POST', '/v1/instances', { image: IMAGE, name: 'idle' }, 409, /already exists/],
    ['stop of a stopped instance', 'PUT', '/v1/instances/idle/stop', undefined, 409, /cannot stop instance "idle": it is stopped/],
    ['log of an unknown id', 'GET', '/v1/instances/ghost/log', undefined, 404, /instance "ghost" not found/],
  ];
  for (const [what, method, p, body, status, message] of table) {
    const r = await api(method, p, body);
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.json.status, 'error', what);
    assert.match(r.json.error.message, message, what);
  }
  assert.equal((await api('GET', '/v1/instances')).status, 200);
  assert.equal((await api('DELETE', '/v1/instances/idle')).status, 200);
});

test('flickd killed with SIGKILL and started again re-adopts the running VM and loses nothing', async () => {
  const before = (await api('GET', '/v1/instances/web')).json.data;
  await stopFlickd('SIGKILL');
  assert.match(await hello(`http://${before.address}:8080/`), /hello from flick/, 'the VM runs on without flickd');
  await startFlickd();
  const afterRestart = (await api('GET', '/v1/instances/web')).json.data;
  assert.equal(afterRestart.state, 'running');
  assert.equal(afterRestart.pid, before.pid, 'the same VM, not a new one');
  assert.match(await hello(`http://${afterRestart.address}:8080/`), /hello from flick/);
  // The adopted VM is fully controlled: it stops and starts again.
  assert.equal((await api('PUT', '/v1/instances/web/stop')).json.data.state, 'stopped');
  assert.equal((await api('PUT', '/v1/instances/web/start')).status, 200);
  const again = (await api('GET', '/v1/instances/web/wait?state=running&timeout_ms=180000')).json.data;
  assert.match(await hello(`http://${again.address}:8080/`), /hello from flick/);
});

test('an app that exits with an error is marked and restarted by restart_policy on-failure', async () => {
  const crashy = await createRunning({ name: 'crashy', restart_policy: 'on-failure' });
  await hello(`http://${crashy.address}:8080/exit/3`).catch(() => {}); // the app answers, then exits 3
  let restarted;
  for (;;) {
    const r = (await api('GET', '/v1/instances/crashy')).json.data;
    if (r.restarts >= 1 && r.state === 'running') {
      assert.equal(r.last_exit_code, 3);
      restarted = r;
      break;
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  // The address belongs to the VM's network, taken afresh by each start, not to the instance.
  assert.match(await hello(`http://${restarted.address}:8080/`), /hello from flick/);
  assert.equal((await api('DELETE', '/v1/instances/crashy?force=true')).status, 200);
});

test('scale to zero: an idle instance goes to standby and a request through the proxy wakes it', async () => {
  const s = await createRunning({ name: 'sleepy', scale_to_zero: { policy: 'on', cooldown_time_ms: 300 } });
  assert.ok(s.snapshots.template, 'template snapshot taken at first readiness');
  const proxy = new URL(s.url);
  // The VM that booted goes cold at its first standby (under TCG it holds its boot's translations): no process.
  const first = await api('GET', '/v1/instances/sleepy/wait?state=standby&timeout_ms=60000');
  assert.equal(first.status, 200, first.text);
  assert.deepEqual([first.json.data.standby_tier, first.json.data.pid], ['cold', null]);
  assert.match(await hello(`http://127.0.0.1:${proxy.port}/`, proxy.host), /hello from flick/);
  const restored = (await api('GET', '/v1/instances/sleepy')).json.data;
  assert.deepEqual([restored.wakes, restored.wakes_cold], [1, 1]);
  assert.ok(restored.pid !== null && restored.pid !== s.pid, 'restored into a new VMM process');
  // From then on the default tier is hot: the restored, paused VMM process stays.
  const second = await api('GET', '/v1/instances/sleepy/wait?state=standby&timeout_ms=60000');
  assert.equal(second.status, 200, second.text);
  assert.equal(second.json.data.standby_tier, 'hot');
  assert.equal(second.json.data.pid, restored.pid, 'hot standby keeps the paused VMM process');
  assert.match(await hello(`http://127.0.0.1:${proxy.port}/`, proxy.host), /hello from flick/);
  const woken = (await api('GET', '/v1/instances/sleepy')).json.data;
  assert.deepEqual([woken.wakes, woken.wakes_hot], [2, 1]);
  assert.equal((await api('DELETE', '/v1/instances/sleepy?force=true')).status, 200);
});

function flick(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args],
      { env: { ...process.env, FLICK_HOST: flickd!.base, FLICK_TOKEN: flickd!.token, XDG_CONFIG_HOME: path.join(tmp, 'config') } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('the CLI end to end: run, ls, get, stop, stop again, rm', async () => {
  const run = await flick(['run', '--name', 'cli', '-m', '128M', IMAGE]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^cli running at http:\/\/cli\.localhost:\d+/);
  const ls = await flick(['ls', '-o', 'json']);
  assert.ok(JSON.parse(ls.stdout).some((i: any) => i.name === 'cli' && i.state === 'running'));
  assert.match((await flick(['ls'])).stdout, /^NAME\s+STATE/);
  assert.match((await flick(['get', 'cli'])).stdout, /state:\s+running/);
  assert.equal((await flick(['stop', 'cli'])).stdout, 'cli stopped\n');
  const again = await flick(['stop', 'cli']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /cannot stop instance "cli": it is stopped/);
  assert.equal((await flick(['rm', 'cli'])).code, 0);
  const gone = await flick(['get', 'cli']);
  assert.equal(gone.code, 66);
  assert.match(gone.stderr, /not found/);
});
