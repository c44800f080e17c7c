// A cold wake served by the primed pool, through the Controller over fakes (../testing.ts): the
// instance takes a paused VM, binds it (record: pid, run folder, network) and resumes it; its end
// gives the instance its own run folder back with the VM's console output; rm empties the pool.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setup, until, wakeUp, type FakeVm } from '../testing.js';
import { primedRoot } from './primed-dir.js';

const MiB = 1024 * 1024;
const POOL = { primedPool: { budgetBytes: 256 * MiB, refillDelayMs: 10 } };

/** A stateless scale-to-zero instance `name` that has slept and woken once (a miss), and the primed VM that wake put in the pool. */
async function primedOnce(tag: string, name: string) {
  const h = setup(tag, POOL);
  const rec = await h.c.create({ image: 'hello:1', name, scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  await h.c.wait(name, 'running');
  await h.c.suspend(rec.id);
  // The first cold wake misses (nothing was primed) and is what puts the template in demand.
  await wakeUp(h.c, rec.id);
  await until(() => h.c.primedPool().entries === 1, 'a primed VM');
  return { ...h, rec };
}


test('a cold wake after the pool filled resumes a primed VM bound to the instance; rm leaves no VM, namespace or folder', async () => {
  const { c, driver, network, dataDir, rec } = await primedOnce('primed-wake', 'p');
  assert.equal(c.lastWake(rec.id)!.tier, 'cold');
  assert.equal(c.primedPool().misses, 1);
  const primed = driver.vms.at(-1)!;
  assert.equal(primed.paused, true, 'no guest code ran in the pool');
  await c.suspend(rec.id);
  const restores = driver.restores.length;
  const up = await wakeUp(c, rec.id);
  assert.equal(driver.restores.length, restores, 'no restore on the wake path');
  assert.equal(primed.paused, false, 'resumed');
  const w = c.lastWake(rec.id)!;
  assert.equal(w.tier, 'primed');
  assert.deepEqual(Object.keys(w.phases), ['controller', 'vmm', 'clock']);
  assert.equal(c.metrics(rec.id).wakes.primed, 1);
  assert.equal(c.primedPool().hits, 1);
  const bound = c.get(rec.id);
  assert.equal(bound.status.pid, primed.pid);
  assert.equal(bound.status.vm!.runDir, primed.config.runDir, 'the record names the VM\'s own run folder (adoption after a restart)');
  assert.equal(bound.status.vm!.network!.netns, primed.config.network!.netns);
  assert.equal(up.host, primed.config.network!.hostReachableIp, 'the proxy goes to the primed VM\'s namespace');
  assert.equal(bound.status.counters.wakesCold, 2, 'a primed wake is a cold wake');

  // The guest writes to the primed VM's console; `flick logs` reads it after the instance's own.
  fs.writeFileSync(path.join(bound.status.dir, 'run', 'console.log'), 'before\n');
  fs.writeFileSync(path.join(primed.config.runDir, 'console.log'), 'primed\n');
  assert.equal(await text(c.logs(rec.id)), 'before\nprimed\n');

  // Suspended again (cold): the VM ends, its output joins the instance's log, its folder goes.
  await c.suspend(rec.id);
  const folder = path.dirname(primed.config.runDir);
  await until(() => !fs.existsSync(folder), 'the primed folder removed');
  const after = c.get(rec.id);
  assert.equal(after.status.vm!.runDir, path.join(after.status.dir, 'run'), 'its own run folder again');
  assert.equal(after.status.vm!.id, rec.id);
  assert.equal(fs.readFileSync(path.join(after.status.dir, 'run', 'console.log'), 'utf8'), 'before\nprimed\n');
  assert.ok(!network.held.has(primed.config.network!.netns!), 'its namespace went with it');

  // Removing the last instance of the template takes the template's primed VMs with it.
  await until(() => c.primedPool().entries >= 1, 'the pool refilled');
  const pooled = driver.vms.filter((v) => v.paused && v.config.id.startsWith('primed-'));
  await c.rm(rec.id, { force: true });
  for (const v of pooled) await v.exited;
  assert.equal(c.primedPool().entries, 0);
  await until(() => fs.readdirSync(primedRoot(dataDir)).length === 0, 'no primed folder');
  assert.equal(network.held.size, 0, 'no namespace held');
  assert.deepEqual([...driver.alive], [], 'no VM alive');
});

test('a primed VM that does not resume is replaced by a normal restore; a mismatched one is not taken', async () => {
  const { c, driver, rec } = await primedOnce('primed-fallback', 'f');
  const primed = driver.vms.at(-1)! as FakeVm;
  primed.resume = async () => {
    throw new Error('cont refused (fake)');
  };
  await c.suspend(rec.id);
  const restores = driver.restores.length;
  await wakeUp(c, rec.id);
  assert.equal(c.lastWake(rec.id)!.tier, 'cold');
  assert.equal(driver.restores.length, restores + 1, 'restored on the spot');
  assert.equal(c.get(rec.id).status.state, 'running');
  await primed.exited;
  assert.notEqual(c.get(rec.id).status.pid, primed.pid);
});

test('a restart of flickd keeps a bound primed VM (adopted by its record) and sweeps unbound ones', async () => {
  const { c, driver, dataDir, network, rec } = await primedOnce('primed-restart', 'r');
  await c.suspend(rec.id);
  await wakeUp(c, rec.id);
  const bound = c.get(rec.id);
  await until(() => c.primedPool().entries >= 1, 'the pool refilled');
  const unbound = driver.vms.at(-1)!;
  // A crash: nothing is disposed; the next flickd sees the same store, driver and folders.
  const next = setup('primed-restart', { db: path.join(dataDir, 'state.db'), driver, network, ...POOL });
  await next.c.reconcile();
  assert.equal(next.c.get(rec.id).status.pid, bound.status.pid, 'adopted');
  assert.ok(fs.existsSync(path.dirname(bound.status.vm!.runDir)), 'the bound folder stays');
  assert.ok(!fs.existsSync(path.dirname(unbound.config.runDir)), 'the unbound folder went');
});

async function text(it: AsyncIterable<Buffer>): Promise<string> {
  let s = '';
  for await (const b of it) s += b.toString();
  return s;
}
