import assert from 'node:assert/strict';
import { test } from 'node:test';
import { placementRequest } from './api-forward.js';
import { candidatesOf, digestOf, groupOf, pickHost, scoreHost, type PlacementCandidate, type PlacementRequest } from './placement.js';
import type { HostView } from './membership.js';

const GiB = 2 ** 30;
const D = `sha256:${'a'.repeat(64)}`;
const host = (name: string, o: Partial<Omit<PlacementCandidate, 'images' | 'templates'>> & { images?: string[]; templates?: string[] } = {}): PlacementCandidate => ({
  name,
  memoryBytes: 16 * GiB,
  vcpus: 4,
  memoryFreeBytes: 8 * GiB,
  loadAvg1m: 1,
  instances: 0,
  sameGroup: 0,
  ...o,
  images: new Set(o.images ?? []),
  templates: new Set(o.templates ?? []),
});
const app: PlacementRequest = { image: 'app:1', memoryMb: 256 };
const pinned: PlacementRequest = { image: `app@${D}`, memoryMb: 256 };

test('placement picks the best host by free RAM and CPU, the image or its template there, and spreads replicas', () => {
  const table: Array<[string, PlacementCandidate[], PlacementRequest, string | undefined, string?]> = [
    ['more free RAM', [host('a', { memoryFreeBytes: 2 * GiB }), host('b', { memoryFreeBytes: 12 * GiB })], app, 'b'],
    ['idler CPU', [host('a', { loadAvg1m: 3.8 }), host('b', { loadAvg1m: 0.2 })], app, 'b'],
    ['the image already there (by tag)', [host('a'), host('b', { images: ['app:1'] })], app, 'b'],
    ['the image already there (by digest)', [host('a'), host('b', { images: [D] })], pinned, 'b'],
    ['its template beats the bare image', [host('a', { images: [D] }), host('b', { templates: [D] })], pinned, 'b'],
    ['a replica already on a host: the next goes elsewhere, image or not', [host('a', { images: ['app:1'], sameGroup: 1 }), host('b')], app, 'b'],
    ['replicas even out', [host('a', { sameGroup: 2 }), host('b', { sameGroup: 1 }), host('c', { sameGroup: 2 })], app, 'b'],
    ['spread loses to a host with no room', [host('a', { sameGroup: 1 }), host('b', { memoryFreeBytes: 100 * 2 ** 20 })], app, 'a'],
    ['no host has room: the one with the most free RAM', [host('a', { memoryFreeBytes: 10 * 2 ** 20 }), host('b', { memoryFreeBytes: 90 * 2 ** 20 })], app, 'b'],
    ['a tie goes to the preferred host (no hop)', [host('a'), host('b'), host('c')], app, 'b', 'b'],
    ['a near tie too (a few MiB of RAM apart)', [host('a', { memoryFreeBytes: 8 * GiB + 64 * 2 ** 20 }), host('b')], app, 'b', 'b'],
    ['a tie without preference: the first name (every host picks the same)', [host('c'), host('a'), host('b')], app, 'a'],
    ['a clearly better host beats the preferred one', [host('a', { memoryFreeBytes: 15 * GiB, loadAvg1m: 0 }), host('b', { memoryFreeBytes: 2 * GiB, loadAvg1m: 3 })], app, 'a', 'b'],
    ['fewer instances break an otherwise tie', [host('a', { instances: 9 }), host('b', { instances: 1 })], app, 'b'],
    ['no candidates', [], app, undefined],
  ];
  for (const [what, hosts, req, want, prefer] of table) assert.equal(pickHost(hosts, req, prefer), want, what);
});

test('scores: the terms are bounded, so one more replica outweighs a template and the image', () => {
  const idle = host('a', { memoryFreeBytes: 16 * GiB, loadAvg1m: 0, templates: [D] });
  const busy = host('b', { memoryFreeBytes: 0, loadAvg1m: 9 });
  assert.ok(scoreHost(idle, pinned) <= 2.5 && scoreHost(busy, pinned) >= -0.01);
  assert.ok(scoreHost({ ...idle, sameGroup: 1 }, pinned) < scoreHost(host('c', { memoryFreeBytes: 16 * GiB, loadAvg1m: 0 }), pinned));
});

test('the group of an image is its repository; a digest is found in a pinned reference', () => {
  assert.equal(groupOf('app:1'), 'app');
  assert.equal(groupOf(`fixtures/hello@${D}`), 'fixtures/hello');
  assert.equal(groupOf('localhost:5000/app:2'), 'localhost:5000/app');
  assert.equal(groupOf('localhost:5000/app'), 'localhost:5000/app');
  assert.equal(digestOf(`app@${D}`), D);
  assert.equal(digestOf(D), D);
  assert.equal(digestOf('app:1'), undefined);
});

test('a create body gives placement its image and RAM; anything else is left to the API to refuse', () => {
  assert.deepEqual(placementRequest(Buffer.from('{"image":"app:1","memory_mb":512}')), { image: 'app:1', memoryMb: 512 });
  assert.deepEqual(placementRequest(Buffer.from('{"image":"app:1"}')), { image: 'app:1', memoryMb: 128 });
  assert.equal(placementRequest(Buffer.from('{"memory_mb":512}')), undefined);
  assert.equal(placementRequest(Buffer.from('not json')), undefined);
});

test("a service's members count against their hosts instead of the image's group: replicas of one service spread over the hosts", () => {
  const view = (name: string) => ({ record: { name, capacity: { memoryBytes: 16 * GiB, vcpus: 4 } }, load: { memoryFreeBytes: 8 * GiB, loadAvg1m: 1, instances: 0, images: name === 'h1' ? ['app:1'] : [] } }) as unknown as HostView;
  const hosts = ['h1', 'h2', 'h3'].map(view);
  // Other instances of the image on h2 do not count for the service; its own members do.
  const owned = [{ owner: 'h2', image: 'app:1' }, { owner: 'h2', image: 'app:1' }];
  const placed: string[] = [];
  for (let i = 0; i < 3; i++) {
    const members = new Map<string, number>();
    for (const h of placed) members.set(h, (members.get(h) ?? 0) + 1);
    placed.push(pickHost(candidatesOf(hosts, owned, 'app:1', new Map(), undefined, members), app, 'h1')!);
  }
  assert.deepEqual(placed, ['h1', 'h2', 'h3']);
  // Without the service's members, the image's group counts (h2 holds two of it).
  assert.equal(candidatesOf(hosts, owned, 'app:1', new Map()).find((c) => c.name === 'h2')?.sameGroup, 2);
});
