// The StateStore contract, as node:test cases any backend runs against itself
// (SQLite in src/store/sqlite-state-store.test.ts, etcd in
// test/etcd-state-store.test.ts): what the controller relies on, whatever
// holds the records. Not used by the product; only tests import it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NewInstanceRecord } from './instance-record.js';
import type { StateChange, StateStore } from './state-store.js';
import { testRecord } from './testing.js';

export interface ContractTarget {
  /** Names the backend in each test's title. */
  name: string;
  /** A new, empty store (or an empty scope of one) writing as its own host. */
  open: () => Promise<StateStore>;
  /**
   * What this host's reads show of a record claimed by another host: `visible`
   * (a single host lists every record, with its owner) or `leaves` (a cluster
   * host reads only what it owns, so its controller never acts on another's).
   */
  claimedAway: 'visible' | 'leaves';
}

/** A new record `id` (named `name`) as create takes it. */
export function newRecord(id: string, name = id): NewInstanceRecord {
  const { owner: _o, revision: _r, updatedAt: _u, ...rec } = testRecord(name, { id, status: { dir: `/nonexistent/${id}` } });
  return rec;
}

const template = { dir: '/t/a', stateFile: '/t/a/state', memoryFile: '/t/a/mem', memoryMb: 128, vcpus: 1, createdAt: '' };

/** Registers the contract's cases for `t`. */
export function stateStoreContract(t: ContractTarget): void {
  const each = (title: string, body: (s: StateStore) => Promise<void>) =>
    test(`${t.name}: ${title}`, async () => {
      const s = await t.open();
      try {
        await body(s);
      } finally {
        await s.close();
      }
    });

  each('create stores a record owned by this host and reads it back at once (read your own writes)', async (s) => {
    const created = await s.create(newRecord('a', 'web'));
    assert.equal(created.owner, s.hostId);
    assert.ok(created.revision > 0);
    assert.deepEqual(s.get('a'), created);
    assert.equal(s.getByName('web')?.id, 'a');
    const specced = await s.updateSpec('a', created.revision, { memoryMb: 512 });
    assert.equal(s.get('a')?.spec.memoryMb, 512);
    assert.equal(s.get('a')?.revision, specced.revision);
    const status = s.updateStatus('a', specced.revision, { state: 'running', pid: 42 });
    assert.ok(status.revision > specced.revision);
    assert.equal(s.get('a')?.status.pid, 42);
    assert.equal(s.get('a')?.spec.memoryMb, 512, 'a status write keeps the spec');
  });

  each('a write that names a revision the record has moved past fails with STALE_REVISION and changes nothing', async (s) => {
    const r1 = await s.create(newRecord('a'));
    const r2 = s.updateStatus('a', r1.revision, { state: 'starting' });
    assert.throws(() => s.updateStatus('a', r1.revision, { state: 'failed' }), (err: any) => err.code === 'STALE_REVISION' && err.details.actual === r2.revision);
    await assert.rejects(s.remove('a', r1.revision), (err: any) => err.code === 'STALE_REVISION');
    await assert.rejects(s.updateSpec('a', r1.revision, { memoryMb: 512 }), (err: any) => err.code === 'STALE_REVISION');
    await assert.rejects(s.claim('a', r1.revision, 'host-b'), (err: any) => err.code === 'STALE_REVISION');
    assert.equal(s.get('a')?.status.state, 'starting');
    assert.equal(s.get('a')?.spec.memoryMb, 128);
    assert.equal(s.get('a')?.revision, r2.revision);
  });

  each('spec and status are written apart; a claimed record is another host\'s, and its status is no longer this host\'s to write', async (s) => {
    const r1 = await s.create(newRecord('a'));
    const r2 = await s.updateSpec('a', r1.revision, { memoryMb: 512 });
    assert.equal(r2.spec.memoryMb, 512);
    assert.deepEqual(r2.status, r1.status);
    const r3 = await s.claim('a', r2.revision, 'host-b');
    assert.equal(r3.owner, 'host-b');
    if (t.claimedAway === 'visible') {
      assert.equal(s.get('a')?.owner, 'host-b');
      assert.throws(() => s.updateStatus('a', r3.revision, { state: 'starting' }), (err: any) => err.code === 'NOT_OWNER');
    } else {
      assert.equal(s.get('a'), undefined, 'the record left this host\'s reads');
      assert.equal(s.getByName('a'), undefined);
      assert.deepEqual(s.list(), []);
      assert.throws(() => s.updateStatus('a', r3.revision, { state: 'starting' }), (err: any) => err.code === 'RECORD_NOT_FOUND');
    }
  });

  each('a claim with a status hands the record on with that status, in the same write', async (s) => {
    const r1 = await s.create(newRecord('a'));
    const r2 = s.updateStatus('a', r1.revision, { state: 'running', pid: 42 });
    const claimed = await s.claim('a', r2.revision, 'host-b', { ...r2.status, state: 'stopped', pid: null, movedFrom: 'host-a' });
    assert.equal(claimed.owner, 'host-b');
    assert.deepEqual([claimed.status.state, claimed.status.pid, claimed.status.movedFrom], ['stopped', null, 'host-a']);
  });

  each('a duplicate name is refused with NAME_TAKEN and says what to do', async (s) => {
    await s.create(newRecord('i-1', 'web'));
    await assert.rejects(s.create(newRecord('i-2', 'web')), (err: any) => err.code === 'NAME_TAKEN' && err.kind === 'user' && /flick rm web/.test(err.message));
    assert.equal(s.list().length, 1);
    // The name is free again once its record is removed.
    await s.remove('i-1', s.get('i-1')!.revision);
    assert.equal((await s.create(newRecord('i-3', 'web'))).name, 'web');
  });

  each('records handed out are frozen; subscribers see each change once, in order', async (s) => {
    const seen: string[] = [];
    s.subscribe((c: StateChange) => seen.push(c.type === 'put' ? `put ${c.record.id} ${c.record.status.state}` : c.type === 'delete' ? `delete ${c.id}` : 'reset'));
    const r = await s.create(newRecord('a'));
    assert.ok(Object.isFrozen(s.get('a')));
    s.updateStatus('a', r.revision, { state: 'starting' });
    await s.remove('a', s.get('a')!.revision);
    // A backend that learns its own writes back from a watch must not replay them.
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual(seen, ['put a stopped', 'put a starting', 'delete a']);
  });

  each('list is oldest first (createdAt, then id)', async (s) => {
    const at = (id: string, createdAt: string) => ({ ...newRecord(id), createdAt, updatedAt: createdAt });
    await s.create(at('c', '2026-01-02T00:00:00.000Z'));
    await s.create(at('b', '2026-01-01T00:00:00.000Z'));
    await s.create(at('a', '2026-01-02T00:00:00.000Z'));
    assert.deepEqual(s.list().map((r) => r.id), ['b', 'a', 'c']);
  });

  each('usesTemplate follows creates, updates and removes', async (s) => {
    const a = newRecord('a');
    await s.create({ ...a, status: { ...a.status, snapshots: { template } } });
    const b = await s.create(newRecord('b'));
    s.updateStatus('b', b.revision, { snapshots: { template } });
    assert.equal(s.usesTemplate('/t/a'), true);
    await s.remove('a', s.get('a')!.revision);
    assert.equal(s.usesTemplate('/t/a'), true, 'b still names it');
    s.updateStatus('b', s.get('b')!.revision, { snapshots: {} });
    assert.equal(s.usesTemplate('/t/a'), false);
    assert.equal(s.usesTemplate('/t/other'), false);
  });

  each('a status write to an unknown id fails with RECORD_NOT_FOUND (a system error, not a 404); remove reports whether it removed', async (s) => {
    assert.throws(() => s.updateStatus('nope', 1, { state: 'running' }), (err: any) => err.code === 'RECORD_NOT_FOUND' && err.kind === 'system');
    const x = await s.create(newRecord('x'));
    assert.equal(await s.remove('x', x.revision), true);
    assert.equal(await s.remove('x', x.revision), false);
    assert.equal(s.get('x'), undefined);
  });

  test(`${t.name}: close is safe twice`, async () => {
    const s = await t.open();
    await s.create(newRecord('a'));
    await s.close();
    await s.close();
  });
}
