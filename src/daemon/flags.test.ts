import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterFlags, parseKeepResident, parseListen, parseSize } from './flags.js';

test('sizes for --hot-standby-budget', () => {
  const table: Array<[string, number]> = [
    ['0', 0],
    ['2G', 2 * 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['1.5g', 1.5 * 2 ** 30],
    ['64KiB', 64 * 1024],
    ['1000', 1000],
  ];
  for (const [text, bytes] of table) assert.equal(parseSize(text), bytes, text);
  for (const bad of ['', 'lots', '2X', '-1G']) assert.throws(() => parseSize(bad), /is not a size: write e\.g\. 2G/, bad);
});

test('listen addresses', () => {
  assert.deepEqual(parseListen('127.0.0.1:7451'), { host: '127.0.0.1', port: 7451 });
  assert.deepEqual(parseListen(':0'), { host: '127.0.0.1', port: 0 });
  assert.throws(() => parseListen('7451'));
});

test('--hot-keep-resident takes a share of the guest RAM or a size', () => {
  assert.deepEqual(parseKeepResident('25%'), { share: 0.25 });
  assert.deepEqual(parseKeepResident('100%'), { share: 1 });
  assert.deepEqual(parseKeepResident('32M'), { bytes: 32 * 2 ** 20 });
  assert.deepEqual(parseKeepResident('0'), { bytes: 0 });
  assert.throws(() => parseKeepResident('150%'), /more than all of the guest's RAM: write at most 100%/);
  assert.throws(() => parseKeepResident('lots'), /is not a size/);
});

test('cluster flags: none means a host of its own; companions need --cluster-etcd; the address peers use is explicit', () => {
  assert.equal(clusterFlags({ listen: '127.0.0.1:7450' }), undefined);
  assert.throws(() => clusterFlags({ listen: '127.0.0.1:7450', 'host-name': 'h1' }), /--host-name needs --cluster-etcd/);
  assert.deepEqual(clusterFlags({ listen: '10.0.0.5:7450', 'cluster-etcd': 'http://e1:2379, http://e2:2379', 'host-name': 'h1' }), {
    endpoints: ['http://e1:2379', 'http://e2:2379'],
    hostName: 'h1',
    advertise: '10.0.0.5',
  });
  assert.throws(() => clusterFlags({ listen: '0.0.0.0:7450', 'cluster-etcd': 'http://e1:2379' }), /--advertise ADDR is needed/);
  assert.throws(() => clusterFlags({ listen: '0.0.0.0:7450', 'cluster-etcd': 'http://e1:2379', advertise: 'a', 'cluster-etcd-cert': 'c' }), /go together/);
  const tls = clusterFlags({ listen: '0.0.0.0:7450', 'cluster-etcd': 'https://e1:2379', advertise: 'h1.example', 'host-name': 'h1', 'cluster-etcd-ca': 'ca.pem', 'cluster-etcd-cert': 'c.pem', 'cluster-etcd-key': 'k.pem' });
  assert.deepEqual(tls?.tls, { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' });
  const hop = clusterFlags({ listen: '10.0.0.5:7450', 'cluster-etcd': 'http://e1:2379', 'cluster-hop-listen': '10.0.0.5:7453' });
  assert.deepEqual(hop?.hopListen, { host: '10.0.0.5', port: 7453 });
  assert.throws(() => clusterFlags({ listen: '10.0.0.5:7450', 'cluster-etcd': 'http://e1:2379', 'cluster-hop-listen': '7453' }), /--cluster-hop-listen "7453" is not HOST:PORT/);
  assert.throws(() => clusterFlags({ listen: '10.0.0.5:7450', 'cluster-hop-listen': '10.0.0.5:7453' }), /--cluster-hop-listen needs --cluster-etcd/);
});
