import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testRecord } from '../controller/state/testing.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { listPage } from './list-page.js';

const recs: InstanceRecord[] = Array.from({ length: 7 }, (_, i) => testRecord(`i${i}`, { id: `id${i}`, status: { state: i % 2 === 0 ? 'standby' : 'running' } }));
const q = (s: string) => new URLSearchParams(s);

test('no limit: the whole list, no cursor', () => {
  const p = listPage(recs, q(''));
  assert.equal(p.records.length, 7);
  assert.equal(p.next, undefined);
});

test('pages follow each other by cursor until next is null', () => {
  const seen: string[] = [];
  let after = '';
  for (;;) {
    const p = listPage(recs, q(`limit=3${after ? `&after=${after}` : ''}`));
    seen.push(...p.records.map((r) => r.id));
    if (p.next === null) break;
    after = p.next!;
  }
  assert.deepEqual(seen, recs.map((r) => r.id));
});

test('a state filter pages over the matching records only', () => {
  const first = listPage(recs, q('limit=2&state=standby'));
  assert.deepEqual(first.records.map((r) => r.id), ['id0', 'id2']);
  const second = listPage(recs, q(`limit=2&state=standby&after=${first.next}`));
  assert.deepEqual(second.records.map((r) => r.id), ['id4', 'id6']);
  assert.equal(second.next, null);
});

test('bad input is a 400 that says what to send', () => {
  assert.throws(() => listPage(recs, q('limit=0')), /limit must be at least 1/);
  assert.throws(() => listPage(recs, q('limit=x')), /limit must be a whole number/);
  assert.throws(() => listPage(recs, q('state=asleep')), /state must be one of/);
  assert.throws(() => listPage(recs, q('limit=2&after=gone')), /no instance on this host/);
});
