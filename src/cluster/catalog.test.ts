import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterInstanceView, placedEntry, type CatalogEntry } from './catalog.js';
import { testRecord } from '../controller/state/testing.js';

const entry = (fields: Partial<CatalogEntry> = {}): CatalogEntry => ({
  version: 1,
  name: 'web',
  owner: 'h2',
  id: 'abc',
  state: 'placed',
  config: { image: 'app@sha256:00' },
  stateful: false,
  http: { hostname: 'web.localhost', guestPort: 8080 },
  updatedAt: '2026-12-01T00:00:00.000Z',
  ...fields,
});

test('an instance is up with its host; moving (stateless) or unavailable (stateful, with the reason) without it', () => {
  assert.deepEqual([clusterInstanceView(entry(), true).availability, clusterInstanceView(entry(), true).reason], ['up', null]);
  const moving = clusterInstanceView(entry({ error: 'moving it to h1 failed: no image' }), false);
  assert.equal(moving.availability, 'moving');
  assert.match(moving.reason!, /host h2 is down: re-creating it on another host \(last try: moving it to h1 failed: no image\)/);
  const kept = clusterInstanceView(entry({ stateful: true }), false);
  assert.equal(kept.availability, 'unavailable');
  assert.match(kept.reason!, /host h2 is down and this instance keeps its state \(or a volume\) there/);
  assert.equal(clusterInstanceView(entry({ movedFrom: 'h3' }), true).moved_from, 'h3');
});

test('placedEntry: the image pinned by digest; stateful when it keeps its state or mounts a volume (never moved on failover)', () => {
  const plain = placedEntry(testRecord('web'), 'h1');
  assert.deepEqual([plain.owner, plain.state, plain.config.image, plain.stateful], ['h1', 'placed', 'hello@sha256:00', false]);
  const withVolume = placedEntry(testRecord('db', { spec: { volumes: [{ name: 'pgdata', path: '/data', readOnly: false }] } }), 'h1');
  assert.equal(withVolume.stateful, true, 'a volume lives on its host: its instance must not move');
  assert.equal(placedEntry(testRecord('s', { spec: { scaleToZero: { policy: 'on', cooldownTimeMs: 1000, stateful: true } } }), 'h1').stateful, true);
});
