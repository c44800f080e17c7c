// Controller.fork over fakes (testing.ts): from cold standby and from a running VM, the refusals,
// and that a refused or failed fork leaves no record and no folder. Volumes: test/postgres.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setup, wakeUp } from './testing.js';

const live = new AbortController().signal;
const stateful = { policy: 'on' as const, stateful: true, cooldownTimeMs: 60_000 };

test('fork of a cold-standby instance: its saved state copied into the fork, which wakes from it; the source still wakes from its own', async () => {
  const { c, driver, dataDir } = setup('fork-cold');
  const src = await c.create({ image: 'hello:1', name: 'src', scaleToZero: stateful, service: { tcp: [{ hostPort: 7001, guestPort: 5432 }] } });
  await c.wait('src', 'running');
  await c.suspend(src.id, { tier: 'cold' });
  const { record: fork, mode } = await c.fork('src', { name: 'copy', tcp: [{ hostPort: 7002, guestPort: 5432 }] });
  assert.equal(mode, 'cold');
  assert.deepEqual([fork.status.state, fork.status.standbyTier, fork.status.pid], ['standby', 'cold', null]);
  assert.deepEqual(fork.spec.service, { tcp: [{ hostPort: 7002, guestPort: 5432 }] });
  const own = fork.status.snapshots.own!;
  assert.equal(path.dirname(path.dirname(own.dir)), path.join(dataDir, 'instances', fork.id), 'the copy is in the fork\'s folder');
  assert.notEqual(own.memoryFile, c.get('src').status.snapshots.own!.memoryFile);
  assert.equal(fs.readFileSync(own.memoryFile, 'utf8'), 'ram');
  assert.equal(fork.status.vm?.id, fork.id);
  assert.equal(fork.status.vm?.network, undefined, 'a cold standby holds no network');
  await c.waker().ensureAwake(fork.id, live);
  assert.deepEqual(driver.restores.map((r) => [r.mode, r.snapshot.dir]), [['own', own.dir]]);
  await c.waker().ensureAwake(src.id, live);
  assert.equal(driver.restores[1]!.snapshot.dir, path.join(dataDir, 'instances', src.id, 'snapshots', 'own'));
});

test('fork of a running instance: paused, saved with its RAM kept, resumed in the same VM', async () => {
  const { c, driver } = setup('fork-live');
  const src = await c.create({ image: 'hello:1', name: 'src', scaleToZero: stateful });
  await c.wait('src', 'running');
  const { record: fork, mode } = await c.fork('src', { name: 'copy' });
  assert.equal(mode, 'live');
  const vm = driver.vms[0]!;
  assert.equal(vm.paused, false, 'the source runs on');
  assert.equal(vm.saved, false);
  assert.equal(c.get('src').status.pid, vm.pid);
  assert.equal(fork.spec.service.http?.hostname, 'copy.localhost');
  assert.ok(fs.existsSync(fork.status.snapshots.own!.memoryFile));
  await wakeUp(c, fork.id); // the record says running a turn after the proxy has the instance (wake.ts)
  // ensureAwake hands the VM over before the record says running: wait for what a user would see.
  assert.equal((await c.wait('copy', 'running', { timeoutMs: 5000 })).status.state, 'running');
  void src;
});

test('fork of a hot-standby instance: it goes to cold standby first, then forks from its saved state', async () => {
  const { c } = setup('fork-hot', { hotBudgetBytes: 2 ** 30 });
  const src = await c.create({ image: 'hello:1', name: 'src', scaleToZero: stateful });
  await c.wait('src', 'running');
  await c.suspend(src.id); // a booted VM's first standby is cold
  await c.waker().ensureAwake(src.id, live);
  await c.suspend(src.id);
  assert.equal(c.get('src').status.standbyTier, 'hot');
  const { mode } = await c.fork('src', { name: 'copy' });
  assert.equal(mode, 'cold');
  assert.deepEqual([c.get('src').status.state, c.get('src').status.standbyTier, c.get('src').status.pid], ['standby', 'cold', null]);
  await c.waker().ensureAwake(c.get('copy').id, live);
  assert.equal((await c.wait('copy', 'running', { timeoutMs: 5000 })).status.state, 'running');
});

test('shared forks of a standby instance: one template for all of them, each wakes from its own copy of it once, then from its own state', async () => {
  const { c, driver, dataDir } = setup('fork-shared');
  const src = await c.create({ image: 'hello:1', name: 'src', scaleToZero: stateful });
  await c.wait('src', 'running');
  await assert.rejects(c.fork('src', { name: 'no', shared: true }), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /put it in standby first/.test(err.message));
  await c.suspend(src.id, { tier: 'cold' });
  const a = (await c.fork('src', { name: 'a', shared: true })).record;
  const b = await c.fork('src', { name: 'b', shared: true });
  assert.equal(b.mode, 'shared');
  assert.equal(a.status.snapshots.own, undefined, 'no copy of its own');
  assert.equal(a.status.snapshots.template!.dir, b.record.status.snapshots.template!.dir, 'one template for both');
  assert.equal(path.dirname(a.status.snapshots.template!.dir), path.join(dataDir, 'templates'));
  await c.waker().ensureAwake(a.id, live);
  // Its first wake restores its own copy of the template (a RAM file it owns), not the template itself.
  assert.deepEqual(driver.restores.map((r) => [r.mode, r.snapshot.dir]), [['own', path.join(a.status.dir, 'snapshots', 'own')]]);
  assert.equal(fs.readFileSync(driver.restores[0]!.snapshot.memoryFile, 'utf8'), fs.readFileSync(a.status.snapshots.template!.memoryFile, 'utf8'), 'the template copied');
  await c.suspend(a.id, { tier: 'cold' });
  await c.waker().ensureAwake(a.id, live);
  assert.equal(driver.restores[1]!.mode, 'own', 'after its first wake the fork wakes from its own state');
  await c.waker().ensureAwake(src.id, live);
  assert.equal(driver.restores[2]!.mode, 'own', 'the source keeps its own state');
  // The template goes with the last record naming it.
  await c.rm('a', { force: true });
  assert.ok(fs.existsSync(b.record.status.snapshots.template!.dir));
  await c.rm('b', { force: true });
  assert.equal(fs.existsSync(b.record.status.snapshots.template!.dir), false);
});

test('refused forks say why and leave no record and no folder', async () => {
  const { c, dataDir } = setup('fork-bad');
  await c.create({ image: 'hello:1', name: 'src', scaleToZero: stateful, service: { tcp: [{ hostPort: 7001, guestPort: 5432 }] } });
  await c.wait('src', 'running');
  await c.create({ image: 'hello:1', name: 'stateless', scaleToZero: { policy: 'on' } });
  await c.create({ image: 'hello:1', name: 'off', autostart: false, scaleToZero: stateful });
  const cases: Array<[string, Parameters<typeof c.fork>[1], string, RegExp]> = [
    ['src', { name: 'x', tcp: [{ hostPort: 7003, guestPort: 5432 }] , volumeNames: { nope: 'v' } }, 'INVALID_SPEC', /no writable volume "nope"/],
    ['src', { name: 'x' }, 'INVALID_SPEC', /serves TCP on host port 7001 \(guest 5432\): give the fork a host port of its own, e\.g\. 'flick fork src x -p 7002:5432\/tcp'/],
    ['src', { name: 'x', tcp: [{ hostPort: 7001, guestPort: 5432 }] }, 'INVALID_SPEC', /host port 7001 is taken by instance "src"/],
    ['src', { name: 'x', tcp: [{ hostPort: 7003, guestPort: 80 }] }, 'INVALID_SPEC', /serves no TCP guest port 80/],
    ['src', { name: 'stateless', tcp: [{ hostPort: 7003, guestPort: 5432 }] }, 'NAME_TAKEN', /"stateless" already exists/],
    ['src', { name: 'Nope!' }, 'INVALID_SPEC', /instance name "Nope!" is not valid/],
    ['stateless', { name: 'x' }, 'ILLEGAL_TRANSITION', /it is stateless/],
    ['off', { name: 'x' }, 'ILLEGAL_TRANSITION', /it is stopped and has no state in memory to fork/],
  ];
  for (const [source, cfg, code, message] of cases) {
    await assert.rejects(c.fork(source, cfg), (err: any) => err.code === code && err.kind === 'user' && message.test(err.message), `${source} ${JSON.stringify(cfg)}`);
  }
  assert.throws(() => c.get('ghost'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
  assert.deepEqual(c.list().map((r) => r.name).sort(), ['off', 'src', 'stateless']);
  const dirs = fs.existsSync(path.join(dataDir, 'instances')) ? fs.readdirSync(path.join(dataDir, 'instances')) : [];
  assert.ok(dirs.every((d) => c.list().some((r) => r.id === d)), `no folder of a refused fork: ${dirs.join(', ')}`);
});
