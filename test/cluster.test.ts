// A cluster for real: a 3-member etcd on loopback ports and three flickd
// processes joined to it (each its own data dir, ports, namespace prefix and
// address pool), a Flick image pushed to one host and run on another (fetched
// from the peer, digest-verified, booted as a real microVM), one etcd member
// killed, etcd stopped and started under running hosts, and a host's flickd
// killed with SIGKILL and started again.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { EtcdClient } from '../src/cluster/etcd-client.js';
import { startEtcdCluster, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { api, appGet, createRunning, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';

const IMAGE = 'fixtures/hello:1';
const HOSTS = ['h1', 'h2', 'h3'] as const;
type HostName = (typeof HOSTS)[number];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-cluster-'));
const prefixOf = (h: HostName) => `fkc-t${h.slice(1)}-`;
const poolOf = (h: HostName) => `10.225.${h.slice(1)}.0/24`;
const dataDirOf = (h: HostName) => path.join(tmp, h);
let etcd: EtcdCluster;
const hosts = new Map<HostName, FlickdUnderTest>();

async function startHost(h: HostName): Promise<FlickdUnderTest> {
  const f = await startFlickd({
    dataDir: dataDirOf(h),
    prefix: prefixOf(h),
    pool: poolOf(h),
    args: ['--proxy-listen', '127.0.0.1:0', '--cluster-etcd', etcd.endpoints.join(','), '--host-name', h, '--advertise', '127.0.0.1'],
  });
  hosts.set(h, f);
  return f;
}

const host = (h: HostName) => hosts.get(h)!;

async function hostStates(via: HostName): Promise<Record<string, string>> {
  const r = await api(host(via), 'GET', '/v1/hosts');
  assert.equal(r.status, 200, r.text);
  return Object.fromEntries((r.json.data.hosts as Array<{ name: string; state: string }>).map((x) => [x.name, x.state]));
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  for (const h of HOSTS) await sweepLeftovers(prefixOf(h));
  etcd = await startEtcdCluster({ dir: path.join(tmp, 'etcd') });
  for (const h of HOSTS) await startHost(h);
});

after(async () => {
  for (const h of HOSTS) await removeFlickd(hosts.get(h), prefixOf(h), dataDirOf(h));
  await etcd?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('three hosts join: each lists all three up, with capacity and load, and all share the cluster token', async () => {
  const r = await api(host('h2'), 'GET', '/v1/hosts');
  assert.equal(r.json.data.cluster, true);
  const listed = r.json.data.hosts as any[];
  assert.deepEqual(listed.map((x) => [x.name, x.state, x.self]), [['h1', 'up', false], ['h2', 'up', true], ['h3', 'up', false]]);
  for (const x of listed) {
    assert.ok(x.capacity.memory_bytes > 0 && x.capacity.vcpus > 0);
    assert.ok(x.load.memory_free_bytes > 0);
    assert.match(x.api, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(x.proxy, /^http:\/\/127\.0\.0\.1:\d+$/);
  }
  const tokens = HOSTS.map((h) => fs.readFileSync(path.join(dataDirOf(h), 'token'), 'utf8').trim());
  assert.equal(new Set(tokens).size, 1, 'the hosts hold different tokens');
  // Host-to-host calls need the cluster's credentials: a peer's registry refuses a call without them.
  const peerApi = listed.find((x) => x.name === 'h1').api as string;
  assert.equal((await fetch(`${peerApi}/v2/${IMAGE.split(':')[0]}/manifests/1`)).status, 401);
});

test('an image pushed to h1 runs on h2: h2 fetches it from h1, digest-verified, before the first boot', async () => {
  await pushFixtureImage(host('h1'), IMAGE, 'hello-server');
  const onH1 = await fetch(`${host('h1').base}/v2/fixtures/hello/manifests/1`, { method: 'HEAD', headers: { authorization: `Bearer ${host('h1').token}`, accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const digest = onH1.headers.get('docker-content-digest');
  assert.ok(digest);
  const inst = await createRunning(host('h2'), IMAGE);
  assert.equal(inst.image, IMAGE);
  assert.match(await appGet(inst.address, '/'), /hello from flick/);
  assert.match(host('h2').log(), new RegExp(`fetched ${IMAGE} \\(${digest}, \\d+ bytes\\) from h1`));
  const onH2 = await fetch(`${host('h2').base}/v2/fixtures/hello/manifests/1`, { method: 'HEAD', headers: { authorization: `Bearer ${host('h2').token}`, accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(onH2.headers.get('docker-content-digest'), digest);
  // An image no host has is refused with what to do.
  const missing = await api(host('h3'), 'POST', '/v1/instances', { image: 'fixtures/nowhere:1', memory_mb: 128 });
  assert.equal(missing.status, 404, missing.text);
  assert.match(missing.json.error.message, /is on no host of the cluster .*push it with 'flick push fixtures\/nowhere:1'/);
});

test('losing one etcd member of three changes nothing: every host stays up, its lease renewed', async () => {
  const member = etcd.members[0]!;
  await member.kill();
  try {
    await new Promise((r) => setTimeout(r, 4500)); // past the 3 s lease TTL
    assert.deepEqual(await hostStates('h3'), { h1: 'up', h2: 'up', h3: 'up' });
    for (const h of HOSTS) assert.doesNotMatch(host(h).log(), /lease \S+ lapsed/);
  } finally {
    await member.start();
  }
});

test('etcd stopped: hosts keep serving what they hold; etcd started: every host is up again', async () => {
  const running = (await api(host('h2'), 'GET', '/v1/instances')).json.data.instances[0];
  assert.equal(running.state, 'running');
  await Promise.all(etcd.members.map((m) => m.kill()));
  try {
    await new Promise((r) => setTimeout(r, 4000)); // past the 3 s lease TTL
    assert.match(await appGet(running.address, '/'), /hello from flick/);
    assert.equal((await api(host('h2'), 'GET', `/v1/instances/${running.id}`)).json.data.state, 'running');
    assert.equal((await api(host('h1'), 'GET', '/v1/hosts')).status, 200, 'the host list must answer from memory while etcd is down');
  } finally {
    await Promise.all(etcd.members.map((m) => m.start()));
  }
  const healed = Date.now();
  await until('all hosts up again', async () => {
    const s = await hostStates('h1');
    return Object.values(s).every((v) => v === 'up') && Object.keys(s).length === 3 ? s : undefined;
  }, 20_000);
  // Past a TTL after etcd's return, the liveness keys are still there: every host renewed (or re-granted) its lease.
  await new Promise((r) => setTimeout(r, 4000));
  const client = new EtcdClient({ endpoints: etcd.endpoints });
  try {
    assert.deepEqual((await client.range('/flick/alive/', { prefix: true })).kvs.map((kv) => kv.key), ['/flick/alive/h1', '/flick/alive/h2', '/flick/alive/h3']);
  } finally {
    await client.close();
  }
  process.stderr.write(`cluster test: etcd back → every host listed up in ${Date.now() - healed - 4000} ms (+4 s past the TTL, still registered)\n`);
});

test('kill -9 of a host: it is down within its lease TTL; restarted, it rejoins under its name', async () => {
  const killed = Date.now();
  await host('h3').stop('SIGKILL');
  await until('h3 down', async () => ((await hostStates('h1')).h3 === 'down' ? true : undefined), 10_000);
  const downMs = Date.now() - killed;
  assert.ok(downMs <= 6000, `h3 showed down only after ${downMs} ms`);
  await startHost('h3');
  assert.deepEqual(await hostStates('h1'), { h1: 'up', h2: 'up', h3: 'up' });
  process.stderr.write(`cluster test: kill -9 → down in ${downMs} ms\n`);
});
