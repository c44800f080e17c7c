import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReadModel, expectRevision, followFeed } from './read-model.js';
import type { StateChange, StateFeed, StateListing } from './state-store.js';
import { testRecord } from './testing.js';
import type { InstanceRecord } from './instance-record.js';

const template = { dir: '/t/abc', kind: 'template' } as unknown as NonNullable<InstanceRecord['status']['snapshots']['template']>;

test('puts and deletes are applied in revision order; a replayed or older change is ignored', () => {
  const m = new ReadModel();
  const seen: StateChange[] = [];
  m.subscribe((c) => seen.push(c));
  assert.equal(m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 3 }) }), true);
  assert.equal(m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 3, status: { state: 'running' } }) }), false);
  assert.equal(m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 2, status: { state: 'failed' } }) }), false);
  assert.equal(m.get('a')?.status.state, 'stopped');
  assert.equal(m.getByName('web')?.id, 'a');
  assert.equal(m.revision, 3);
  assert.equal(m.apply({ type: 'delete', id: 'a', revision: 3 }), false, 'a delete at the revision held is a replay');
  assert.equal(m.apply({ type: 'delete', id: 'a', revision: 4 }), true);
  assert.equal(m.get('a'), undefined);
  assert.equal(m.getByName('web'), undefined);
  assert.deepEqual(seen.map((c) => c.type), ['put', 'delete']);
  // A put older than the delete (a watch delivering it after the store applied its own delete) never brings the record back.
  assert.equal(m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 3 }) }), false);
  assert.equal(m.get('a'), undefined);
  assert.equal(m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 5 }) }), true, 'a newer put is the record again');
  assert.deepEqual(seen.map((c) => c.type), ['put', 'delete', 'put']);
});

test('records handed out are frozen, listed oldest first, and template users are counted', () => {
  const m = new ReadModel();
  m.apply({ type: 'put', record: testRecord('b', { id: 'b', revision: 1, createdAt: '2026-01-02T00:00:00.000Z', status: { snapshots: { template } } }) });
  m.apply({ type: 'put', record: testRecord('a', { id: 'a', revision: 2, createdAt: '2026-01-01T00:00:00.000Z', status: { snapshots: { template } } }) });
  assert.deepEqual(m.list().map((r) => r.id), ['a', 'b']);
  assert.ok(Object.isFrozen(m.get('a')));
  assert.equal(m.usesTemplate('/t/abc'), true);
  m.apply({ type: 'put', record: testRecord('a', { id: 'a', revision: 3 }) });
  assert.equal(m.usesTemplate('/t/abc'), true, 'b still names it');
  m.apply({ type: 'delete', id: 'b', revision: 4 });
  assert.equal(m.usesTemplate('/t/abc'), false);
});

test('a reset replaces the records and tells subscribers what changed', () => {
  const m = new ReadModel();
  m.apply({ type: 'put', record: testRecord('a', { id: 'a', revision: 1 }) });
  m.apply({ type: 'put', record: testRecord('b', { id: 'b', revision: 2 }) });
  const seen: string[] = [];
  m.subscribe((c) => seen.push(c.type === 'put' ? `put ${c.record.id}@${c.record.revision}` : c.type === 'delete' ? `delete ${c.id}` : 'reset'));
  m.reset({ revision: 9, records: [testRecord('a', { id: 'a', revision: 1 }), testRecord('c', { id: 'c', revision: 8 })] });
  assert.deepEqual(seen.sort(), ['delete b', 'put c@8']);
  assert.deepEqual(m.list().map((r) => r.id).sort(), ['a', 'c']);
  assert.equal(m.revision, 9);
});

test('expectRevision names the stale write and the missing record', () => {
  const m = new ReadModel();
  m.apply({ type: 'put', record: testRecord('web', { id: 'a', revision: 5 }) });
  assert.equal(expectRevision(m, 'a', 5).id, 'a');
  assert.throws(() => expectRevision(m, 'a', 4), (err: any) => err.code === 'STALE_REVISION' && err.details.actual === 5);
  assert.throws(() => expectRevision(m, 'zz', 1), (err: any) => err.code === 'RECORD_NOT_FOUND');
});

test('followFeed lists, watches from the listing, and lists again after a reset', async () => {
  let listing: StateListing = { revision: 2, records: [testRecord('a', { id: 'a', revision: 2 })] };
  const watchers: { after: number; on: (c: StateChange) => void; closed: boolean }[] = [];
  const feed: StateFeed = {
    list: async () => listing,
    watch(after, on) {
      const w = { after, on, closed: false };
      watchers.push(w);
      return () => void (w.closed = true);
    },
  };
  const m = new ReadModel();
  const stop = await followFeed(feed, m);
  assert.equal(m.get('a')?.revision, 2);
  assert.equal(watchers[0]!.after, 2);
  watchers[0]!.on({ type: 'put', record: testRecord('b', { id: 'b', revision: 3 }) });
  assert.equal(m.get('b')?.revision, 3);
  listing = { revision: 7, records: [testRecord('b', { id: 'b', revision: 6 })] };
  watchers[0]!.on({ type: 'reset' });
  await new Promise((r) => setImmediate(r));
  assert.equal(watchers[0]!.closed, true, 'the old watch is closed before the new listing');
  assert.equal(watchers[1]!.after, 7);
  assert.equal(m.get('a'), undefined, 'deleted while the watch was compacted');
  assert.equal(m.get('b')?.revision, 6);
  stop();
  assert.equal(watchers[1]!.closed, true);
});

test('followFeed retries a listing that fails after a reset (the backend is away) until one succeeds', async () => {
  let failures = 2;
  const errors: unknown[] = [];
  const watchers: ((c: StateChange) => void)[] = [];
  const feed: StateFeed = {
    list: async () => {
      if (watchers.length > 0 && failures-- > 0) throw new Error('backend away');
      return { revision: 4, records: watchers.length > 0 ? [] : [testRecord('a', { id: 'a', revision: 2 })] };
    },
    watch(_after, on) {
      watchers.push(on);
      return () => {};
    },
  };
  const m = new ReadModel();
  const stop = await followFeed(feed, m, (err) => errors.push(err), 5);
  assert.equal(m.get('a')?.revision, 2);
  watchers[0]!({ type: 'reset' });
  const deadline = Date.now() + 2000;
  while (watchers.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(errors.length, 2, 'each failed listing is reported');
  assert.equal(watchers.length, 2, 'the third listing succeeded and a new watch began');
  assert.equal(m.get('a'), undefined);
  stop();
});
