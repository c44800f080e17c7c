import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlickError } from '../errors.js';
import type { MemberPlacement } from './member-placement.js';
import { ServiceMembers, type ServiceController } from './members.js';
import type { ServiceRecord } from './service-store.js';

const record = (members: string[]): ServiceRecord => ({ version: 1, name: 'web', template: { image: 'app:1' }, replicas: members.length, members, createdAt: '', updatedAt: '' });

test('followed: a member a failover moved gets its new id, one no host has leaves, and nothing changes while the cluster is not known yet', () => {
  const controller = { list: () => [{ id: 'a', name: 'web-a' }] } as unknown as ServiceController;
  let started = false;
  // The cluster: web-b moved h2 → h3, web-c (this host's) moved to h2, web-d is gone, id e is no host's.
  const where: Record<string, string | null> = { 'web-a': 'a', 'web-b': '@h3/web-b', 'web-c': '@h2/web-c', 'web-d': null };
  const placement = {
    hostOf: (id: string) => (id.startsWith('@') ? id.slice(1, id.indexOf('/')) : undefined),
    nameOf: (id: string) => (id.startsWith('@') ? id.slice(id.indexOf('/') + 1) : !started ? undefined : id === 'c' ? 'web-c' : null),
    follow: (name: string) => (started ? where[name] : undefined),
  } as unknown as MemberPlacement;
  const members = new ServiceMembers(controller, placement);
  const rec = record(['a', '@h2/web-b', 'c', '@h2/web-d', 'e']);
  assert.equal(members.followed(rec), undefined, 'before the cluster is joined every member is kept as it is');
  started = true;
  assert.deepEqual(members.followed(rec), ['a', '@h3/web-b', '@h2/web-c']);
  // This host's member just removed: it stays if the cluster moved it, else it leaves.
  assert.deepEqual(members.followed(record(['a', 'x']), { id: 'x', name: 'web-c' }), ['a', '@h2/web-c']);
  assert.deepEqual(members.followed(record(['a', 'x']), { id: 'x', name: 'web-d' }), ['a']);
  // Alone (no cluster), a removed member simply leaves.
  assert.deepEqual(new ServiceMembers(controller, undefined).followed(record(['a', 'x']), { id: 'x', name: 'web-x' }), ['a']);
});

test('ready: a failed member and one not ready in time reject with a typed code and say to read its logs', async () => {
  const state = { value: 'failed' };
  const controller = { get: () => ({ name: 'web-a', status: { state: state.value, error: 'exit 1' } }) } as unknown as ServiceController;
  const members = new ServiceMembers(controller, undefined);
  const typed = (code: string) => (err: unknown) => err instanceof FlickError && err.code === code && err.message.includes("see 'flick logs web-a'");
  await assert.rejects(members.ready('a', 1000), typed('START_FAILED'));
  state.value = 'starting';
  await assert.rejects(members.ready('a', 0), typed('WAIT_TIMEOUT'));
});
