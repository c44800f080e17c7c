// Component tests of liveness (health.ts) over fakes (testing.ts): health in the status, unhealthy + restart policy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HealthEvent } from './events.js';
import { setup, wakeUp } from './testing.js';

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

test('health: starting after boot, then what the guest reports, with when it changed, and an event', async () => {
  const { c, driver } = setup('health-status');
  const events: HealthEvent[] = [];
  c.on('health', (e) => events.push(e));
  await c.create({ image: 'hello-hc:1', name: 'h' });
  let rec = await c.wait('h', 'running');
  assert.equal(rec.status.health?.status, 'starting');
  driver.vms[0]!.reportHealth('healthy');
  await settle();
  rec = c.get('h');
  assert.equal(rec.status.health?.status, 'healthy');
  assert.ok(Date.parse(rec.status.health!.since) > 0);
  assert.deepEqual(events.map((e) => [e.name, e.status]), [['h', 'healthy']]);
  // Without a HEALTHCHECK there is no health at all.
  await c.create({ image: 'hello:1', name: 'plain' });
  assert.equal((await c.wait('plain', 'running')).status.health, undefined);
});

test('unhealthy with restart policy on-failure: the instance is restarted, restarts counted, the error says why', async () => {
  const { c, driver } = setup('health-restart');
  await c.create({ image: 'hello-hc:1', name: 'r', restartPolicy: 'on-failure' });
  await c.wait('r', 'running');
  const seen: string[] = [];
  let failedError: string | undefined;
  const restarted = new Promise<void>((resolve) =>
    c.on('state', (e) => {
      seen.push(e.to);
      if (e.to === 'failed') failedError = c.get('r').status.error;
      if (e.to === 'running') resolve();
    }),
  );
  driver.vms[0]!.reportHealth('healthy');
  driver.vms[0]!.reportHealth('unhealthy', 'curl: (7) connection refused');
  await restarted;
  assert.deepEqual(seen, ['failed', 'starting', 'running']);
  assert.equal(failedError, 'HEALTHCHECK failed 3 times: curl: (7) connection refused');
  const rec = c.get('r');
  assert.equal(rec.status.counters.restarts, 1);
  assert.equal(rec.status.health?.status, 'starting', 'the new VM starts over');
  assert.equal(driver.vms.length, 2);
  assert.equal(driver.alive.has(driver.vms[0]!.pid), false, 'the unhealthy VM is gone');
});

test('unhealthy with restart policy never: it keeps running and shows unhealthy', async () => {
  const { c, driver } = setup('health-never');
  const events: HealthEvent[] = [];
  c.on('health', (e) => events.push(e));
  await c.create({ image: 'hello-hc:1', name: 'n', restartPolicy: 'never' });
  await c.wait('n', 'running');
  driver.vms[0]!.reportHealth('unhealthy');
  await settle();
  const rec = c.get('n');
  assert.equal(rec.status.state, 'running');
  assert.equal(rec.status.health?.status, 'unhealthy');
  assert.equal(rec.status.counters.restarts, 0);
  assert.equal(driver.vms.length, 1);
  assert.deepEqual(events.map((e) => [e.status, e.action]), [['unhealthy', 'none']]);
});

test('health reports are ignored while the instance is in standby', async () => {
  const { c, driver } = setup('health-standby', { hotBudgetBytes: 2 ** 30 });
  const events: HealthEvent[] = [];
  c.on('health', (e) => events.push(e));
  await c.create({ image: 'hello-hc:1', name: 's', restartPolicy: 'always', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const rec = await c.wait('s', 'running');
  // A booted VM's first standby is cold; the restored one that serves next is kept hot (paused, still live).
  await c.suspend(rec.id);
  await wakeUp(c, rec.id);
  await c.suspend(rec.id);
  const asleep = c.get('s');
  assert.equal(asleep.status.state, 'standby');
  assert.equal(asleep.status.standbyTier, 'hot', 'its VM is still there, paused: only the state keeps it from acting');
  for (const vm of driver.vms) vm.reportHealth('unhealthy');
  await settle();
  const after = c.get('s');
  assert.equal(after.status.state, 'standby');
  assert.deepEqual(after.status.health, asleep.status.health);
  assert.equal(after.status.counters.restarts, 0);
  assert.deepEqual(events, []);
});
