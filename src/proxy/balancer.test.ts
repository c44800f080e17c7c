// Unit tests of the balancer's decisions (autoscale's scale-up), table-driven on
// a hand-written awake set and in-flight counts: which member a request goes to,
// and whether it parks for a wake.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Balancer } from './balancer.js';
import type { ServiceRoute } from './routes.js';

function balancer(awake: string[], inFlight: Record<string, number>): Balancer {
  const b = new Balancer((id) => awake.includes(id));
  for (const [id, n] of Object.entries(inFlight)) for (let i = 0; i < n; i++) b.started(id);
  return b;
}

const service = (members: string[], targetInFlight?: number): ServiceRoute => ({ service: 'web', members, targetPort: 8080, ...(targetInFlight !== undefined ? { targetInFlight } : {}) });

test('pick: awake members with room first, fewest in flight; else the waking member filled up to the target, then the next; parks only for a member not awake', () => {
  const rows: Array<[string, string[], string[], Record<string, number>, number | undefined, string, boolean]> = [
    // what, members, awake, in flight, target, chosen, parks
    ['the least busy awake member', ['a', 'b', 'c'], ['a', 'b', 'c'], { a: 3, b: 1, c: 2 }, 10, 'b', false],
    ['no target: awake members take everything', ['a', 'b'], ['a'], { a: 500 }, undefined, 'a', false],
    ['every awake member at the target: a sleeping one wakes', ['a', 'b'], ['a'], { a: 10 }, 10, 'b', true],
    ['none awake: the waking one is filled up to the target first', ['a', 'b'], [], { b: 4 }, 10, 'b', true],
    ['the waking one is full: the next one wakes', ['a', 'b'], [], { b: 10 }, 10, 'a', true],
    ['every sleeping member full too: park on the least busy not awake', ['a', 'b', 'c'], ['a'], { a: 10, b: 12, c: 11 }, 10, 'c', true],
    ['every member awake and full: the least busy, no parking', ['a', 'b'], ['a', 'b'], { a: 12, b: 11 }, 10, 'b', false],
  ];
  for (const [what, members, awake, inFlight, target, chosen, parks] of rows) {
    const placed = balancer(awake, inFlight).pick(service(members, target), {});
    assert.deepEqual(placed && [placed.route.instanceId, placed.park], [chosen, parks], what);
  }
});

test('pick: a burst at zero spreads over ceil(burst / target) members; ties go in turn; pinned clients stay; excluded members are skipped', () => {
  const b = balancer([], {});
  const route = service(['a', 'b', 'c', 'd', 'e'], 10);
  const woken = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const placed = b.pick(route, {})!;
    assert.equal(placed.park, true);
    woken.add(placed.route.instanceId);
    b.started(placed.route.instanceId);
  }
  assert.equal(woken.size, 3);

  const idle = balancer(['a', 'b', 'c'], {});
  const order = Array.from({ length: 6 }, () => idle.pick(service(['a', 'b', 'c']), {})!.route.instanceId);
  assert.deepEqual(order, ['a', 'b', 'c', 'a', 'b', 'c'], 'idle members in turn');

  const pinned = balancer(['a', 'b'], {});
  const client = {};
  const first = pinned.pick(service(['a', 'b']), client)!.route.instanceId;
  assert.equal(pinned.pick(service(['a', 'b']), client)!.route.instanceId, first, 'a keep-alive client stays');
  pinned.started(first);
  pinned.started(first);
  assert.notEqual(pinned.pick(service(['a', 'b']), client)!.route.instanceId, first, 'unless its member is busier by more than one');

  assert.equal(balancer(['a', 'b'], {}).pick(service(['a', 'b']), {}, new Set(['a']))!.route.instanceId, 'b');
  assert.equal(balancer(['a'], {}).pick(service(['a']), {}, new Set(['a'])), undefined);
  assert.equal(balancer([], {}).pick(service([]), {}), undefined);
});
