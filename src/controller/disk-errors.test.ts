// A VM paused at a write the host could not make (a full disk), over fakes (testing.ts): the
// instance fails with the reason, whether it was running or still booting, and is not restarted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeDriver, setup } from './testing.js';

test('a full host disk under a running instance: failed with the reason, VM ended, no restart; a start boots it again', async () => {
  const { c, driver } = setup('disk-full-running');
  await c.create({ image: 'hello:1', name: 'd', restartPolicy: 'on-failure' });
  await c.wait('d', 'running');
  driver.vms[0]!.diskFull(undefined);
  driver.vms[0]!.diskFull(undefined); // one event per failed request: the first one says it
  const failed = await c.wait('d', 'failed', { timeoutMs: 5000 });
  assert.match(failed.status.error ?? '', /^the host disk is full: a disk write failed \(No space left on device\); the VM was paused .* then 'flick start d'$/);
  assert.equal(failed.status.pid, null);
  await new Promise((r) => setTimeout(r, 50)); // the restart backoff here is 1-5 ms
  assert.equal(c.get('d').status.state, 'failed');
  assert.equal(c.get('d').status.counters.restarts, 0, 'a restart would hit the same wall');
  assert.equal(driver.vms.length, 1);
  await c.start('d');
  assert.equal((await c.wait('d', 'running')).status.error, undefined);
});

test('a full host disk while booting: the start fails with the reason, not with "died while booting"', async () => {
  const driver = new FakeDriver();
  driver.portReady = new Promise(() => {}); // never ready
  const { c } = setup('disk-full-boot', { driver });
  await c.create({ image: 'hello:1', name: 'b', restartPolicy: 'always' });
  while (driver.vms.length === 0) await new Promise((r) => setTimeout(r, 1));
  driver.vms[0]!.diskFull(0);
  const failed = await c.wait('b', 'failed', { timeoutMs: 5000 });
  assert.match(failed.status.error ?? '', /^the host disk is full: a disk write failed/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.get('b').status.counters.restarts, 0);
});
