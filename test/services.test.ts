// Services for real: `flick run --name web --replicas 3` against a real flickd
// makes three microVMs behind web.localhost; requests through the proxy reach
// all three; `flick services`, `flick service get`, `flick ls` show them; a
// stopped member's refused connections are retried on the others (no failed
// request); `flick service rm` removes the service and its instances. A service
// with a TCP port balances its connections over the members, per connection.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api, removeFlickd, runFlick, startFlickdWithFixture, type FlickdUnderTest } from '../src/daemon/testing.js';
import { stablePort } from '../src/network/free-port.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fsvc';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(223);
const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-services-'));
const dataDir = path.join(tmp, 'data');
let f: FlickdUnderTest;
let proxyPort = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  ({ f, proxyPort } = await startFlickdWithFixture({ dataDir, prefix: PREFIX, pool: POOL, image: IMAGE }));
});

after(async () => {
  await removeFlickd(f, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const flick = (...args: string[]) => runFlick(f, path.join(tmp, 'config'), ...args);

/** GET / through the proxy on a new connection: status and the answering guest's hostname (its instance name). */
function viaProxy(host: string): Promise<{ status: number; hostname: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent: false, headers: { host }, timeout: 60_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, hostname: /hostname (\S+)/.exec(body)?.[1] ?? '', body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host} timed out`)));
    req.on('error', reject);
  });
}

test('flick run --replicas 3 makes a service of three instances; the proxy sends requests to all of them', async () => {
  const run = await flick('run', '--name', 'web', '--replicas', '3', IMAGE);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`^web 3/3 running at http://web\\.localhost:${proxyPort}`));
  const service = (await api(f, 'GET', '/v1/services/web')).json.data;
  assert.equal(service.instances.length, 3);
  const names = service.instances.map((i: any) => i.name).sort();
  for (const n of names) assert.match(n, /^web-[0-9a-f]{4}$/);

  const answers = [];
  for (let i = 0; i < 30; i++) answers.push(await viaProxy('web.localhost'));
  assert.deepEqual(answers.map((a) => a.status), new Array(30).fill(200));
  const seen = new Map<string, number>();
  for (const a of answers) seen.set(a.hostname, (seen.get(a.hostname) ?? 0) + 1);
  assert.deepEqual([...seen.keys()].sort(), names, `every replica answered: ${JSON.stringify([...seen])}`);
  for (const n of names) assert.ok(seen.get(n)! >= 5, `${n} took a fair share: ${JSON.stringify([...seen])}`);
  // Each member still answers at its own name too.
  assert.equal((await viaProxy(`${names[0]}.localhost`)).hostname, names[0]);
});

test('flick services, flick service get and flick ls show the service and each instance\'s service (-o json too)', async () => {
  const list = await flick('services', '-o', 'json');
  assert.equal(list.code, 0, list.stderr);
  const services = JSON.parse(list.stdout);
  assert.deepEqual(services.map((s: any) => [s.name, s.replicas, s.instances.length]), [['web', 3, 3]]);
  const table = await flick('services');
  assert.match(table.stdout, /^NAME\s+REPLICAS\s+RUNNING\s+IMAGE\s+URL\nweb\s+3\s+3\/3\s+fixtures\/hello:1\s+http:\/\/web\.localhost:\d+\n$/);
  const get = await flick('service', 'get', 'web');
  assert.match(get.stdout, /running:\s+3\/3/);
  const ls = JSON.parse((await flick('ls', '-o', 'json')).stdout);
  assert.deepEqual(ls.map((i: any) => i.service_name), ['web', 'web', 'web']);
  assert.match((await flick('ls')).stdout, /SERVICE[\s\S]*web-[0-9a-f]{4}\s+running\s+web/);
});

test('a member that stops is skipped: its refused connections go to the others and no request fails', async () => {
  const members = (await api(f, 'GET', '/v1/services/web')).json.data.instances;
  const stopped = members[0].name;
  const stop = await flick('stop', stopped);
  assert.equal(stop.code, 0, stop.stderr);
  const answers = [];
  for (let i = 0; i < 20; i++) answers.push(await viaProxy('web.localhost'));
  assert.deepEqual(answers.map((a) => a.status), new Array(20).fill(200), answers.map((a) => a.body).join('\n'));
  assert.ok(!answers.some((a) => a.hostname === stopped), 'nothing answered from the stopped member');
  assert.equal(new Set(answers.map((a) => a.hostname)).size, 2);
});

test('bad service requests exit non-zero with what to do, and create nothing', async () => {
  const table: Array<[string[], number, RegExp]> = [
    [['run', '--replicas', '2', IMAGE], 64, /needs a name: add --name NAME/],
    [['run', '--name', 'x', '--replicas', '0', IMAGE], 64, /--replicas "0"/],
    [['run', '--name', 'web', '--replicas', '2', IMAGE], 1, /service "web" already exists/],
    [['run', '--name', 'big', '--replicas', '65', IMAGE], 65, /replicas must be at most 64/],
    [['service', 'get', 'nope'], 66, /service "nope" not found: list services with 'flick services'/],
  ];
  for (const [args, code, message] of table) {
    const r = await flick(...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.deepEqual((await api(f, 'GET', '/v1/services')).json.data.services.map((s: any) => s.name), ['web']);
});

test('flick service rm removes the service and its instances; its host name is no longer routed', async () => {
  const rm = await flick('service', 'rm', 'web');
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual((await api(f, 'GET', '/v1/instances')).json.data.instances, []);
  assert.deepEqual((await api(f, 'GET', '/v1/services')).json.data.services, []);
  assert.equal((await viaProxy('web.localhost')).status, 404);
});

/** The service's view, polled until `check` holds (or the deadline). */
async function serviceUntil(name: string, check: (s: any) => boolean, what: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await api(f, 'GET', `/v1/services/${name}`)).json.data;
    if (check(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** One HTTP exchange as raw bytes over the proxy's TCP route at `port`: the answering guest's hostname, or the error's code. */
function overTcp(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    socket.setTimeout(60_000, () => socket.destroy(new Error('timeout')));
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('end', () => resolve(/hostname (\S+)/.exec(got)?.[1] ?? `no hostname in ${JSON.stringify(got)}`));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test('a service with a TCP port (-p PORT:8080/tcp) balances its connections over every member, and closes the port with the service', async () => {
  const port = await stablePort();
  const run = await flick('run', '--name', 'db', '--replicas', '2', '-p', `${port}:8080/tcp`, IMAGE);
  assert.equal(run.code, 0, run.stderr);
  const names = (await api(f, 'GET', '/v1/services/db')).json.data.instances.map((i: any) => i.name).sort();
  assert.equal(names.length, 2);
  const answers: string[] = [];
  for (let i = 0; i < 10; i++) answers.push(await overTcp(port));
  assert.deepEqual([...new Set(answers)].sort(), names, `each connection went to a member, and both took some: ${JSON.stringify(answers)}`);
  const rm = await flick('service', 'rm', 'db');
  assert.equal(rm.code, 0, rm.stderr);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const answer = await overTcp(port);
    if (answer === 'ECONNREFUSED') break;
    assert.ok(Date.now() < deadline, `the port closes once the service is gone (last: ${answer})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

test('autoscale from zero: a burst wakes more than one instance at once and every request is answered; idle, the service returns to min', async () => {
  const run = await flick('run', '--name', 'burst', '--autoscale', 'min=0,max=4,target-inflight=2,cooldown-time=1500', IMAGE);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^burst \d\/4 running(, \d in standby)? at http:\/\/burst\.localhost:\d+/);
  const idle = await serviceUntil('burst', (s) => s.awake === 0 && s.instances.length === 4, 'the service at zero');
  assert.deepEqual(idle.autoscale, { min: 0, max: 4, target_inflight: 2, cooldown_time_ms: 1500 });
  const wakesBefore = new Map<string, number>();
  for (const i of (await api(f, 'GET', '/v1/instances')).json.data.instances) wakesBefore.set(i.id, i.wakes);

  const answers = await Promise.all(Array.from({ length: 40 }, () => viaProxy('burst.localhost')));
  assert.deepEqual(answers.map((a) => a.status), new Array(40).fill(200), answers.map((a) => a.body).find((b) => !/^hello/.test(b)));
  const woke = (await api(f, 'GET', '/v1/instances')).json.data.instances.filter((i: any) => i.service_name === 'burst' && i.wakes > (wakesBefore.get(i.id) ?? 0));
  assert.ok(woke.length > 1, `the burst woke ${woke.length} instance(s)`);
  const busy = (await api(f, 'GET', '/v1/services/burst')).json.data;
  assert.ok(busy.scale_events.up >= woke.length, JSON.stringify(busy.scale_events));
  assert.match(busy.scale_events.recent.find((e: any) => e.direction === 'up').reason, /woke \((cold|hot), \d+ ms\): a request found every awake instance at 2 in flight/);

  // Idle again: each instance goes to standby after its cooldown, and the service is back at min (0).
  // Every instance in standby, not only none running: one still draining is on its way there (its event comes then).
  const after = await serviceUntil('burst', (s) => s.awake === 0 && s.instances.every((i: any) => i.state === 'standby'), 'the service back at min', 60_000);
  assert.ok(after.scale_events.down >= woke.length, JSON.stringify(after.scale_events));
  const get = await flick('service', 'get', 'burst');
  assert.match(get.stdout, /scale events: \d+ up, \d+ down\n[\s\S]*down burst-[0-9a-f]{4}: to standby after 1500 ms without requests/);
  const metrics = await fetch(`${f.base}/metrics`, { headers: { authorization: `Bearer ${f.token}` } }).then((r) => r.text());
  assert.match(metrics, /flick_service_scale_events_total\{service="burst",direction="up"\} [1-9]/);
  assert.match(metrics, /flick_service_instances\{service="burst",state="standby"\} 4/);
  assert.match(f.log(), /service burst: scale up: burst-[0-9a-f]{4}: woke/);
  assert.equal((await flick('service', 'rm', 'burst')).code, 0);
});
