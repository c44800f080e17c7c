// Component tests of scale to zero through the Controller (templates, suspend, wake, hot/cold tiers, reconcile of standbys) over fakes (testing.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PAUSED } from '../proxy/waker.js';
import { FakeDriver, FakeNetwork, setup, tmp, wakeUp } from './testing.js';

/** The proxy's wake signal: never aborted here. */
const live = new AbortController().signal;

test('scale to zero: template at first readiness, suspend to standby, one wake for many callers', async () => {
  const { c, driver, network } = setup('s2z');
  await c.create({ image: 'hello:1', name: 'z', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  let rec = await c.wait('z', 'running');
  assert.ok(rec.status.snapshots.template, 'template snapshot taken');
  assert.ok(fs.existsSync(rec.status.snapshots.template.memoryFile), 'template RAM copied');
  assert.equal(driver.vms[0]!.paused, false, 'resumed after the snapshot');
  await c.suspend(rec.id);
  assert.equal(c.get('z').status.state, 'standby');
  const ups = await Promise.all(Array.from({ length: 20 }, () => wakeUp(c, rec.id)));
  assert.equal(driver.restores.length, 1, 'exactly one wake');
  assert.equal(driver.restores[0]!.mode, 'clone');
  assert.deepEqual({ host: ups[0]!.host, session: ups[0]!.session }, { host: c.get('z').status.vm!.network!.hostReachableIp, session: String(c.get('z').status.pid) });
  assert.ok(ups.every((u) => u.host === ups[0]!.host && u.asleep === ups[0]!.asleep), 'every caller got the one awake period');
  assert.equal(ups[0]!.asleep.aborted, false);
  rec = c.get('z');
  assert.equal(rec.status.state, 'running');
  assert.equal(rec.status.counters.wakes, 1);
  // A request in flight keeps it awake: an asked suspend waits for it to finish (drains), then suspends.
  c.waker().requestStarted(rec.id);
  const asked = c.suspend(rec.id);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(c.get('z').status.state, 'running', 'not while its request is in flight');
  assert.equal(ups[0]!.asleep.aborted, false);
  c.waker().requestFinished(rec.id);
  assert.equal((await asked).status.state, 'standby');
  assert.equal(c.get('z').status.state, 'standby');
  assert.equal(ups[0]!.asleep.aborted, true, 'the proxy learns the address is dead');
  assert.equal(network.held.size, 0, 'cold standby holds no network');
  // A restart finds nothing to keep.
  await c.reconcile();
  assert.deepEqual(network.swept, []);
  assert.equal(c.get('z').status.state, 'standby');
});

test('a cold-standby instance holds no network; a wake takes a ready one from the pool, which refills', async () => {
  const { c, driver, network } = setup('pool');
  const rec = await c.create({ image: 'hello:1', name: 'p', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const booted = await c.wait('p', 'running');
  const bootAddress = booted.status.vm!.network!.hostReachableIp;
  await c.suspend(rec.id);
  const asleep = c.get('p');
  assert.deepEqual([asleep.status.state, asleep.status.standbyTier, asleep.status.networkIndex, asleep.status.vm?.network], ['standby', 'cold', null, undefined]);
  assert.equal(network.held.size, 0);
  const ready = [...network.ready];
  const made = network.made;
  const up = await wakeUp(c, rec.id);
  const awake = c.get('p');
  assert.equal(awake.status.networkIndex, ready[0], 'the oldest ready network');
  assert.equal(driver.vms.at(-1)!.config.network!.netns, `ns-${ready[0]}`, 'the VM was restored into it');
  assert.equal(up.host, awake.status.vm!.network!.hostReachableIp, 'the proxy is told the new address');
  assert.notEqual(up.host, bootAddress);
  assert.equal(network.ready.length, network.poolSize, 'the pool refilled');
  assert.equal(network.made, made + 1, 'one new namespace, made for the pool, not for the wake');
  await c.stop('p');
  assert.equal(network.held.size, 0);
});

test('300 instances created from one template are 300 cold standbys without networks, and the last one wakes', async () => {
  const { c, driver, network } = setup('many');
  const s2z = { policy: 'on' as const, cooldownTimeMs: 60_000 };
  await c.create({ image: 'hello:1', name: 'first', scaleToZero: s2z });
  await c.wait('first', 'running');
  await c.stop('first');
  const made = network.made;
  const created = [];
  for (let i = 0; i < 300; i++) created.push(await c.create({ image: 'hello:1', name: `many-${i}`, scaleToZero: s2z }));
  assert.ok(created.every((r) => r.status.state === 'standby' && r.status.standbyTier === 'cold'), 'each is created asleep');
  const stored = c.list().filter((r) => r.name.startsWith('many-'));
  assert.equal(stored.length, 300);
  assert.ok(stored.every((r) => r.status.state === 'standby' && r.status.networkIndex === null && r.status.vm?.network === undefined));
  assert.equal(network.held.size, 0);
  assert.equal(network.made, made, 'no namespace was made for them');
  assert.equal(driver.vms.length, 1, 'and no VM booted');
  const last = created.at(-1)!;
  const up = await wakeUp(c, last.id);
  assert.equal(c.get(last.id).status.state, 'running');
  assert.equal(up.host, c.get(last.id).status.vm!.network!.hostReachableIp);
  assert.equal(driver.restores.at(-1)!.mode, 'clone');
  assert.equal(network.held.size, 1);
});

test('stateful scale to zero saves the own state at suspend and wakes into it', async () => {
  const { c, driver } = setup('s2z-stateful');
  const rec = await c.create({ image: 'hello:1', name: 'st', scaleToZero: { policy: 'on', stateful: true, cooldownTimeMs: 60_000 } });
  await c.wait('st', 'running');
  await c.suspend(rec.id);
  const asleep = c.get('st');
  assert.equal(asleep.status.state, 'standby');
  assert.ok(asleep.status.snapshots.own && fs.existsSync(asleep.status.snapshots.own.memoryFile));
  await wakeUp(c, rec.id);
  assert.equal(driver.restores[0]!.mode, 'own');
  assert.equal(c.get('st').status.state, 'running');
  // Stopping ends the own state; the next start boots fresh.
  await c.stop('st');
  assert.equal(c.get('st').status.snapshots.own, undefined);
});

test('hot standby keeps the paused VM: a wake is a resume, counted as hot; stop ends it', async () => {
  const { c, driver } = setup('hot', { hotBudgetBytes: 2 ** 30 });
  const rec = await c.create({ image: 'hello:1', name: 'h', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  await c.wait('h', 'running');
  // The VM that booted (and holds its boot's translations) goes cold at its first standby; the
  // restored one that serves from then on is the one kept hot.
  await c.suspend(rec.id);
  assert.deepEqual([c.get('h').status.standbyTier, c.get('h').status.pid], ['cold', null], "a booted VM's first standby is cold");
  await wakeUp(c, rec.id);
  assert.equal(driver.restores.length, 1);
  const vm = driver.vms[1]!;
  const before = await wakeUp(c, rec.id);
  assert.equal(before.session, String(vm.pid), 'the session is the VM process');
  await c.suspend(rec.id);
  assert.equal(before.asleep.reason, PAUSED, 'the proxy is told the VM only paused: its connections live on');
  const asleep = c.get('h');
  assert.equal(asleep.status.state, 'standby');
  assert.equal(asleep.status.standbyTier, 'hot');
  assert.equal(asleep.status.pid, vm.pid, 'the process stays');
  assert.equal(vm.paused, true);
  const [after] = await Promise.all([wakeUp(c, rec.id), wakeUp(c, rec.id)]);
  assert.equal(after.session, before.session, 'the same process after a hot wake');
  assert.equal(driver.restores.length, 1, 'no restore');
  assert.equal(vm.paused, false);
  const woken = c.get('h');
  assert.deepEqual([woken.status.state, woken.status.counters.wakesHot, woken.status.counters.wakesCold], ['running', 1, 1]);
  assert.equal(c.metrics(rec.id).wakes.hot, 1);
  // A hot instance asked to go cold is demoted: the process ends, the next wake restores.
  await c.suspend('h');
  await c.suspend('h', { tier: 'cold' });
  assert.deepEqual([c.get('h').status.standbyTier, c.get('h').status.pid], ['cold', null]);
  const cold = await wakeUp(c, rec.id);
  assert.notEqual(cold.session, after.session, 'a demoted instance wakes in another process: the proxy drops what it kept');
  assert.equal(driver.restores.length, 2);
  assert.equal(c.get('h').status.counters.wakesCold, 2);
  await c.suspend('h');
  await c.stop('h');
  assert.equal(c.get('h').status.state, 'stopped');
  assert.equal(c.get('h').status.standbyTier, undefined);
});

test('over the hot standby budget the least recently suspended instance is demoted to cold', async () => {
  // Without a memory cgroup each hot VM counts as its RAM + 64 MiB = 192 MiB: one fits in 300 MiB, two do not.
  const { c } = setup('budget', { hotBudgetBytes: 300 * 2 ** 20 });
  const a = await c.create({ image: 'hello:1', name: 'a', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const b = await c.create({ image: 'hello:1', name: 'b', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 }, args: ['/server', 'b'] });
  await c.wait('a', 'running');
  await c.wait('b', 'running');
  await c.suspend(a.id, { tier: 'hot' });
  assert.equal(c.get('a').status.standbyTier, 'hot');
  await c.suspend(b.id, { tier: 'hot' });
  for (let i = 0; i < 100 && c.get('a').status.standbyTier !== 'cold'; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual([c.get('a').status.standbyTier, c.get('a').status.pid], ['cold', null], 'the older one went cold');
  assert.equal(c.get('b').status.standbyTier, 'hot');
  assert.equal(c.metrics(a.id).demotions, 1);
});

test('instances of one image and configuration share one template; the last rm removes it', async () => {
  const { c, driver } = setup('shared');
  const s2z = { policy: 'on' as const, cooldownTimeMs: 60_000 };
  const first = await c.create({ image: 'hello:1', name: 'one', scaleToZero: s2z });
  await c.wait('one', 'running');
  const template = c.get('one').status.snapshots.template!;
  assert.ok(fs.existsSync(template.memoryFile));
  // The second does not boot: it sleeps until its first request and wakes from the shared template.
  await c.create({ image: 'hello:1', name: 'two', scaleToZero: s2z });
  const two = await c.wait('two', 'running');
  assert.equal(two.status.state, 'standby');
  assert.equal(driver.vms.length, 1, 'one boot for two instances');
  assert.equal(two.status.snapshots.template!.dir, template.dir, 'the same template');
  assert.equal(driver.vms[0]!.config.guest.hostname, 'hello', 'the guest hostname is the image name, not the instance name');
  await wakeUp(c, two.id);
  assert.equal(driver.restores[0]!.snapshot.dir, template.dir);
  assert.equal(driver.restores[0]!.mode, 'clone');
  // Another configuration gets its own template.
  await c.create({ image: 'hello:1', name: 'big', memoryMb: 256, scaleToZero: s2z });
  assert.notEqual((await c.wait('big', 'running')).status.snapshots.template!.dir, template.dir);
  // A stateful instance starts from its own copy of the template.
  await c.create({ image: 'hello:1', name: 'st', scaleToZero: { ...s2z, stateful: true } });
  const st = await c.wait('st', 'running');
  assert.equal(st.status.state, 'standby');
  assert.ok(st.status.snapshots.own && fs.existsSync(st.status.snapshots.own.memoryFile) && st.status.snapshots.own.dir !== template.dir);
  await c.rm('one', { force: true });
  await c.rm('st', { force: true });
  assert.ok(fs.existsSync(template.dir), 'still used by "two"');
  await c.rm('two', { force: true });
  assert.ok(!fs.existsSync(template.dir), 'removed with its last instance');
  void first;
});

test('a restarted flickd re-adopts a hot-standby VM (paused again if a wake had let it run); one that died meanwhile leaves a stateless instance cold', async () => {
  const driver = new FakeDriver();
  const network = new FakeNetwork();
  const db = path.join(tmp, 'hot-reconcile.db');
  const first = setup('hot-reconcile-1', { db, driver, network, hotBudgetBytes: 2 ** 30 });
  const s2z = { policy: 'on' as const, cooldownTimeMs: 60_000 };
  const kept = await first.c.create({ image: 'hello:1', name: 'kept', scaleToZero: s2z });
  const lost = await first.c.create({ image: 'hello:1', name: 'lost', scaleToZero: s2z, args: ['/server', 'other'] });
  await first.c.wait('kept', 'running');
  await first.c.wait('lost', 'running');
  await first.c.suspend('kept', { tier: 'hot' });
  await first.c.suspend('lost', { tier: 'hot' });
  // flickd died in a hot wake's window: `cont` sent, the record not yet written (wake.ts).
  const keptVm = driver.vms.find((v) => v.pid === first.c.get('kept').status.pid)!;
  keptVm.paused = false;
  await first.c.dispose();
  await first.store.close();
  await driver.vms.find((v) => v.pid === lost.status.pid || v.config.id === lost.id)!.kill();
  const second = setup('hot-reconcile-2', { db, driver, network, hotBudgetBytes: 2 ** 30 });
  await second.c.reconcile();
  assert.deepEqual([second.c.get('kept').status.state, second.c.get('kept').status.standbyTier], ['standby', 'hot']);
  assert.equal(keptVm.paused, true, 'a hot standby found running is paused again, as its record says');
  assert.deepEqual([second.c.get('lost').status.state, second.c.get('lost').status.standbyTier, second.c.get('lost').status.pid], ['standby', 'cold', null]);
  await wakeUp(second.c, kept.id);
  assert.equal(second.c.get('kept').status.counters.wakesHot, 1, 'the adopted paused VM is resumed, not restored');
  await wakeUp(second.c, lost.id);
  assert.equal(second.c.get('lost').status.counters.wakesCold, 1);
});

test('an asked suspend that cannot drain is refused with the reason, and the instance serves on', async () => {
  const { c } = setup('s2z-busy');
  await c.create({ image: 'hello:1', name: 'busy', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const rec = await c.wait('busy', 'running');
  c.waker().requestStarted(rec.id); // never finishes
  await assert.rejects(c.suspend(rec.id), (err: Error & { code?: string }) => err.code === 'ILLEGAL_TRANSITION' && /cannot suspend instance "busy" now: 1 request\(s\) in flight after 5 s; it suspends by itself once idle/.test(err.message));
  assert.equal(c.get('busy').status.state, 'running');
  c.waker().requestFinished(rec.id);
  assert.equal((await c.suspend(rec.id)).status.state, 'standby');
});
