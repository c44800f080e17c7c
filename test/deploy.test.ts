// Rolling deploys for real: a service of 3 microVMs under a steady load of
// ≥ 100 requests/s through the proxy (bounded, loopback) is deployed onto a new
// image with `flick deploy`: no answer is other than 200, and every request that
// starts after the deploy is answered by a new instance. A deploy of an image
// whose app never listens, one old instance out first (--max-unavailable 1),
// rolls back by itself, saying so: the old instances serve on, and the one it
// had removed is made again from the old image. flickd killed -9 in the middle of a deploy resumes it at its next
// start: every request is answered meanwhile, and it ends on the new image.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api, proxyPortOf, pushFixtureImage, removeFlickd, runFlick, startFlickd, startFlickdWithFixture, type FlickdUnderTest } from '../src/daemon/testing.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fdep';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(225);
const OLD = 'fixtures/hello:1';
const NEW = 'fixtures/hello:2';
const BROKEN = 'fixtures/broken:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-deploy-'));
const dataDir = path.join(tmp, 'data');
let f: FlickdUnderTest;
let proxyPort = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  ({ f, proxyPort } = await startFlickdWithFixture({ dataDir, prefix: PREFIX, pool: POOL, image: OLD }));
  await pushFixtureImage(f, NEW, 'hello-server');
  await pushFixtureImage(f, BROKEN, 'exit-code');
  const run = await flick('run', '--name', 'web', '--replicas', '3', OLD);
  assert.equal(run.code, 0, run.stderr);
});

after(async () => {
  await removeFlickd(f, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const flick = (...args: string[]) => runFlick(f, path.join(tmp, 'config'), ...args);

interface Shot {
  startedAt: number;
  status: number | string;
  hostname: string;
}

function get(): Promise<Shot> {
  const startedAt = Date.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent: false, headers: { host: 'web.localhost' }, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ startedAt, status: res.statusCode ?? 0, hostname: /hostname (\S+)/.exec(body)?.[1] ?? '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ startedAt, status: err.code ?? err.message, hostname: '' }));
  });
}

/** A request every 5 ms by the clock (200/s, at most `max`) until `stop` resolves; every answer. */
async function load(stop: Promise<unknown>, max = 20_000): Promise<Shot[]> {
  const shots: Array<Promise<Shot>> = [];
  let done = false;
  void stop.finally(() => (done = true));
  const t0 = Date.now();
  while (!done && shots.length < max) {
    // On a busy machine a timer fires late: up to two of the requests due meanwhile go out, so the rate
    // holds without a burst after a stall (a stall of 1 s would otherwise send 200 at once).
    const due = Math.min(max, Math.floor((Date.now() - t0) / 5) + 1, shots.length + 2);
    while (shots.length < due) shots.push(get());
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return Promise.all(shots);
}

const service = async () => (await api(f, 'GET', '/v1/services/web')).json.data;

test('a rolling deploy under steady load: no answer other than 200, and every later request is answered by a new instance', async () => {
  const before = (await service()).instances.map((i: any) => i.name);
  const t0 = Date.now();
  const deploying = flick('deploy', 'web', NEW);
  const shots = await load(deploying);
  const deploy = await deploying;
  const t1 = Date.now();
  assert.equal(deploy.code, 0, deploy.stderr);
  assert.match(deploy.stdout, /^web: every instance runs fixtures\/hello:2/);
  const rate = shots.length / ((t1 - t0) / 1000);
  assert.ok(rate >= 100, `steady load of ${rate.toFixed(0)} requests/s`);
  const bad = shots.filter((s) => s.status !== 200);
  assert.deepEqual(bad, [], `${bad.length} of ${shots.length} requests failed`);
  const after = await service();
  assert.deepEqual(after.instances.map((i: any) => i.image), [NEW, NEW, NEW]);
  const fresh = new Set(after.instances.map((i: any) => i.name));
  for (const n of before) assert.ok(!fresh.has(n), 'every old instance was replaced');
  const later = await Promise.all(Array.from({ length: 30 }, () => get()));
  assert.ok(later.every((s) => s.status === 200 && fresh.has(s.hostname)), `answers after the deploy: ${JSON.stringify(later.map((s) => s.hostname))}`);
  assert.equal((await api(f, 'GET', '/v1/instances')).json.data.instances.length, 3, 'the old instances are gone');
});

test('a deploy with --max-unavailable 1 of an image whose app never listens rolls back by itself with a clear message; the old instances serve on, the one it had removed made again', async () => {
  const before = (await service()).instances.map((i: any) => i.name);
  const deploying = flick('deploy', 'web', BROKEN, '--max-surge', '0', '--max-unavailable', '1');
  const shots = await load(deploying);
  const r = await deploying;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /deploy of fixtures\/broken:1 to service "web" rolled back: the new instances did not become ready \(.*\); the old ones still serve \(1 made again from fixtures\/hello:2, as many as the deploy had removed\)/);
  // One old instance left first (max-unavailable 1): the other two served every request meanwhile.
  const bad = shots.filter((s) => s.status !== 200);
  assert.deepEqual(bad, [], `${bad.length} of ${shots.length} requests failed`);
  const after = await service();
  assert.equal(after.deploying, null);
  assert.deepEqual(after.instances.map((i: any) => i.image), [NEW, NEW, NEW], 'the service has its 3 instances of the old image');
  assert.equal(after.instances.filter((i: any) => before.includes(i.name)).length, 2, 'two old instances kept, one made again');
  assert.equal(after.last_deploy.outcome, 'rolled-back');
  assert.equal(after.last_deploy.recreated, 1);
  assert.equal((await api(f, 'GET', '/v1/instances')).json.data.instances.length, 3, 'the failed new instance was removed');
  const shown = await flick('service', 'get', 'web');
  assert.match(shown.stdout, /last deploy: +fixtures\/broken:1 rolled back at \S+: the new instances did not become ready .*; 1 instance\(s\) made again from fixtures\/hello:2/);
  const names = new Set(after.instances.map((i: any) => i.name));
  const answers = await Promise.all(Array.from({ length: 30 }, () => get()));
  assert.ok(answers.every((a) => a.status === 200 && names.has(a.hostname)), JSON.stringify(answers.map((a) => [a.status, a.hostname])));
  assert.equal(new Set(answers.map((a) => a.hostname)).size, 3, 'all three answer, the one made again too');
});

test('flickd killed -9 during a deploy: at its next start the deploy resumes, every request is answered meanwhile, and every instance ends on the new image', async (t) => {
  const before = (await service()).instances.map((i: any) => i.name);
  // Started over the API (the CLI would lose its flickd); killed once it has made progress: an old instance was replaced.
  void api(f, 'POST', '/v1/services/web/deploy', { image: OLD }).catch(() => undefined);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const names = (await api(f, 'GET', '/v1/instances')).json.data.instances.map((i: any) => i.name);
    if (before.some((n: string) => !names.includes(n))) break;
    assert.ok(Date.now() < deadline, 'an old instance was replaced within 180 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await f.stop('SIGKILL');
  f = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0'] });
  proxyPort = proxyPortOf(f);
  assert.match(f.log(), /service web: (resuming the deploy of fixtures\/hello:1 flickd was stopped in|the deploy of fixtures\/hello:1 flickd was stopped in had replaced every instance)/);
  t.diagnostic(/resuming the deploy/.test(f.log()) ? 'resumed' : 'completed at start');
  const ended = (async () => {
    const until = Date.now() + 240_000;
    while ((await service()).deploying !== null) {
      assert.ok(Date.now() < until, 'the resumed deploy ended within 240 s');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  const shots = await load(ended);
  await ended;
  t.diagnostic(`${shots.length} requests while the deploy resumed`);
  const bad = shots.filter((s) => s.status !== 200);
  assert.deepEqual(bad, [], `${bad.length} of ${shots.length} requests failed while the deploy resumed`);
  const after = await service();
  assert.deepEqual(after.instances.map((i: any) => i.image), [OLD, OLD, OLD], 'every instance runs the image deployed');
  assert.equal((await api(f, 'GET', '/v1/instances')).json.data.instances.length, 3, 'no instance is left over');
  const answers = await Promise.all(Array.from({ length: 20 }, () => get()));
  const names = new Set(after.instances.map((i: any) => i.name));
  assert.ok(answers.every((a) => a.status === 200 && names.has(a.hostname)), JSON.stringify(answers.map((a) => [a.status, a.hostname])));
});
