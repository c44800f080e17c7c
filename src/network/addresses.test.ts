import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NetworkError, allocateIndex, hostVethName, netmask, parsePool, releaseIndex, slotAddresses } from './addresses.js';

test('the default pool splits 10.211.0.0/16 into 16384 /30 slots', () => {
  const pool = parsePool();
  assert.equal(pool.size, 16384);
  assert.deepEqual(slotAddresses(pool, 0), { index: 0, hostIp: '10.211.0.1', nsIp: '10.211.0.2', prefixLength: 30 });
  assert.deepEqual(slotAddresses(pool, 64), { index: 64, hostIp: '10.211.1.1', nsIp: '10.211.1.2', prefixLength: 30 });
  assert.equal(slotAddresses(pool, 16383).nsIp, '10.211.255.254');
});

test('slots of a pool never overlap', () => {
  const pool = parsePool('192.168.8.0/24');
  const seen = new Set<string>();
  for (let i = 0; i < pool.size; i++) {
    const s = slotAddresses(pool, i);
    for (const a of [s.hostIp, s.nsIp]) {
      assert.ok(!seen.has(a), a);
      seen.add(a);
    }
  }
  assert.equal(seen.size, 128);
});

test('bad pools and indexes are refused with a typed error', () => {
  for (const bad of ['10.211.0.0', '10.211.0.0/31', '10.211.0.1/16', '300.1.1.1/8', 'x/16']) {
    assert.throws(() => parsePool(bad), (e: NetworkError) => e.code === 'INVALID_POOL', bad);
  }
  const pool = parsePool('10.0.0.0/29');
  assert.throws(() => slotAddresses(pool, 2), (e: NetworkError) => e.code === 'INVALID_INDEX');
  assert.throws(() => slotAddresses(pool, -1), (e: NetworkError) => e.code === 'INVALID_INDEX');
});

test('allocation takes the lowest free slot and fails when the pool is full', () => {
  const pool = parsePool('10.0.0.0/28'); // 4 slots
  assert.equal(allocateIndex(pool, []), 0);
  assert.equal(allocateIndex(pool, [0, 1, 3]), 2);
  assert.deepEqual([...releaseIndex([0, 1, 3], 1)], [0, 3]);
  assert.throws(() => allocateIndex(pool, [0, 1, 2, 3]), (e: NetworkError) => e.code === 'POOL_EXHAUSTED');
});

test('veth names fit IFNAMSIZ and differ per namespace', () => {
  const a = hostVethName('flick-a-very-long-instance-identifier-0123456789');
  assert.ok(a.length <= 15);
  assert.notEqual(a, hostVethName('flick-b'));
  assert.equal(netmask(30), '255.255.255.252');
  assert.equal(netmask(16), '255.255.0.0');
});
