import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FencedInstances } from './fence-instances.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';

const rec = (id: string, name: string, pid?: number) => ({ id, name, status: { pid } }) as unknown as InstanceRecord;

test('the fence stops this host\'s stateless instances and refuses their wakes; lifted, it starts what is still this host\'s', async () => {
  const calls: string[] = [];
  const records = [rec('i1', 'web', 101), rec('i2', 'db', 102), rec('i3', 'asleep'), rec('i4', 'theirs', 104), rec('i5', 'moved', 105)];
  const catalog: Record<string, { owner: string; stateful: boolean }> = {
    web: { owner: 'h1', stateful: false },
    db: { owner: 'h1', stateful: true },
    asleep: { owner: 'h1', stateful: false },
    theirs: { owner: 'h2', stateful: false },
    moved: { owner: 'h1', stateful: false },
  };
  const f = new FencedInstances({
    self: 'h1',
    controller: {
      list: () => records,
      stop: async (id: string) => (calls.push(`stop ${id}`), records[0]!),
      start: async (id: string) => (calls.push(`start ${id}`), records[0]!),
    },
    cataloged: (name) => catalog[name],
    // While fenced, "moved" went to h2.
    ownerNow: async (name) => (name === 'moved' ? 'h2' : catalog[name]?.owner),
    log: () => {},
  });
  await f.fence();
  assert.deepEqual(calls, ['stop i1', 'stop i5'], 'a stateful instance and another host\'s are left alone; one without a VM has nothing to stop');
  assert.deepEqual(['i1', 'i2', 'i3', 'i4', 'i5'].map((id) => f.refuses(id)), [true, false, true, false, true]);
  assert.equal(f.refusal('i1').code, 'HOST_DOWN');
  assert.match(f.refusal('i1').message, /"web" is fenced on this host/);
  await f.fence();
  assert.equal(calls.length, 2, 'fencing twice stops nothing twice');
  await f.lift();
  assert.deepEqual(calls.slice(2), ['start i1'], 'started again: only what the fence stopped and the catalog still gives to this host');
  assert.equal(f.refuses('i1'), false);
});
