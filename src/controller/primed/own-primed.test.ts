// Primed VMs of stateful instances (own-primed.ts) through the Controller over fakes (../testing.ts):
// a cold standby's own state restored paused after the delay, a wake that binds and resumes it
// (no restore on its path, the snapshot consumed), a wake during the restore waiting for it (one
// VM), a stop, an rm or the budget ending it with its namespace and folder, and a wake during an
// eviction waiting for the evicted QEMU to be dead; a failed resume of a taken one drops the own snapshot.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { setup, until, wakeUp } from '../testing.js';
import { primedRoot } from './primed-dir.js';

const MiB = 1024 * 1024;

async function statefulAsleep(tag: string, names: string[], budgetBytes = 256 * MiB, usageBytes = 20 * MiB) {
  const h = setup(tag, { primedPool: { budgetBytes, statefulBudgetBytes: budgetBytes, statefulDelayMs: 10 } });
  h.driver.usageBytes = usageBytes;
  const ids: string[] = [];
  for (const name of names) {
    const rec = await h.c.create({ image: 'hello:1', name, scaleToZero: { policy: 'on', cooldownTimeMs: 60_000, stateful: true } });
    await h.c.wait(name, 'running');
    ids.push(rec.id);
  }
  return { ...h, ids };
}

test('a stateful cold standby is restored paused from its own state; its wake binds and resumes that VM; a stop ends the next one', async () => {
  const { c, driver, network, dataDir, ids } = await statefulAsleep('own-primed', ['db']);
  const id = ids[0]!;
  await c.suspend(id, { tier: 'cold' });
  const own = c.get(id).status.snapshots.own!;
  await until(() => c.primedPool().stateful?.vms === 1, 'a primed VM of its own state');
  const r = driver.restores.at(-1)!;
  assert.deepEqual([r.mode, r.paused, r.snapshot.createdAt], ['own', true, own.createdAt], 'its own snapshot, paused: no guest code ran');
  const primed = driver.vms.at(-1)!;
  assert.equal(c.get(id).status.pid, null, 'the record holds no VM until the wake binds it');

  const restores = driver.restores.length;
  await wakeUp(c, id);
  assert.equal(driver.restores.length, restores, 'no restore on the wake path');
  assert.equal(c.lastWake(id)!.tier, 'primed');
  assert.equal(c.get(id).status.pid, primed.pid);
  assert.equal(c.get(id).status.snapshots.own, undefined, 'the snapshot is consumed: the VM runs in its RAM file');
  assert.equal(c.primedPool().stateful?.hits, 1);

  await c.suspend(id, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.vms === 1, 'primed again from the new state');
  const next = driver.vms.at(-1)!;
  await c.stop(id);
  assert.ok(!driver.alive.has(next.pid), 'the stop ended the primed VM');
  assert.equal(c.primedPool().stateful?.vms, 0);
  await until(() => fs.readdirSync(primedRoot(dataDir)).length === 0, 'no primed folder');
  assert.equal(network.held.size, 0, 'no namespace held');
});

test('a wake during the restore waits for it and takes it (one VM); over the budget the least recently primed goes; rm leaves nothing', async () => {
  const { c, driver, network, dataDir, ids } = await statefulAsleep('own-primed-budget', ['a', 'b'], 60 * MiB, 40 * MiB);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const restore = driver.restore.bind(driver);
  driver.restore = async (...args) => {
    if (args[2].paused) await gate;
    return restore(...args);
  };
  await c.suspend(ids[0]!, { tier: 'cold' });
  await new Promise((r) => setTimeout(r, 50)); // the prime has begun and waits at the gate
  const woken = wakeUp(c, ids[0]!);
  await new Promise((r) => setTimeout(r, 20));
  release();
  await woken;
  assert.equal(c.lastWake(ids[0]!)!.tier, 'primed', `the wake took the VM restored meanwhile: ${JSON.stringify(c.primedPool().stateful)} ${JSON.stringify(driver.restores.map((r) => [r.mode, r.paused]))}`);
  assert.deepEqual([...driver.alive], [c.get(ids[0]!).status.pid], 'one VM: the one the wake took');
  await wakeUp(c, ids[1]!); // b was created asleep (a's template): it saves a state of its own at its next standby

  await c.suspend(ids[0]!, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.vms === 1, 'a primed');
  await c.suspend(ids[1]!, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.evictions === 1 && c.primedPool().stateful?.vms === 1, "b's VM in, a's out (40 MiB each, one fits in 60)");
  await c.rm(ids[1]!, { force: true });
  await c.rm(ids[0]!, { force: true });
  assert.deepEqual([...driver.alive], [], 'no VM alive');
  assert.equal(network.held.size, 0, 'no namespace held');
  await until(() => fs.readdirSync(primedRoot(dataDir)).length === 0, 'no primed folder');
});

test('a wake while its primed VM is being evicted waits until that QEMU is dead before it restores (one QEMU per disk)', async () => {
  const { c, driver, ids } = await statefulAsleep('own-primed-ending', ['a', 'b'], 60 * MiB, 40 * MiB);
  await wakeUp(c, ids[1]!); // b saves a state of its own at its next standby
  await c.suspend(ids[0]!, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.vms === 1, 'a primed');
  const primedA = driver.vms.at(-1)!;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const kill = primedA.kill.bind(primedA);
  primedA.kill = async () => {
    await gate;
    return kill();
  };
  const heldAtRestore: boolean[] = [];
  const restore = driver.restore.bind(driver);
  driver.restore = async (...args) => {
    if (!args[2].paused) heldAtRestore.push(driver.alive.has(primedA.pid));
    return restore(...args);
  };
  await c.suspend(ids[1]!, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.evictions === 1, "a's VM being evicted (its kill held)");
  const woken = wakeUp(c, ids[0]!);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(heldAtRestore, [], 'no restore of a while its primed QEMU lives');
  release();
  await woken;
  assert.deepEqual(heldAtRestore, [false], "a's wake restored once, after its primed QEMU had ended");
  await c.rm(ids[0]!, { force: true });
  await c.rm(ids[1]!, { force: true });
  assert.deepEqual([...driver.alive], [], 'no VM alive');
});

test('a taken primed VM that fails to resume fails the wake and leaves no own snapshot to restore (its guest may have run)', async () => {
  const { c, driver, ids } = await statefulAsleep('own-primed-torn', ['db']);
  const id = ids[0]!;
  await c.suspend(id, { tier: 'cold' });
  await until(() => c.primedPool().stateful?.vms === 1, 'a primed VM of its own state');
  const primed = driver.vms.at(-1)!;
  primed.resume = async () => {
    throw new Error('the clock line went unanswered');
  };
  await assert.rejects(wakeUp(c, id));
  const rec = c.get(id);
  assert.equal(rec.status.state, 'failed');
  assert.equal(rec.status.snapshots.own, undefined, 'no torn state is restored later');
  assert.deepEqual([...driver.alive], [], 'the primed VM ended');
  await c.rm(id, { force: true });
});
