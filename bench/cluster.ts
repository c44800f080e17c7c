// `npm run bench -- cluster [--failovers 5] [--creates 60] [--hops 200] [--catalog 10000]`:
// a 3-member etcd and three flickd hosts on this machine (as scripts/cluster.sh
// makes them), then
//   failover_ms: the owner of a stateless instance killed (SIGKILL of its flickd)
//     → the first 2xx through another host's proxy (lease TTL 3 s + a cold boot);
//     the killed host is started again between rounds (it removes its stale copy);
//   route_propagation_ms: a create answered on h1 → h3's proxy routes the name
//     (to h1's proxy: a created-but-stopped instance answers 503 there, an unknown name 404);
//   cross_host_added_ms: p50 of a request through h3's proxy (one hop to h1's)
//     minus p50 through h1's own proxy, to the same running instance, alternating;
//   creates_per_s: creates (autostart off: the control plane, no boots) spread over the three hosts;
//   etcd_db_bytes, host_startup_ms: with `--catalog` instance records in etcd
//     (owned by a stub host whose "proxy" answers 200), a fourth flickd from its
//     spawn to a 200 for the last name through its proxy (listed, watching, every
//     name routed), and the list itself (catalog_list_ms).
// Writes bench/results/cluster.json: {"accel", "results": {...}}.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { EtcdClient } from '../src/cluster/etcd-client.js';
import { startEtcdCluster } from '../src/cluster/etcd-cluster.js';
import { EtcdStateFeed, encodeRecord, nameKey, recordKey } from '../src/cluster/etcd-state-feed.js';
import { testRecord } from '../src/controller/state/testing.js';
import { api, proxyPortOf, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { argValue, percentile, printTable, writeResults } from './lib.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const IMAGE = 'bench/hello:1';
const HOSTS = ['h1', 'h2', 'h3'] as const;
type HostName = (typeof HOSTS)[number] | 'h4';
// <tag><pid>-t<n>-, one /24 each (h1-h4: slots 0-3): a concurrent run never sweeps or addresses ours.
const prefixOf = (h: HostName) => `${runPrefix('fkcb')}t${h.slice(1)}-`;
const poolOf = (h: HostName) => runPool(233, Number(h.slice(1)) - 1);

const failovers = Number(argValue(process.argv, 'failovers') ?? 5);
const createsN = Number(argValue(process.argv, 'creates') ?? 60);
const hops = Number(argValue(process.argv, 'hops') ?? 200);
const catalogN = Number(argValue(process.argv, 'catalog') ?? 10_000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-cluster-'));
const hosts = new Map<HostName, FlickdUnderTest>();
let endpoints = '';

async function startHost(h: HostName): Promise<FlickdUnderTest> {
  const f = await startFlickd({
    dataDir: path.join(tmp, h),
    prefix: prefixOf(h),
    pool: poolOf(h),
    args: ['--proxy-listen', '127.0.0.1:0', '--cluster-etcd', endpoints, '--host-name', h, '--advertise', '127.0.0.1'],
  });
  hosts.set(h, f);
  return f;
}

const host = (h: HostName) => hosts.get(h)!;
const proxyPort = (h: HostName) => proxyPortOf(host(h));

function viaProxy(h: HostName, name: string, timeoutMs = 30_000): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: proxyPort(h), path: '/', agent: false, headers: { host: `${name}.localhost` }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
    });
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t0 }));
    req.on('timeout', () => req.destroy());
  });
}

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function ownerOf(name: string): Promise<HostName> {
  const any = [...hosts.entries()].find(([, f]) => f.process.exitCode === null && f.process.signalCode === null)![1];
  const list = (await api(any, 'GET', '/v1/cluster/instances')).json.data.instances as Array<{ name: string; host: HostName; state: string }>;
  return list.find((i) => i.name === name)!.host;
}

/** A running instance `name` on host `h`, pinned there (placement alone could pick another host). */
async function createOn(h: HostName, name: string): Promise<void> {
  const made = await api(host(h), 'POST', `/v1/instances?host=${h}`, { image: IMAGE, name, memory_mb: 128 });
  if (made.status !== 201) throw new Error(`create ${name} on ${h}: ${made.status} ${made.text}`);
  const ready = await api(host(h), 'GET', `/v1/instances/${name}/wait?state=running&timeout_ms=180000`);
  if (ready.status !== 200) throw new Error(`${name} did not run on ${h}: ${ready.status} ${ready.text}`);
}

async function main(): Promise<void> {
  await sweepDeadRuns('fkcb');
  for (const h of [...HOSTS, 'h4'] as const) await sweepLeftovers(prefixOf(h));
  const accel = await new QemuDriver({ log: () => {} }).accelerator();
  const etcd = await startEtcdCluster({ dir: path.join(tmp, 'etcd') });
  endpoints = etcd.endpoints.join(',');
  const results: Record<string, unknown> = {};
  try {
    for (const h of HOSTS) await startHost(h);
    await pushFixtureImage(host('h1'), IMAGE, 'hello-server');

    // Cross-host hop: one running instance on h1, requests through h1's proxy and h3's, alternating.
    await createOn('h1', 'hop');
    await until(async () => ((await viaProxy('h3', 'hop')).status === 200 ? true : undefined), 10_000);
    const local: number[] = [];
    const remote: number[] = [];
    for (let i = 0; i < 20; i++) await Promise.all([viaProxy('h1', 'hop'), viaProxy('h3', 'hop')]); // warm both paths
    for (let i = 0; i < hops; i++) {
      local.push((await viaProxy('h1', 'hop')).ms);
      remote.push((await viaProxy('h3', 'hop')).ms);
    }
    results.same_host_request_ms = { p50: round(percentile(local, 50)), p99: round(percentile(local, 99)), n: local.length };
    results.cross_host_request_ms = { p50: round(percentile(remote, 50)), p99: round(percentile(remote, 99)), n: remote.length };
    results.cross_host_added_ms = round(percentile(remote, 50) - percentile(local, 50));
    await api(host('h1'), 'DELETE', '/v1/instances/hop?force=true');

    // Route propagation and placement rate: creates that boot nothing, spread over the hosts.
    const propagation: number[] = [];
    for (let i = 0; i < Math.min(createsN, 30); i++) {
      const name = `rp${i}`;
      const made = await api(host('h1'), 'POST', '/v1/instances', { image: IMAGE, name, memory_mb: 128, autostart: false });
      if (made.status !== 201) throw new Error(`create ${name}: ${made.status} ${made.text}`);
      const t0 = performance.now();
      await until(async () => ((await viaProxy('h3', name, 2000)).status !== 404 ? true : undefined), 10_000);
      propagation.push(performance.now() - t0);
    }
    results.route_propagation_ms = { p50: round(percentile(propagation, 50)), p99: round(percentile(propagation, 99)), n: propagation.length };
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: createsN }, async (_, i) => {
        const r = await api(host(HOSTS[i % 3]!), 'POST', '/v1/instances', { image: IMAGE, name: `c${i}`, memory_mb: 128, autostart: false });
        if (r.status !== 201) throw new Error(`create c${i}: ${r.status} ${r.text}`);
      }),
    );
    results.creates_per_s = round(createsN / ((performance.now() - t0) / 1000));
    for (let i = 0; i < createsN; i++) await api(host(HOSTS[i % 3]!), 'DELETE', `/v1/instances/c${i}?force=true`);
    for (let i = 0; i < propagation.length; i++) await api(host('h1'), 'DELETE', `/v1/instances/rp${i}?force=true`);

    // Failover: kill the owner, time the first 2xx through a proxy of another host, start the owner again.
    await createOn('h2', 'fo');
    const failover: number[] = [];
    for (let round_ = 0; round_ < failovers; round_++) {
      const owner = await ownerOf('fo');
      const other = HOSTS.find((h) => h !== owner)!;
      await until(async () => ((await viaProxy(other, 'fo')).status === 200 ? true : undefined), 30_000);
      const killed = performance.now();
      await host(owner).stop('SIGKILL');
      await until(async () => ((await viaProxy(other, 'fo', 5000)).status === 200 ? true : undefined), 120_000);
      failover.push(performance.now() - killed);
      console.log(`failover ${round_ + 1}: ${owner} killed → 2xx through ${other} in ${failover.at(-1)!.toFixed(0)} ms`);
      await startHost(owner);
    }
    results.failover_ms = { p50: round(percentile(failover, 50)), max: round(Math.max(...failover)), n: failover.length };
    await api(host(await ownerOf('fo')), 'DELETE', '/v1/instances/fo?force=true');

    // 10,000 instances in the catalog, owned by "stub": a host registered here whose proxy is a
    // plain HTTP server answering 200, so a route at the new host shows as a 200 through it.
    const client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 30_000 });
    const stub = http.createServer((_req, res) => res.end('stub\n'));
    await new Promise<void>((r) => stub.listen(0, '127.0.0.1', () => r()));
    const stubUrl = `http://127.0.0.1:${(stub.address() as { port: number }).port}`;
    const stubLease = await client.leaseGrant(10);
    const keep = setInterval(() => void client.leaseKeepAlive(stubLease.id).catch(() => 0), 2000);
    try {
      const now = new Date().toISOString();
      await client.put('/flick/hosts/stub', JSON.stringify({ version: 1, name: 'stub', api: stubUrl, proxy: stubUrl, capacity: { memoryBytes: 1, vcpus: 1 }, joinedAt: now }));
      await client.put('/flick/alive/stub', JSON.stringify({ version: 1, lease: stubLease.id, memoryFreeBytes: 0, loadAvg1m: 0, instances: catalogN, startedAt: now, updatedAt: now }), { lease: stubLease.id });
      // Instance records as EtcdStateStore keeps them (a record key and a name key each), stateful so never moved.
      const record = (i: number) =>
        encodeRecord(
          testRecord(`n${i}`, {
            id: `bench${i}`,
            owner: 'stub',
            spec: { image: { ref: IMAGE, digest: 'sha256:00' }, service: { http: { hostname: `n${i}.localhost`, guestPort: 8080 }, tcp: [] }, scaleToZero: { policy: 'on', cooldownTimeMs: 1000, stateful: true } },
          }),
        );
      for (let i = 0; i < catalogN; i += 200) {
        await Promise.all(
          Array.from({ length: Math.min(200, catalogN - i) }, (_, j) =>
            client.txn([], [{ put: { key: nameKey('/flick/', `n${i + j}`), value: `bench${i + j}` } }, { put: { key: recordKey('/flick/', `bench${i + j}`), value: record(i + j) } }]),
          ),
        );
      }
      const l0 = performance.now();
      const listing = await new EtcdStateFeed(client, '/flick/').list();
      results.catalog_list_ms = round(performance.now() - l0);
      results.catalog_instances = listing.records.length;
      const s0 = performance.now();
      await startHost('h4');
      await until(async () => ((await viaProxy('h4', `n${catalogN - 1}`, 500)).status === 200 ? true : undefined), 30_000);
      results.host_startup_ms = round(performance.now() - s0);
      results.etcd_db_bytes = (await client.status()).dbSize;
      await client.delete('/flick/state/records/bench', { prefix: true });
      await client.delete('/flick/state/names/n', { prefix: true });
    } finally {
      clearInterval(keep);
      await client.leaseRevoke(stubLease.id).catch(() => {});
      await client.delete('/flick/hosts/stub').catch(() => 0);
      stub.close();
      await client.close();
    }
  } finally {
    for (const [h, f] of hosts) await removeFlickd(f, prefixOf(h), path.join(tmp, h));
    await etcd.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const r = results as any;
  printTable([
    ['measure', 'value', 'goal'],
    ['failover (kill -9 → 2xx elsewhere), p50 / max ms', `${r.failover_ms.p50} / ${r.failover_ms.max} (n=${r.failover_ms.n})`, '≤ 10000 p50'],
    ['route propagation p50 / p99 ms', `${r.route_propagation_ms.p50} / ${r.route_propagation_ms.p99} (n=${r.route_propagation_ms.n})`, '≤ 100 p99'],
    ['cross-host hop added, p50 ms', `${r.cross_host_added_ms} (${r.cross_host_request_ms.p50} vs ${r.same_host_request_ms.p50})`, '≤ 1'],
    ['creates/s over the cluster (no boots)', r.creates_per_s, ''],
    [`host start-up with ${r.catalog_instances} instances, ms`, r.host_startup_ms, '≤ 5000'],
    ['catalog list (10,000), ms', r.catalog_list_ms, ''],
    ['etcd db bytes', r.etcd_db_bytes, ''],
  ]);
  console.log(`accelerator: ${accel}; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (a shared machine)`);
  console.log(`results in ${await writeResults('cluster', { accel, results, details: { loadavg: os.loadavg(), lease_ttl_s: 3, hosts: 3, etcd_members: 3 } })}`);
}

const round = (x: number) => Number(x.toFixed(2));

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
