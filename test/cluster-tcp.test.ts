// Raw TCP across hosts: two flickd hosts of one cluster (a real 1-member etcd),
// each proxy on a loopback address of its own (127.0.0.2, 127.0.0.3), so both
// can listen on the same host port as a multi-machine cluster's hosts do. An
// instance on h1 with a TCP service on host port P answers a connection to h2's
// P: h2's proxy tunnels it to h1's hop listener with a CONNECT carrying the
// cluster's token, and h1 wakes the instance from standby as for its own
// clients. The hop listener refuses the tunnel without the token. A fork on h1
// takes its name in the cluster like a create: h2 lists and routes it, and
// cannot take its name. A host of its own (h3) joins with its instances: its
// state.db goes into etcd once.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startEtcdCluster, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { api, until, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { stablePort } from '../src/network/free-port.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-cluster-tcp-'));
// <tag><pid>-t<n>-, one /24 each: a concurrent run of this file never sweeps or addresses ours.
const prefixOf = (i: number) => `${runPrefix('fkp')}t${i}-`;
const poolOf = (i: number) => runPool(228, i - 1);
const dataDirOf = (i: number) => path.join(tmp, `h${i}`);
/** h1's proxy on 127.0.0.2, h2's on 127.0.0.3. */
const proxyHostOf = (i: number) => `127.0.0.${i + 1}`;
let etcd: EtcdCluster;
const hosts: FlickdUnderTest[] = [];

before(async () => {
  await sweepDeadRuns('fkp');
  etcd = await startEtcdCluster({ size: 1, dir: path.join(tmp, 'etcd') });
  for (const i of [1, 2]) {
    await removeFlickd(undefined, prefixOf(i), dataDirOf(i));
    hosts.push(
      await startFlickd({
        dataDir: dataDirOf(i),
        prefix: prefixOf(i),
        pool: poolOf(i),
        args: ['--proxy-listen', `${proxyHostOf(i)}:0`, '--cluster-hop-listen', '127.0.0.1:0', '--cluster-etcd', etcd.endpoints.join(','), '--host-name', `h${i}`, '--advertise', '127.0.0.1'],
      }),
    );
  }
});

after(async () => {
  for (const [i, f] of hosts.entries()) await removeFlickd(f, prefixOf(i + 1), dataDirOf(i + 1));
  await etcd?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** One HTTP/1.0 exchange as raw TCP bytes to `host:port`: what came back before the server closed ('' on a refused or reset connection). */
function rawGet(host: string, port: number, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => s.write('GET / HTTP/1.0\r\nHost: tcp\r\n\r\n'));
    let got = '';
    s.setTimeout(timeoutMs, () => s.destroy());
    s.setEncoding('utf8').on('data', (d: string) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
}

test('a TCP service on h1 answers on the same host port of h2, through the hop with the token, and wakes from standby there', async () => {
  const [h1, h2] = [hosts[0]!, hosts[1]!];
  await pushFixtureImage(h1, IMAGE, 'hello-server');
  // Below the ephemeral range: no outgoing connection on this machine takes it meanwhile.
  const port = await stablePort();
  const made = await api(h1, 'POST', '/v1/instances?host=h1', { image: IMAGE, name: 'rawtcp', memory_mb: 128, ports: [{ port, guest_port: 8080, protocol: 'tcp' }], scale_to_zero: { policy: 'on', cooldown_time_ms: 1000 } });
  assert.equal(made.status, 201, made.text);
  assert.equal((await api(h1, 'GET', '/v1/instances/rawtcp/wait?state=running&timeout_ms=180000')).status, 200);
  // h1 serves it on its own address; h2, which has no such instance, on its address too.
  assert.match(await until('rawtcp on h1\'s port', async () => ((await rawGet(proxyHostOf(1), port)).includes('hello from flick') ? 'ok' : undefined), 15_000), /ok/);
  const through = await until('rawtcp through h2\'s port', async () => {
    const got = await rawGet(proxyHostOf(2), port);
    return got.includes('hello from flick') ? got : undefined;
  }, 15_000);
  assert.match(through, /^HTTP\/1\.[01] 200 /);
  // Asleep on h1, it is woken by a connection to h2.
  const slept = await api(h1, 'GET', '/v1/instances/rawtcp/wait?state=standby&timeout_ms=60000');
  assert.equal(slept.status, 200, slept.text);
  const wakesBefore = slept.json.data.wakes as number;
  assert.match(await rawGet(proxyHostOf(2), port, 60_000), /hello from flick/);
  assert.ok(((await api(h1, 'GET', '/v1/instances/rawtcp')).json.data.wakes as number) > wakesBefore, 'the connection through h2 woke rawtcp on h1');
  // The tunnel needs the cluster's token: h1's hop listener refuses a CONNECT without it.
  const hop = ((await api(h2, 'GET', '/v1/hosts')).json.data.hosts as any[]).find((x) => x.name === 'h1').hop as string;
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect(Number(new URL(hop).port), '127.0.0.1', () => s.write(`CONNECT flick-tcp:${port} HTTP/1.1\r\nHost: x\r\n\r\n`));
    let got = '';
    s.setEncoding('utf8').on('data', (d: string) => (got += d)).on('close', () => resolve(got)).on('error', () => {});
  });
  assert.match(refused, /^HTTP\/1\.1 407 /);
  assert.equal((await api(h2, 'DELETE', '/v1/instances/rawtcp?force=true')).status, 200, 'removed through h2');
  await until('rawtcp gone from h1', async () => ((await api(h1, 'GET', '/v1/instances')).json.data.instances.length === 0 ? true : undefined), 30_000);
  // Its route on h2 goes with it: the port no longer answers there.
  await until('h2 to drop the route', async () => ((await rawGet(proxyHostOf(2), port, 5000)) === '' ? true : undefined), 15_000);
});

const catalog = async (f: FlickdUnderTest): Promise<any[]> => (await api(f, 'GET', '/v1/cluster/instances')).json.data.instances as any[];

test('a fork takes its name in the cluster: the other host lists and routes it, cannot take the name, and frees it when it is removed', async () => {
  const [h1, h2] = [hosts[0]!, hosts[1]!];
  await pushFixtureImage(h1, IMAGE, 'hello-server');
  await pushFixtureImage(h2, IMAGE, 'hello-server');
  // Below the ephemeral range: no outgoing connection on this machine takes them meanwhile.
  const [srcPort, forkPort] = [await stablePort(), await stablePort()];
  const made = await api(h1, 'POST', '/v1/instances?host=h1', { image: IMAGE, name: 'src', memory_mb: 128, ports: [{ port: srcPort, guest_port: 8080, protocol: 'tcp' }], scale_to_zero: { policy: 'on', cooldown_time_ms: 600_000, stateful: true } });
  assert.equal(made.status, 201, made.text);
  assert.equal((await api(h1, 'GET', '/v1/instances/src/wait?state=running&timeout_ms=180000')).status, 200);
  assert.equal((await api(h1, 'PUT', '/v1/instances/src/suspend?tier=cold')).json.data.state, 'standby');

  const forked = await api(h1, 'POST', '/v1/instances/src/fork', { name: 'copy', ports: [{ port: forkPort, guest_port: 8080, protocol: 'tcp' }] });
  assert.equal(forked.status, 201, forked.text);
  // The other host lists it as h1's, stateful (it lives where its memory and volumes are).
  const entry = await until('h2 to list the fork', async () => (await catalog(h2)).find((e) => e.name === 'copy' && e.state === 'placed'), 15_000);
  assert.equal(entry.host, 'h1', JSON.stringify(entry));
  assert.equal(entry.stateful, true, JSON.stringify(entry));
  // Its name is the cluster's: h2 cannot create an instance of that name.
  const clash = await api(h2, 'POST', '/v1/instances?host=h2', { image: IMAGE, name: 'copy', memory_mb: 128, autostart: false });
  assert.equal(clash.status, 409, clash.text);
  assert.equal(clash.json.error.code, 'NAME_TAKEN');
  assert.equal((await api(h2, 'GET', '/v1/instances')).json.data.instances.length, 0, 'nothing made on h2');
  // h2 routes the fork's port to h1, where the connection wakes it from standby.
  assert.match(await until('the fork through h2\'s port', async () => ((await rawGet(proxyHostOf(2), forkPort)).includes('hello from flick') ? 'ok' : undefined), 60_000), /ok/);
  assert.ok(((await api(h1, 'GET', '/v1/instances/copy')).json.data.wakes as number) >= 1, 'the fork woke on h1');

  // A fork named like h2's instance is refused on h1, and nothing of it is made there.
  assert.equal((await api(h2, 'POST', '/v1/instances?host=h2', { image: IMAGE, name: 'other', memory_mb: 128, autostart: false })).status, 201);
  await until('h1 to list other', async () => (await catalog(h1)).find((e) => e.name === 'other' && e.state === 'placed'), 15_000);
  const taken = await api(h1, 'POST', '/v1/instances/src/fork', { name: 'other', ports: [{ port: await stablePort(), guest_port: 8080, protocol: 'tcp' }] });
  assert.equal(taken.status, 409, taken.text);
  assert.equal(taken.json.error.code, 'NAME_TAKEN');
  assert.deepEqual(((await api(h1, 'GET', '/v1/instances')).json.data.instances as any[]).map((i) => i.name).sort(), ['copy', 'src']);
  assert.equal((await catalog(h1)).find((e) => e.name === 'other')?.host, 'h2', 'the name stays h2\'s');

  // Removed through h2: gone from h1 and from the catalog; its name can be taken again.
  assert.equal((await api(h2, 'DELETE', '/v1/instances/copy?force=true')).status, 200, 'removed through h2');
  await until('copy gone from h1 and the catalog', async () => {
    const local = ((await api(h1, 'GET', '/v1/instances')).json.data.instances as any[]).some((i) => i.name === 'copy');
    return !local && !(await catalog(h1)).some((e) => e.name === 'copy') ? true : undefined;
  }, 30_000);
  const again = await api(h2, 'POST', '/v1/instances?host=h2', { image: IMAGE, name: 'copy', memory_mb: 128, autostart: false });
  assert.equal(again.status, 201, again.text);
});

test('a host of its own joins the cluster with its instances: its state.db goes into etcd once, before it serves', async () => {
  const solo = await startFlickd({ dataDir: dataDirOf(3), prefix: prefixOf(3), pool: poolOf(3), args: ['--proxy-listen', `${proxyHostOf(3)}:0`] });
  hosts.push(solo);
  await pushFixtureImage(solo, IMAGE, 'hello-server');
  const made = await api(solo, 'POST', '/v1/instances', { image: IMAGE, name: 'solo', memory_mb: 128, autostart: false });
  assert.equal(made.status, 201, made.text);
  await solo.stop('SIGTERM');
  const joined = await startFlickd({
    dataDir: dataDirOf(3),
    prefix: prefixOf(3),
    pool: poolOf(3),
    args: ['--proxy-listen', `${proxyHostOf(3)}:0`, '--cluster-hop-listen', '127.0.0.1:0', '--cluster-etcd', etcd.endpoints.join(','), '--host-name', 'h3', '--advertise', '127.0.0.1'],
  });
  hosts[2] = joined;
  assert.match(joined.log(), /cluster: imported 1 instance record\(s\) of \S+state\.db into etcd \(0 there already\)/);
  assert.equal(fs.existsSync(path.join(dataDirOf(3), 'state.db.imported')), true, 'the old file is kept, renamed');
  // The same instance, now the cluster's: h3 lists it, and any host sees it on h3.
  assert.equal((await api(joined, 'GET', '/v1/instances/solo')).json.data?.id, made.json.data.id);
  const listed = await until('h1 to list solo on h3', async () => (await catalog(hosts[0]!)).find((e) => e.name === 'solo' && e.host === 'h3'), 15_000);
  assert.equal(listed.id, made.json.data.id);
  assert.equal((await api(hosts[0]!, 'DELETE', '/v1/instances/solo')).status, 200, 'removed through h1');
});
