// Component tests of the controller lifecycle (create, start, stop, rm, crashes, restarts, reconcile, logs) over fakes (testing.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FakeDriver, FakeNetwork, setup, tmp } from './testing.js';

test('create boots the VM, waits for the exposed port, and the instance ends up running', async () => {
  const { c, driver, network } = setup('create');
  const created = await c.create({ image: 'hello:latest', name: 'web', env: { A: '1' } });
  assert.equal(created.status.state, 'starting');
  const rec = await c.wait('web', 'running', { timeoutMs: 5000 });
  assert.equal(rec.spec.service.http?.hostname, 'web.localhost');
  assert.equal(rec.spec.service.http?.guestPort, 8080);
  assert.deepEqual(driver.vms[0]!.config.guest.argv, ['/server']);
  assert.deepEqual(driver.vms[0]!.config.guest.env, ['A=1']);
  assert.equal(rec.status.pid, driver.vms[0]!.pid);
  assert.deepEqual([...network.held.keys()], [rec.status.vm!.network!.netns]);
  assert.equal(network.held.get(rec.status.vm!.network!.netns!), rec.status.networkIndex);
  assert.equal(rec.status.counters.boots, 1);
});

test('stop ends the VM and releases its network; a second stop is ILLEGAL_TRANSITION', async () => {
  const { c, network } = setup('stop');
  await c.create({ image: 'hello:1', name: 'a' });
  await c.wait('a', 'running');
  const stopped = await c.stop('a');
  assert.equal(stopped.status.state, 'stopped');
  assert.equal(stopped.status.pid, null);
  assert.equal(stopped.status.networkIndex, null);
  assert.equal(network.held.size, 0);
  await assert.rejects(c.stop('a'), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /it is stopped/.test(err.message));
  const again = await c.start('a');
  assert.equal(again.status.state, 'starting');
  assert.equal((await c.wait('a', 'running')).status.counters.boots, 2);
});

test('create refuses an unknown image, a bad name and a duplicate name, and stores nothing for them', async () => {
  const { c } = setup('bad');
  await assert.rejects(c.create({ image: 'nope:1' }), (err: any) => err.code === 'IMAGE_NOT_FOUND' && err.kind === 'user' && /flick push nope:1/.test(err.message));
  await assert.rejects(c.create({ image: 'hello:1', name: 'Bad_Name' }), (err: any) => err.code === 'INVALID_SPEC');
  await c.create({ image: 'hello:1', name: 'dup', autostart: false });
  await assert.rejects(c.create({ image: 'hello:1', name: 'dup' }), (err: any) => err.code === 'NAME_TAKEN');
  assert.deepEqual(c.list().map((r) => r.name), ['dup']);
  assert.throws(() => c.get('ghost'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
});

test('an app that crashes is marked failed, and on-failure restarts it', async () => {
  const { c, driver } = setup('restart');
  await c.create({ image: 'hello:1', name: 'r', restartPolicy: 'on-failure' });
  await c.wait('r', 'running');
  const seen: string[] = [];
  const restarted = new Promise<void>((resolve) =>
    c.on('state', (e) => {
      seen.push(e.to);
      if (e.to === 'running') resolve();
    }),
  );
  driver.vms[0]!.crash(3);
  await restarted;
  assert.deepEqual(seen, ['failed', 'starting', 'running']);
  const rec = await c.wait('r', 'running');
  assert.equal(rec.status.counters.restarts, 1);
  assert.equal(rec.status.lastExitCode, 3);
  assert.equal(driver.vms.length, 2);
});

test('with restart policy never, a crash leaves the instance failed with its exit code', async () => {
  const { c, driver } = setup('never');
  await c.create({ image: 'hello:1', name: 'n' });
  await c.wait('n', 'running');
  const failed = new Promise<void>((resolve) => c.on('state', (e) => e.to === 'failed' && resolve()));
  driver.vms[0]!.crash(2);
  await failed;
  const rec = c.get('n');
  assert.equal(rec.status.state, 'failed');
  assert.equal(rec.status.lastExitCode, 2);
  assert.match(rec.status.error ?? '', /code 2/);
});

test('rm of a running instance needs force; rm -f removes record, files and network', async () => {
  const { c, network } = setup('rm');
  const rec = await c.create({ image: 'hello:1', name: 'x' });
  await c.wait('x', 'running');
  await assert.rejects(c.rm('x'), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /rm -f x/.test(err.message));
  await c.rm('x', { force: true });
  assert.throws(() => c.get('x'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
  assert.equal(fs.existsSync(rec.status.dir), false);
  assert.equal(network.held.size, 0);
});

test('stop during boot aborts it and the instance ends stopped, not failed', async () => {
  const driver = new FakeDriver();
  driver.portReady = new Promise(() => {}); // the guest never answers
  const { c } = setup('stop-boot', { driver });
  await c.create({ image: 'hello:1', name: 's' });
  await new Promise((r) => setTimeout(r, 20));
  const rec = await c.stop('s');
  assert.equal(rec.status.state, 'stopped');
  assert.equal(driver.alive.size, 0);
});

test('a restarted controller re-adopts live VMs and marks dead ones', async () => {
  const driver = new FakeDriver();
  const network = new FakeNetwork();
  const db = path.join(tmp, 'reconcile.db');
  const first = setup('reconcile-1', { db, driver, network });
  await first.c.create({ image: 'hello:1', name: 'alive' });
  await first.c.create({ image: 'hello:1', name: 'dead', restartPolicy: 'never' });
  await first.c.wait('alive', 'running');
  await first.c.wait('dead', 'running');
  // flickd is "killed": the controller lets go without stopping anything.
  await first.c.dispose();
  await first.store.close();
  assert.ok(driver.vms.every((v) => v.released), 'a disposed controller lets go of its VMs without stopping them');
  const deadVm = driver.vms.find((v) => v.config.guest.hostname === 'dead')!;
  await deadVm.kill();
  const second = setup('reconcile-1', { db, driver, network });
  const result = await second.c.reconcile();
  assert.equal(result.adopted.length, 1);
  assert.equal(result.died.length, 1);
  assert.equal(second.c.get('alive').status.state, 'running');
  assert.equal(second.c.get('dead').status.state, 'failed');
  assert.deepEqual([...network.held.keys()], [second.c.get('alive').status.vm!.network!.netns], "the dead VM's network is released");
  assert.equal(second.c.get('dead').status.networkIndex, null);
  // The adopted VM is watched again: its crash is noticed.
  const failed = second.c.wait('alive', 'failed');
  driver.vms.find((v) => v.config.guest.hostname === 'alive')!.crash(9);
  assert.equal((await failed).status.lastExitCode, 9);
});

test('logs yields the console output, rotated files first', async () => {
  const { c } = setup('logs');
  const rec = await c.create({ image: 'hello:1', name: 'l', autostart: false });
  fs.mkdirSync(path.join(rec.status.dir, 'logs'), { recursive: true });
  fs.writeFileSync(path.join(rec.status.dir, 'logs', 'console.1.log'), 'old\n');
  fs.mkdirSync(path.join(rec.status.dir, 'run'), { recursive: true });
  fs.writeFileSync(path.join(rec.status.dir, 'run', 'console.log'), 'new\n');
  let text = '';
  for await (const chunk of c.logs('l')) text += chunk.toString();
  assert.equal(text, 'old\nnew\n');
  assert.throws(() => c.logs('ghost'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
});
