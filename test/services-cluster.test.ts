// A service's replicas spread over a cluster's hosts, for real: a 1-member etcd
// and three flickd hosts. `--replicas 3` through h1 puts one member on each host
// (placement counts the service's members on a host against it), each a real
// microVM (h2 and h3 fetch the image from h1); every host's proxy balances the
// service's host name over all three (a local one directly, the others over the
// cluster hop), the route shared through etcd. `flick service scale` adds and
// removes members across hosts, and `flick deploy` rolls them onto a new image
// under load through another host's proxy with no failed request; `flick
// service rm` removes every member, wherever it is. A member's host killed -9: the
// member is made again elsewhere and the service follows it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startEtcdCluster, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { api, until, proxyPortOf, pushFixtureImage, removeFlickd, runFlick, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { stablePort } from '../src/network/free-port.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { isAlive } from '../src/vmm/qemu/qemu-process.js';

const IMAGE = 'fixtures/hello:1';
const NEW = 'fixtures/hello:2';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-services-cluster-'));
// <tag><pid>-t<n>-, one /24 each: a concurrent run of this file never sweeps or addresses ours.
const prefixOf = (i: number) => `${runPrefix('fsc')}t${i}-`;
const poolOf = (i: number) => runPool(229, i - 1);
const dataDirOf = (i: number) => path.join(tmp, `h${i}`);
/** Each proxy on a loopback address of its own (127.0.0.2-4), so that each can listen on a service's TCP port. */
const proxyHostOf = (i: number) => `127.0.0.${i + 1}`;
let etcd: EtcdCluster;
const hosts: FlickdUnderTest[] = [];

before(async () => {
  await sweepDeadRuns('fsc');
  etcd = await startEtcdCluster({ size: 1, dir: path.join(tmp, 'etcd') });
  for (const i of [1, 2, 3]) hosts.push(await startHost(i));
  await pushFixtureImage(hosts[0]!, IMAGE, 'hello-server');
  await pushFixtureImage(hosts[0]!, NEW, 'hello-server');
  // Placement sees a host once its load is in etcd (every 2 s).
  await until('h1 to see three hosts up', async () => {
    const listed = (await api(hosts[0]!, 'GET', '/v1/hosts')).json.data.hosts as Array<{ state: string; load: unknown }>;
    return listed.filter((h) => h.state === 'up' && h.load).length === 3 ? true : undefined;
  }, 30_000);
});

const startHost = (i: number) =>
  startFlickd({
    dataDir: dataDirOf(i),
    prefix: prefixOf(i),
    pool: poolOf(i),
    args: ['--proxy-listen', `${proxyHostOf(i)}:0`, '--cluster-hop-listen', '127.0.0.1:0', '--cluster-etcd', etcd.endpoints.join(','), '--host-name', `h${i}`, '--advertise', '127.0.0.1'],
  });

after(async () => {
  for (const [i, f] of hosts.entries()) await removeFlickd(f, prefixOf(i + 1), dataDirOf(i + 1));
  await etcd?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** GET / for `name` through a proxy: status and the guest's hostname (the hello server says it). */
function viaProxy(f: FlickdUnderTest, name: string): Promise<{ status: number; hostname: string }> {
  const [host, port] = [proxyHostOf(hosts.indexOf(f) + 1), proxyPortOf(f)];
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', agent: false, headers: { host: `${name}.localhost` }, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, hostname: /hostname (\S+)/.exec(body)?.[1] ?? '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve({ status: 0, hostname: '' }));
  });
}


const web = /^web-[0-9a-f]{4}$/;
const flick = (...args: string[]) => runFlick(hosts[0]!, path.join(tmp, 'config'), ...args);

/** The service's members in the cluster's catalog: name → host. */
async function membersInCatalog(): Promise<Map<string, string>> {
  const catalog = (await api(hosts[0]!, 'GET', '/v1/cluster/instances')).json.data.instances as Array<{ name: string; host: string }>;
  return new Map(catalog.filter((i) => web.test(i.name)).map((i) => [i.name, i.host]));
}

/** Polls each host's proxy until every one of `names` (and no other) has answered web.localhost through it. */
async function answersThroughEveryProxy(names: readonly string[], what: string): Promise<void> {
  for (const [i, f] of hosts.entries()) {
    const seen = new Set<string>();
    await until(`${what} to answer web.localhost through h${i + 1}`, async () => {
      const answers = await Promise.all(Array.from({ length: 2 * names.length }, () => viaProxy(f, 'web')));
      for (const a of answers) if (a.status === 200) seen.add(a.hostname);
      return names.every((n) => seen.has(n)) ? true : undefined;
    }, 180_000);
    assert.deepEqual([...seen].filter((n) => !names.includes(n)), [], `through h${i + 1}, only the service's instances answer`);
  }
}

test('a service spread over 3 hosts answers through every host\'s proxy; scale adds and removes members across hosts; deploy under load fails no request; rm removes them all', async (t) => {
  const [h1, h2] = hosts as [FlickdUnderTest, FlickdUnderTest];
  const run = await flick('run', '--name', 'web', '--replicas', '3', '-p', '8080/http', IMAGE);
  assert.equal(run.code, 0, run.stderr);
  let members = await membersInCatalog();
  assert.deepEqual([...members.values()].sort(), ['h1', 'h2', 'h3'], `one instance on each host: ${JSON.stringify([...members])}`);
  const service = (await api(h1, 'GET', '/v1/services/web')).json.data;
  assert.deepEqual(service.instances.map((i: any) => i.host ?? 'h1').sort(), ['h1', 'h2', 'h3']);
  assert.deepEqual(service.instances.map((i: any) => i.name).sort(), [...members.keys()].sort());
  // Every host's proxy balances the name over all three, wherever they are.
  await answersThroughEveryProxy([...members.keys()], 'all three instances');
  // Another host does not take the name of a service the cluster has.
  const taken = await api(h2, 'POST', '/v1/services', { name: 'web', replicas: 1, image: IMAGE });
  assert.equal(taken.status, 409, taken.text);
  assert.match(taken.json.error.message, /already exists on host h1/);

  // Scale up: the new members go where the fewest are (one more on two hosts), and answer through every proxy.
  const up = await flick('service', 'scale', 'web', '5');
  assert.equal(up.code, 0, up.stderr);
  members = await membersInCatalog();
  assert.equal(members.size, 5, JSON.stringify([...members]));
  const perHost = [...members.values()].reduce((m, h) => m.set(h, (m.get(h) ?? 0) + 1), new Map<string, number>());
  assert.deepEqual([...perHost.values()].sort(), [1, 2, 2], `spread 2-2-1: ${JSON.stringify([...members])}`);
  await answersThroughEveryProxy([...members.keys()], 'all five instances');
  // Scale down: the surplus members leave every proxy's route, then are removed from their hosts.
  const down = await flick('service', 'scale', 'web', '2');
  assert.equal(down.code, 0, down.stderr);
  const kept = (await api(h1, 'GET', '/v1/services/web')).json.data.instances.map((i: any) => i.name as string);
  assert.equal(kept.length, 2);
  await until('the cluster to hold only the two members left', async () => {
    const now = await membersInCatalog();
    return now.size === 2 && kept.every((n: string) => now.has(n)) ? true : undefined;
  }, 60_000);
  await answersThroughEveryProxy(kept, 'the two instances left');

  // A deploy onto a new image under light load through h2's proxy (the service is h1's): no request fails.
  let stop = false;
  const shots: Array<Promise<{ status: number; hostname: string }>> = [];
  const loading = (async () => {
    while (!stop) {
      shots.push(viaProxy(h2, 'web'));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const deployStarted = Date.now();
  const deployed = await flick('deploy', 'web', NEW).finally(() => (stop = true));
  const deployMs = Date.now() - deployStarted;
  await loading;
  const answers = await Promise.all(shots);
  assert.equal(deployed.code, 0, deployed.stderr);
  const failed = answers.filter((a) => a.status !== 200);
  assert.equal(failed.length, 0, `${failed.length} of ${answers.length} requests failed during the deploy: ${JSON.stringify(failed.slice(0, 5))}`);
  assert.ok(answers.length >= 20, `the load ran through the deploy (${answers.length} requests)`);
  t.diagnostic(`deploy across hosts: ${deployMs} ms, ${answers.length} requests through h2's proxy, 0 failed`);
  const after = (await api(h1, 'GET', '/v1/services/web')).json.data;
  const fresh = after.instances.map((i: any) => i.name as string);
  assert.equal(fresh.length, 2);
  assert.ok(fresh.every((n: string) => !kept.includes(n)), `every instance is new: ${fresh} (were ${kept})`);
  assert.equal(after.image, NEW);
  await until('the old members gone from the cluster', async () => {
    const now = await membersInCatalog();
    return now.size === 2 && fresh.every((n: string) => now.has(n)) ? true : undefined;
  }, 60_000);
  await answersThroughEveryProxy(fresh, 'the deployed instances');

  // kill -9 of a member's host (not the service's): the member is made again on another host, and the service follows it.
  const [victim, victimHost] = [...(await membersInCatalog())].find(([, h]) => h !== 'h1')!;
  const dead = Number(victimHost.slice(1));
  // Its VM there (pid while awake) and folder: the copy its host must not keep once the member moved.
  const stale = (await api(hosts[dead - 1]!, 'GET', `/v1/instances/${victim}`)).json.data as { id: string; pid: number | null };
  assert.ok(fs.existsSync(path.join(dataDirOf(dead), 'instances', stale.id)), `${victim}'s folder on ${victimHost}`);
  await hosts[dead - 1]!.stop('SIGKILL');
  const moved = await until(`the service to follow ${victim} off ${victimHost}`, async () => {
    const now = (await api(h1, 'GET', '/v1/services/web')).json.data.instances as Array<{ id: string; name: string; host: string | null }>;
    const m = now.find((i) => i.name === victim);
    // Its id too: the one the proxies reach it by at its new host.
    return now.length === 2 && m !== undefined && (m.host ?? 'h1') !== victimHost && !m.id.startsWith(`@${victimHost}/`) ? (m.host ?? 'h1') : undefined;
  }, 60_000);
  t.diagnostic(`failover: ${victim} moved from ${victimHost} to ${moved}`);
  for (const f of hosts.filter((_, i) => i !== dead - 1)) {
    await until(`${victim} to answer web.localhost from ${moved}`, async () => {
      const answers = await Promise.all(Array.from({ length: 4 }, () => viaProxy(f, 'web')));
      return answers.some((a) => a.status === 200 && a.hostname === victim) ? true : undefined;
    }, 60_000);
  }
  // The host comes back and drops its stale copy; the service keeps its two members.
  hosts[dead - 1] = await startHost(dead);
  await until(`${victimHost} to be up again without its stale copy`, async () => {
    const listed = (await api(hosts[dead - 1]!, 'GET', '/v1/instances')).json.data.instances as Array<{ name: string }>;
    const up = ((await api(h1, 'GET', '/v1/hosts')).json.data.hosts as Array<{ name: string; state: string }>).find((h) => h.name === victimHost)?.state === 'up';
    return up && !listed.some((i) => i.name === victim) ? true : undefined;
  }, 60_000);
  // Its old VM is dead and its folder gone: nothing of the moved member is left on the host it left.
  await until(`${victimHost} to end ${victim}'s old VM (pid ${stale.pid}) and remove its folder`, async () => {
    const running = stale.pid !== null && isAlive(stale.pid);
    return !running && !fs.existsSync(path.join(dataDirOf(dead), 'instances', stale.id)) ? true : undefined;
  }, 30_000);
  t.diagnostic(`${victimHost} back: ${victim}'s old VM (pid ${stale.pid ?? 'none: asleep'}) dead, instances/${stale.id} gone`);
  assert.equal((await api(h1, 'GET', '/v1/services/web')).json.data.instances.length, 2);

  const rm = await flick('service', 'rm', 'web');
  assert.equal(rm.code, 0, rm.stderr);
  await until('every member gone from the cluster', async () => ((await membersInCatalog()).size === 0 ? true : undefined), 60_000);
  for (const f of hosts) assert.equal((await api(f, 'GET', '/v1/instances')).json.data.instances.length, 0, 'no instance is left on any host');
  for (const f of hosts) await until('the name to leave every proxy', async () => ((await viaProxy(f, 'web')).status === 404 ? true : undefined), 10_000);
});

test('an autoscaled service keeps its members on its home host and answers through another host\'s proxy, woken at home', async () => {
  const h1 = hosts[0]!;
  const run = await flick('run', '--name', 'auto', '--autoscale', 'min=0,max=2,target-inflight=1,cooldown-time=1s', '-p', '8080/http', IMAGE);
  assert.equal(run.code, 0, run.stderr);
  const names = ((await api(h1, 'GET', '/v1/services/auto')).json.data.instances as Array<{ name: string; host: string | null }>).map((i) => [i.name, i.host ?? 'h1']);
  assert.deepEqual(names.map(([, h]) => h), ['h1', 'h1'], 'an autoscaled service\'s members share one template, on its host');
  await until('both members in standby', async () => {
    const states = ((await api(h1, 'GET', '/v1/services/auto')).json.data.instances as Array<{ state: string }>).map((i) => i.state);
    return states.every((s) => s === 'standby') ? true : undefined;
  }, 120_000);
  // Through h3's proxy: one hop to h1's, which wakes a member and answers.
  const a = await until('auto to answer through h3', async () => {
    const r = await viaProxy(hosts[2]!, 'auto');
    return r.status === 200 ? r : undefined;
  }, 30_000);
  // A member woke at home to answer it (its name is the template's, shared by both: not asserted).
  const woke = ((await api(h1, 'GET', '/v1/services/auto')).json.data.scale_events?.up ?? 0) as number;
  assert.ok(woke >= 1 && a.hostname !== '', `woken at home: ${woke} scale-up event(s)`);
  const rm = await flick('service', 'rm', 'auto');
  assert.equal(rm.code, 0, rm.stderr);
  await until('auto to leave h3\'s proxy', async () => ((await viaProxy(hosts[2]!, 'auto')).status === 404 ? true : undefined), 10_000);
});

/** One HTTP/1.0 exchange as raw TCP bytes to `host:port`: the guest's hostname in the answer ('' on none). */
function rawGet(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => s.write('GET / HTTP/1.0\r\nHost: tcp\r\n\r\n'));
    let got = '';
    s.setTimeout(30_000, () => s.destroy());
    s.setEncoding('utf8').on('data', (d: string) => (got += d));
    s.on('close', () => resolve(/hostname (\S+)/.exec(got)?.[1] ?? ''));
    s.on('error', () => {});
  });
}

test('a service with a TCP port keeps its members on its home host and answers on that port of every host, balanced over both', async () => {
  const h1 = hosts[0]!;
  // Below the ephemeral range: no outgoing connection on this machine takes it meanwhile.
  const port = await stablePort();
  const run = await flick('run', '--name', 'raw', '--replicas', '2', '-p', `${port}:8080/tcp`, IMAGE);
  assert.equal(run.code, 0, run.stderr);
  const names = ((await api(h1, 'GET', '/v1/services/raw')).json.data.instances as Array<{ name: string; host: string | null }>).map((i) => [i.name, i.host ?? 'h1'] as const);
  assert.deepEqual(names.map(([, h]) => h), ['h1', 'h1'], 'a TCP port is a listener of its home\'s proxy: the members stay there');
  // Each host's proxy listens on the port; the others tunnel each connection to h1, which balances it.
  for (const i of [1, 2, 3]) {
    const seen = new Set<string>();
    await until(`both members to answer on h${i}'s port ${port}`, async () => {
      for (const n of await Promise.all(Array.from({ length: 4 }, () => rawGet(proxyHostOf(i), port)))) if (n !== '') seen.add(n);
      return names.every(([n]) => seen.has(n)) ? true : undefined;
    }, 120_000);
  }
  const rm = await flick('service', 'rm', 'raw');
  assert.equal(rm.code, 0, rm.stderr);
  await until('the port to close on h2', async () => ((await rawGet(proxyHostOf(2), port)) === '' ? true : undefined), 15_000);
});
