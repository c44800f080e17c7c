import assert from 'node:assert/strict';
import { test } from 'node:test';
import { placeCreate } from './api-forward.js';
import type { HostView } from './membership.js';

const host = (name: string, instances: number | undefined, freeGiB = 10): HostView => ({
  record: { version: 1, name, api: `http://${name}:7450`, proxy: null, capacity: { memoryBytes: 16 * 2 ** 30, vcpus: 2 }, joinedAt: '' },
  load: instances === undefined ? undefined : { version: 1, lease: '1', memoryFreeBytes: freeGiB * 2 ** 30, loadAvg1m: 0, instances, startedAt: '', updatedAt: '' },
});

test('a create goes to the up host with the fewest instances, then the most free memory; this host wins a tie', () => {
  const table: Array<[string, HostView[], string, Map<string, number>?]> = [
    ['fewest instances', [host('a', 3), host('b', 1), host('c', 2)], 'b'],
    ['a tie stays here', [host('a', 1), host('b', 1), host('c', 1)], 'c'],
    ['much more free memory wins a tie', [host('a', 1, 20), host('b', 1), host('c', 1)], 'a'],
    ['down hosts are skipped', [host('a', undefined), host('b', 5), host('c', 9)], 'b'],
    ['creates sent but not yet in the load count', [host('a', 0), host('b', 1), host('c', 2)], 'b', new Map([['a', 2]])],
  ];
  for (const [what, hosts, want, pending] of table) assert.equal(placeCreate({ list: () => hosts }, 'c', pending), want, what);
  assert.equal(placeCreate({ list: () => [] }, 'c'), 'c', 'no directory yet: here');
});
