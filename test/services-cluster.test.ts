// A service's replicas spread over a cluster's hosts, for real: a 1-member etcd
// and three flickd hosts. `--replicas 3` through h1 puts one member on each host
// (placement counts the service's members on a host against it), each a real
// microVM (h2 and h3 fetch the image from h1); h1's proxy balances the
// service's host name over all three, the remote ones over the cluster hop;
// `flick service rm` removes every member, wherever it is.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startEtcdCluster, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { api, until, proxyPortOf, pushFixtureImage, removeFlickd, runFlick, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-services-cluster-'));
// <tag><pid>-t<n>-, one /24 each: a concurrent run of this file never sweeps or addresses ours.
const prefixOf = (i: number) => `${runPrefix('fsc')}t${i}-`;
const poolOf = (i: number) => runPool(229, i - 1);
const dataDirOf = (i: number) => path.join(tmp, `h${i}`);
let etcd: EtcdCluster;
const hosts: FlickdUnderTest[] = [];

before(async () => {
  await sweepDeadRuns('fsc');
  etcd = await startEtcdCluster({ size: 1, dir: path.join(tmp, 'etcd') });
  for (const i of [1, 2, 3]) {
    hosts.push(
      await startFlickd({
        dataDir: dataDirOf(i),
        prefix: prefixOf(i),
        pool: poolOf(i),
        args: ['--proxy-listen', '127.0.0.1:0', '--cluster-etcd', etcd.endpoints.join(','), '--host-name', `h${i}`, '--advertise', '127.0.0.1'],
      }),
    );
  }
});

after(async () => {
  for (const [i, f] of hosts.entries()) await removeFlickd(f, prefixOf(i + 1), dataDirOf(i + 1));
  await etcd?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** GET / for `name` through a proxy: status and the guest's hostname (the hello server says it). */
function viaProxy(port: number, name: string): Promise<{ status: number; hostname: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: `${name}.localhost` }, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, hostname: /hostname (\S+)/.exec(body)?.[1] ?? '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve({ status: 0, hostname: '' }));
  });
}

test('flick run --replicas 3 on a 3-host cluster puts one instance on each host; the proxy balances over all three; service rm removes them all', async () => {
  const h1 = hosts[0]!;
  await pushFixtureImage(h1, IMAGE, 'hello-server');
  // Placement sees a host once its load is in etcd (every 2 s).
  await until('h1 to see three hosts up', async () => {
    const listed = (await api(h1, 'GET', '/v1/hosts')).json.data.hosts as Array<{ state: string; load: unknown }>;
    return listed.filter((h) => h.state === 'up' && h.load).length === 3 ? true : undefined;
  }, 30_000);
  const run = await runFlick(h1, path.join(tmp, 'config'), 'run', '--name', 'web', '--replicas', '3', '-p', '8080/http', IMAGE);
  assert.equal(run.code, 0, run.stderr);
  const catalog = (await api(h1, 'GET', '/v1/cluster/instances')).json.data.instances as Array<{ name: string; host: string }>;
  const members = catalog.filter((i) => /^web-[0-9a-f]{4}$/.test(i.name));
  assert.deepEqual(members.map((m) => m.host).sort(), ['h1', 'h2', 'h3'], `one instance on each host: ${JSON.stringify(catalog)}`);
  const service = (await api(h1, 'GET', '/v1/services/web')).json.data;
  assert.deepEqual(service.instances.map((i: any) => i.host ?? 'h1').sort(), ['h1', 'h2', 'h3']);
  assert.deepEqual(service.instances.map((i: any) => i.name).sort(), members.map((m) => m.name).sort());
  // Through h1's proxy, every member answers (the remote ones over the hop), each once it has booted.
  const proxy = proxyPortOf(h1);
  const seen = new Set<string>();
  await until('all three instances to answer web.localhost through h1', async () => {
    const answers = await Promise.all(Array.from({ length: 6 }, () => viaProxy(proxy, 'web')));
    for (const a of answers) if (a.status === 200) seen.add(a.hostname);
    return seen.size === 3 ? true : undefined;
  }, 180_000);
  assert.deepEqual([...seen].sort(), members.map((m) => m.name).sort());
  // Scale and deploy act on this host's instances only: refused with what to do.
  const scaled = await api(h1, 'PUT', '/v1/services/web/scale', { replicas: 2 });
  assert.equal(scaled.status, 400, scaled.text);
  assert.match(scaled.json.error.message, /has instances on other hosts \(h[23], h[23]\)/);
  const rm = await runFlick(h1, path.join(tmp, 'config'), 'service', 'rm', 'web');
  assert.equal(rm.code, 0, rm.stderr);
  await until('every member gone from the cluster', async () => {
    const left = (await api(h1, 'GET', '/v1/cluster/instances')).json.data.instances as Array<{ name: string }>;
    return left.some((i) => /^web-/.test(i.name)) ? undefined : true;
  }, 60_000);
  for (const f of hosts) assert.equal((await api(f, 'GET', '/v1/instances')).json.data.instances.length, 0, 'no instance is left on any host');
  assert.equal((await viaProxy(proxy, 'web')).status, 404);
});
