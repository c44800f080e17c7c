// flickd for real: a flickd process on a free port with its own data dir,
// network namespace prefix and address pool; a Flick image (the guest helper's
// static hello server, the built kernel and initrd) pushed over /v2; real
// microVMs started, stopped, crashed, suspended and woken through /v1, the
// ingress proxy and the CLI; and flickd killed with SIGKILL and started again.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { FIXTURE_PROGRAM, buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { FLICK_ARTIFACT, FLICK_INITRD, FLICK_KERNEL, FLICK_ROOTFS_EROFS } from '../src/image/media-types.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { PACKAGE_ROOT } from '../src/paths.js';

const PREFIX = 'fkd-t-'; // not under flickd's default 'flick-', so no other flickd sweeps ours
const POOL = '10.214.0.0/24';
const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-flickd-'));
const dataDir = path.join(tmp, 'data');
let flickd: ChildProcess | undefined;
let base = '';
let token = '';

function startFlickd(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'flickd'), '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0'], {
      env: { ...process.env, FLICK_NETNS_PREFIX: PREFIX, FLICK_NET_POOL: POOL },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    flickd = child;
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const m = /listening on (http:\/\/\S+)/.exec(d);
      if (m) {
        base = m[1]!;
        token = fs.readFileSync(path.join(dataDir, 'token'), 'utf8').trim();
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`flickd exited with ${code} while starting:\n${err}`)));
  });
}

function stopFlickd(signal: NodeJS.Signals): Promise<void> {
  const child = flickd;
  flickd = undefined;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function api(method: string, p: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

async function pushBlob(name: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = `sha256:${crypto.createHash('sha256').update(data).digest('hex')}`;
  const r = await fetch(`${base}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 201, await r.text());
  return { digest, size: data.length };
}

/** Pushes a Flick image whose app is the static hello server, listening on 8080. */
async function pushHelloImage(): Promise<void> {
  const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
  const [name, tag] = IMAGE.split(':') as [string, string];
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: [FIXTURE_PROGRAM['hello-server'], '8080'], ExposedPorts: { '8080/tcp': {} } } }));
  const config = await pushBlob(name, cfg);
  const layers = [
    { mediaType: FLICK_KERNEL, ...(await pushBlob(name, fs.readFileSync(requireKernel().vmlinux))) },
    { mediaType: FLICK_INITRD, ...(await pushBlob(name, fs.readFileSync(initrd.initrd))) },
    { mediaType: FLICK_ROOTFS_EROFS, ...(await pushBlob(name, fs.readFileSync(rootfs))) },
  ];
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: FLICK_ARTIFACT, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers };
  const r = await fetch(`${base}/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    body: JSON.stringify(manifest),
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(r.status, 201, await r.text());
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

async function createRunning(body: Record<string, unknown>): Promise<any> {
  const created = await api('POST', '/v1/instances', { image: IMAGE, memory_mb: 128, ...body });
  assert.equal(created.status, 201, created.text);
  const ready = await api('GET', `/v1/instances/${created.json.data.id}/wait?state=running&timeout_ms=180000`);
  assert.equal(ready.status, 200, ready.text);
  return ready.json.data;
}

before(async () => {
  await sweepLeftovers(PREFIX);
  await startFlickd();
  await pushHelloImage();
});

after(async () => {
  if (flickd) {
    const list = await api('GET', '/v1/instances').catch(() => undefined);
    for (const i of list?.json?.data?.instances ?? []) await api('DELETE', `/v1/instances/${i.id}?force=true`).catch(() => {});
  }
  await stopFlickd('SIGTERM');
  // Anything the deletes missed (a failed test): QEMU processes run inside our namespaces.
  for (const ns of fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : []) {
    if (!ns.startsWith(PREFIX)) continue;
    await new Promise((r) => execFile('ip', ['netns', 'pids', ns], (_e, out) => r(String(out).split(/\s+/).filter(Boolean).forEach((pid) => process.kill(Number(pid), 'SIGKILL')))));
  }
  await sweepLeftovers(PREFIX);
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
  const standby = await api('GET', '/v1/instances/sleepy/wait?state=standby&timeout_ms=60000');
  assert.equal(standby.status, 200, standby.text);
  // The default tier is hot: the paused VMM process stays (cold standby has none; see test/scale-to-zero.test.ts).
  assert.equal(standby.json.data.standby_tier, 'hot');
  assert.equal(standby.json.data.pid, s.pid, 'hot standby keeps the paused VMM process');
  const proxy = new URL(s.url);
  const body = await hello(`http://127.0.0.1:${proxy.port}/`, proxy.host);
  assert.match(body, /hello from flick/);
  const woken = (await api('GET', '/v1/instances/sleepy')).json.data;
  assert.equal(woken.wakes, 1);
  assert.equal(woken.wakes_hot, 1);
  assert.equal((await api('DELETE', '/v1/instances/sleepy?force=true')).status, 200);
});

function flick(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args],
      { env: { ...process.env, FLICK_HOST: base, FLICK_TOKEN: token, XDG_CONFIG_HOME: path.join(tmp, 'config') } },
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
