// etcd over TLS with client certificates, as a real multi-machine cluster runs
// it: a real 3-member etcd whose client URLs speak only TLS and accept only
// certificates signed by the cluster's CA (made here with openssl), the etcd
// client refused without a certificate, with another CA's, or without trusting
// etcd's CA, and two flickd hosts that join over TLS with
// --cluster-etcd-ca/-cert/-key (a third, with another CA's certificate, does
// not start, and says why). No microVM boots here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { EtcdClient, EtcdError, type EtcdTls } from '../src/cluster/etcd-client.js';
import { startEtcdCluster, type EtcdCluster } from '../src/cluster/etcd-cluster.js';
import { api, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { makeTestCa, type TestCa, type TestCertificate } from '../src/proxy/testing-certs.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-cluster-tls-'));
// <tag><pid>-t<n>-, one /24 each: a concurrent run of this file never sweeps or addresses ours.
const prefixOf = (i: number) => `${runPrefix('fkt')}t${i}-`;
const poolOf = (i: number) => runPool(226, i - 1);
const dataDirOf = (i: number) => path.join(tmp, `h${i}`);
let ca: TestCa;
let rogue: TestCa;
let client: TestCertificate;
let rogueClient: TestCertificate;
let etcd: EtcdCluster;
const hosts: FlickdUnderTest[] = [];

before(async () => {
  await sweepDeadRuns('fkt');
  ca = await makeTestCa();
  rogue = await makeTestCa();
  const server = await ca.issue(['localhost'], { ips: ['127.0.0.1'], usage: 'both' });
  client = await ca.issue(['flick-host'], { usage: 'client' });
  rogueClient = await rogue.issue(['flick-host'], { usage: 'client' });
  etcd = await startEtcdCluster({
    dir: path.join(tmp, 'etcd'),
    tls: { caFile: ca.caFile, certFile: server.certFile, keyFile: server.keyFile, clientCertFile: client.certFile, clientKeyFile: client.keyFile },
  });
});

after(async () => {
  for (const [i, f] of hosts.entries()) await removeFlickd(f, prefixOf(i + 1), dataDirOf(i + 1));
  await etcd?.stop();
  await ca?.remove();
  await rogue?.remove();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** What a call with these TLS settings gets: 'ok' after a put and get, or the error's code and message. */
async function tryEtcd(endpoints: string[], tls: EtcdTls | undefined, timeoutMs = 5000): Promise<string> {
  const c = new EtcdClient({ endpoints, ...(tls ? { tls } : {}), timeoutMs });
  try {
    await c.put('/tls-test/key', 'value');
    return (await c.get('/tls-test/key'))?.value === 'value' ? 'ok' : 'read back something else';
  } catch (err) {
    return err instanceof EtcdError ? `${err.code}: ${err.message}` : String(err);
  } finally {
    await c.close();
  }
}

test('the etcd client speaks TLS with a client certificate, and etcd refuses it without one, with another CA\'s, or over plain HTTP', async () => {
  assert.ok(etcd.endpoints.every((e) => e.startsWith('https://127.0.0.1:')));
  const good = { caFile: ca.caFile, certFile: client.certFile, keyFile: client.keyFile };
  assert.equal(await tryEtcd(etcd.endpoints, good), 'ok');
  // A watch streams over the same TLS connection settings.
  const c = new EtcdClient({ endpoints: etcd.endpoints, tls: good });
  try {
    const start = (await c.range('/tls-test/', { prefix: true })).revision + 1;
    const seen = new Promise<string>((resolve) => {
      const w = c.watch('/tls-test/', start, (events) => {
        const put = events.find((e) => e.type === 'put');
        if (put?.type === 'put') {
          w.cancel();
          resolve(put.kv.value);
        }
      });
    });
    await c.put('/tls-test/watched', 'over tls');
    assert.equal(await seen, 'over tls');
  } finally {
    await c.close();
  }
  const refusals: Array<[string, EtcdTls | undefined, string[]]> = [
    ['no client certificate', { caFile: ca.caFile }, etcd.endpoints],
    ['a client certificate of another CA', { caFile: ca.caFile, certFile: rogueClient.certFile, keyFile: rogueClient.keyFile }, etcd.endpoints],
    ['etcd\'s CA not trusted', { certFile: client.certFile, keyFile: client.keyFile }, etcd.endpoints],
    ['plain HTTP to a TLS port', undefined, etcd.endpoints.map((e) => e.replace('https:', 'http:'))],
  ];
  for (const [what, tls, endpoints] of refusals) {
    const got = await tryEtcd(endpoints, tls, 2000);
    // Refused at the TLS layer: etcd closes the connection or node rejects etcd's certificate ("fetch
    // failed"), or, with TLS 1.3, etcd drops a bad client certificate after the handshake and the request
    // never gets an answer (the attempt's bound). Either way nothing is served, and it says where to look.
    assert.match(got, /^ETCD_UNAVAILABLE: etcd is unreachable at https?:\/\/127\.0\.0\.1:\d+.*\((fetch failed: .+|The operation was aborted due to timeout)\).*--cluster-etcd-ca\/-cert\/-key/, `${what}: ${got}`);
  }
});

test('hosts join over TLS with --cluster-etcd-ca/-cert/-key and see each other; a host with another CA\'s certificate does not start, and says why', async () => {
  const args = (i: number, cert: TestCertificate) => [
    '--proxy-listen', '127.0.0.1:0',
    '--cluster-etcd', etcd.endpoints.join(','),
    '--cluster-etcd-ca', ca.caFile, '--cluster-etcd-cert', cert.certFile, '--cluster-etcd-key', cert.keyFile,
    '--host-name', `h${i}`, '--advertise', '127.0.0.1',
  ];
  for (const i of [1, 2]) {
    await removeFlickd(undefined, prefixOf(i), dataDirOf(i));
    hosts.push(await startFlickd({ dataDir: dataDirOf(i), prefix: prefixOf(i), pool: poolOf(i), args: args(i, client) }));
  }
  const deadline = Date.now() + 20_000;
  let listed: Array<[string, string]> = [];
  for (;;) {
    const r = await api(hosts[1]!, 'GET', '/v1/hosts');
    listed = (r.json.data.hosts as Array<{ name: string; state: string }>).map((h) => [h.name, h.state]);
    if (listed.length === 2 && listed.every(([, s]) => s === 'up')) break;
    if (Date.now() > deadline) assert.fail(`both hosts up over TLS, got ${JSON.stringify(listed)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(listed, [['h1', 'up'], ['h2', 'up']]);
  assert.equal(hosts[0]!.token, hosts[1]!.token, 'the hosts share the cluster token, read over TLS');
  await removeFlickd(undefined, prefixOf(3), dataDirOf(3));
  await assert.rejects(
    startFlickd({ dataDir: dataDirOf(3), prefix: prefixOf(3), pool: poolOf(3), args: args(3, rogueClient) }),
    (err: Error) => /flickd exited while starting/.test(err.message) && /etcd is unreachable at https:\/\/127\.0\.0\.1/.test(err.message),
  );
  fs.rmSync(dataDirOf(3), { recursive: true, force: true });
});
