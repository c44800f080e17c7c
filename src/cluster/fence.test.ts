import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostFence } from './fence.js';

/**
 * A fence over a fake clock and fake probes: `self` answers this host's own etcd
 * probes in turn (the last answer repeats), `peer` the peers'; `calls` records what it did.
 */
function fake(o: { self: boolean[]; peer: boolean }) {
  const s = { now: 10_000, renewed: 10_000, calls: [] as string[] };
  let probes = 0;
  const fence = new HostFence({
    ttlMs: 3000,
    lastRenewedAt: () => s.renewed,
    reachesEtcd: async () => (s.calls.push('probe self'), o.self[Math.min(probes++, o.self.length - 1)]!),
    peerReachesEtcd: async () => (s.calls.push('probe peers'), o.peer),
    fence: async () => void s.calls.push('fence'),
    lift: async () => void s.calls.push('lift'),
    log: () => {},
    now: () => s.now,
  });
  return { s, fence };
}

test('a renewed lease: nothing is probed, nothing fenced', async () => {
  const { s, fence } = fake({ self: [false], peer: true });
  s.now += 1400;
  await fence.check();
  assert.deepEqual(s.calls, []);
  assert.equal(fence.fenced, false);
});

test('unrenewed for half the TTL, etcd unreachable here but a peer reaches it: fenced, once; lifted once renewed', async () => {
  const { s, fence } = fake({ self: [false], peer: true });
  s.now += 2000;
  await fence.check();
  await fence.check();
  s.now += 5000;
  await fence.check();
  assert.deepEqual(s.calls, ['probe self', 'probe peers', 'probe self', 'fence']);
  assert.equal(fence.fenced, true);
  // Renewed again (re-granted after the lapse): the fence lifts, once.
  s.renewed = s.now;
  await fence.check();
  await fence.check();
  assert.deepEqual(s.calls.slice(4), ['lift']);
  assert.equal(fence.fenced, false);
});

test('etcd down for everyone (no peer reaches it): every host keeps serving; probes at most once a second', async () => {
  const { s, fence } = fake({ self: [false], peer: false });
  s.now += 2000;
  await fence.check();
  s.now += 500;
  await fence.check();
  s.now += 600;
  await fence.check();
  assert.deepEqual(s.calls, ['probe self', 'probe peers', 'probe self', 'probe peers']);
  assert.equal(fence.fenced, false);
});

test('etcd back for this host by the time the peers answered (an election ended): no fence', async () => {
  const { s, fence } = fake({ self: [false, true], peer: true });
  s.now += 2000;
  await fence.check();
  assert.deepEqual(s.calls, ['probe self', 'probe peers', 'probe self']);
  assert.equal(fence.fenced, false);
});

test('a slow renewal while this host still reads etcd (a leader election): no fence, peers not asked', async () => {
  const { s, fence } = fake({ self: [true], peer: true });
  s.now += 2600;
  await fence.check();
  assert.deepEqual(s.calls, ['probe self']);
  assert.equal(fence.fenced, false);
});
