// Unit tests of a record's moves between hosts (ownership.ts) over fakes (testing.ts): a takeOver claims
// another host's record with its status reset and starts it; a release frees what a record that left holds.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setup } from './testing.js';

test('takeOver claims another host\'s record, its status reset in the same write (nothing of the other host\'s), and starts it here', async () => {
  const { c, store, driver, dataDir } = setup('take-over');
  const made = await c.create({ image: 'hello:1', name: 'web', autostart: false });
  // As another host left it: its VM, network slot, folder and snapshots, none of them this host's.
  const theirs = await store.claim(made.id, made.revision, 'host-b', {
    ...made.status,
    state: 'running',
    pid: 4242,
    networkIndex: 9,
    dir: '/elsewhere/instances/x',
    snapshots: { template: { dir: '/elsewhere/templates/t', memoryFile: '/elsewhere/templates/t/mem' } as never },
  });
  await assert.rejects(c.takeOver({ ...theirs, revision: theirs.revision - 1 }), (err: any) => err.code === 'STALE_REVISION');
  const starting = await c.takeOver(theirs);
  assert.equal(starting.owner, store.hostId);
  assert.equal(starting.status.state, 'starting');
  assert.equal(starting.status.movedFrom, 'host-b');
  assert.equal(starting.status.dir, path.join(dataDir, 'instances', made.id));
  const running = await c.wait('web', 'running');
  assert.equal(running.id, made.id, 'the same record, not a new instance');
  assert.equal(running.status.pid, driver.vms[0]!.pid);
  assert.notEqual(running.status.networkIndex, 9);
  assert.notEqual(running.status.snapshots.template?.dir, '/elsewhere/templates/t');
  // A stateful instance keeps its state on its host: it is never taken over.
  const kept = await c.create({ image: 'hello:1', name: 'kept', autostart: false, scaleToZero: { policy: 'on', stateful: true } });
  const keptTheirs = await store.claim(kept.id, kept.revision, 'host-b');
  await assert.rejects(c.takeOver(keptTheirs), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /keeps its state on host host-b/.test(err.message));
});

test('release frees what a record that left the store held here: its VM, network and folder; a record still here is left alone', async () => {
  const { c, store, driver, network } = setup('release');
  await c.create({ image: 'hello:1', name: 'web' });
  const last = await c.wait('web', 'running');
  assert.ok(fs.existsSync(last.status.dir));
  await c.release(last);
  assert.equal(c.get('web').status.state, 'running', 'still this host\'s: nothing released');
  const removed: string[] = [];
  c.on('removed', (e) => removed.push(e.name));
  // The record leaves this host's store (in a cluster: claimed by another host).
  await store.remove(last.id, store.get(last.id)!.revision);
  await c.release(last);
  assert.equal(driver.alive.has(last.status.pid!), false, 'its VM is killed');
  assert.equal(network.held.size, 0, 'its network slot is back in the pool');
  assert.equal(fs.existsSync(last.status.dir), false, 'its folder is gone');
  assert.deepEqual(removed, ['web']);
});

test('takeOver keeps a stopped record stopped and a failed one failed (no restart due); release leaves the network of a VM not live here alone', async () => {
  const { c, store, driver, network } = setup('take-over-kept');
  const stopped = await c.create({ image: 'hello:1', name: 'off', autostart: false });
  const theirsStopped = await store.claim(stopped.id, stopped.revision, 'host-b', { ...stopped.status, state: 'stopped' });
  const kept = await c.takeOver(theirsStopped);
  assert.equal(kept.status.state, 'stopped');
  assert.equal(kept.owner, store.hostId);
  const failed = await c.create({ image: 'hello:1', name: 'bad', autostart: false, restartPolicy: 'never' });
  const theirsFailed = await store.claim(failed.id, failed.revision, 'host-b', { ...failed.status, state: 'failed', error: 'the VM exited with code 1' });
  const keptFailed = await c.takeOver(theirsFailed);
  assert.equal(keptFailed.status.state, 'failed');
  assert.equal(keptFailed.status.error, 'the VM exited with code 1');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(driver.vms.length, 0, 'neither was booted');
  // A record that names a slot no VM of this flickd holds (at start: the sweep owns those slots).
  await c.create({ image: 'hello:1', name: 'web' });
  const running = await c.wait('web', 'running');
  const heldBefore = network.held.size;
  await store.remove(kept.id, store.get(kept.id)!.revision);
  await c.release({ ...kept, status: { ...kept.status, networkIndex: running.status.networkIndex, vm: running.status.vm } });
  assert.equal(network.held.size, heldBefore, 'the running VM keeps its slot');
  assert.equal(c.get('web').status.state, 'running');
});
