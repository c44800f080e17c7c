// Component tests of the wake breakdown through the Controller over fakes (testing.ts): the
// controller's phases at the wake, the proxy's through AwakeInstance.reportWake, in metrics and lastWake.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WAKE_PHASES } from './wake-phases.js';
import { setup, wakeUp } from './testing.js';

const live = new AbortController().signal;
const proxyTimes = { waitMs: 50, forwardMs: 0.5, upstreamMs: 3, clientMs: 0.25 };

for (const tier of ['hot', 'cold'] as const) {
  test(`a ${tier} wake records its phases: the controller's at once, all of them once the proxy reports`, async () => {
    const { c } = setup(`phases-${tier}`, { hotBudgetBytes: tier === 'hot' ? 1 << 30 : 0 });
    const rec = await c.create({ image: 'hello:1', name: 'w', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
    await c.wait('w', 'running');
    if (tier === 'hot') {
      // A booted VM goes cold at its first standby (TCG's translations); its restored clone then goes hot.
      await c.suspend(rec.id);
      await wakeUp(c, rec.id);
    }
    await c.suspend(rec.id);
    assert.equal(c.get('w').status.standbyTier, tier);
    const up = await wakeUp(c, rec.id);
    const before = c.lastWake(rec.id)!;
    assert.equal(before.tier, tier);
    assert.deepEqual(Object.keys(before.phases), ['controller', 'vmm', 'clock'], 'the proxy has not reported yet');
    assert.ok(up.reportWake, 'a waking call can report the rest');
    up.reportWake!(proxyTimes);
    up.reportWake!({ ...proxyTimes, waitMs: 999 }); // once per wake
    const w = c.lastWake(rec.id)!;
    assert.deepEqual(Object.keys(w.phases), [...WAKE_PHASES, 'total']);
    const sum = WAKE_PHASES.reduce((a, p) => a + w.phases[p]!, 0);
    assert.ok(Math.abs(sum - w.phases.total!) < 1e-6 && w.phases.total! >= proxyTimes.waitMs, `phases ${JSON.stringify(w.phases)}`);
    assert.equal(w.phases.upstream, 3);
    const m = c.metrics(rec.id);
    assert.equal(m.wakePhases[tier].total.count, 1);
    assert.equal(m.wakePhases[tier].vmm.count, 1);
    // Already awake (once the wake's section ended): nothing to report.
    await new Promise((r) => setImmediate(r));
    assert.equal((await c.waker().ensureAwake(rec.id, live)).reportWake, undefined);
  });
}

test('a hot wake writes no record before the guest runs: the proxy has the instance first, then standby → running in one write', async () => {
  const { c, driver } = setup('hot-order', { hotBudgetBytes: 1 << 30 });
  const rec = await c.create({ image: 'hello:1', name: 'h', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  await c.wait('h', 'running');
  await c.suspend(rec.id);
  await wakeUp(c, rec.id);
  await c.suspend(rec.id);
  assert.equal(c.get('h').status.standbyTier, 'hot');
  const moves: string[] = [];
  const off = c.on('state', (e) => e.id === rec.id && moves.push(`${e.from} → ${e.to}`));
  const up = await c.waker().ensureAwake(rec.id, live);
  assert.equal(driver.vms.find((v) => String(v.pid) === up.session)!.paused, false, 'the guest runs when the proxy gets it');
  assert.deepEqual(moves, [], 'no record written yet: the write overlaps the first request');
  await wakeUp(c, rec.id);
  off();
  assert.deepEqual(moves, ['standby → running']);
  assert.equal(c.get('h').status.counters.wakesHot, 1);
});
