import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { InstanceStore } from '../store/instance-store.js';
import { VmmError, type MicroVm, type NetworkAttachment, type Snapshot, type VmConfig, type VmExit, type VmmDriver } from '../vmm/driver.js';
import { Controller } from './controller.js';
import type { HeldNetwork, ImageResolver, InstanceNetwork, NetworkLease } from './seams.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-controller-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

class FakeVm implements MicroVm {
  static nextPid = 1000;
  readonly pid = FakeVm.nextPid++;
  readonly accel = 'tcg' as const;
  readonly exited: Promise<VmExit>;
  paused = false;
  saved = false;
  #end!: (e: VmExit) => void;
  constructor(readonly config: VmConfig, readonly portReady: Promise<void> = Promise.resolve()) {
    this.exited = new Promise((r) => (this.#end = r));
    fs.mkdirSync(config.runDir, { recursive: true });
    fs.writeFileSync(path.join(config.runDir, 'memory'), 'ram');
  }
  get id(): string {
    return this.config.id;
  }
  /** The guest app exits by itself. */
  crash(code: number): void {
    this.#end({ guestExitCode: code, processCode: 0, processSignal: null });
  }
  async waitForPort(_port: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const aborted = new Promise<never>((_, reject) => opts.signal?.addEventListener('abort', () => reject(new VmmError('TIMEOUT', 'aborted'))));
    await Promise.race([this.portReady, aborted, this.exited.then(() => Promise.reject(new VmmError('BOOT_FAILED', 'VM died while booting')))]);
  }
  async pause(): Promise<void> {
    this.paused = true;
  }
  async resume(): Promise<void> {
    assert.ok(!this.saved, 'a VM whose RAM went into a snapshot must never run again');
    this.paused = false;
  }
  async createSnapshot(dir: string, opts: { keepRunning?: boolean } = {}): Promise<Snapshot> {
    assert.ok(this.paused, 'snapshots are taken while paused');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'state'), 'state');
    fs.copyFileSync(path.join(this.config.runDir, 'memory'), path.join(dir, 'mem'));
    if (!opts.keepRunning) this.saved = true;
    return { dir, stateFile: path.join(dir, 'state'), memoryFile: path.join(dir, 'mem'), memoryMb: 128, vcpus: 1, createdAt: '' };
  }
  async syncClock(): Promise<void> {}
  released = false;
  release(): void {
    this.released = true;
  }
  async stop(): Promise<VmExit> {
    this.#end({ guestExitCode: 0, processCode: 0, processSignal: null });
    return this.exited;
  }
  async kill(): Promise<VmExit> {
    this.#end({ processCode: null, processSignal: 'SIGKILL' });
    return this.exited;
  }
}

class FakeDriver implements VmmDriver {
  readonly name = 'fake';
  readonly vms: FakeVm[] = [];
  restores: Array<{ mode: string; snapshot: Snapshot }> = [];
  portReady: Promise<void> = Promise.resolve();
  alive = new Set<number>();
  async accelerator() {
    return 'tcg' as const;
  }
  async boot(config: VmConfig): Promise<MicroVm> {
    const vm = new FakeVm(config, this.portReady);
    this.vms.push(vm);
    this.alive.add(vm.pid);
    void vm.exited.then(() => this.alive.delete(vm.pid));
    return vm;
  }
  async restore(config: VmConfig, snapshot: Snapshot, opts: { mode: string }): Promise<MicroVm> {
    this.restores.push({ mode: opts.mode, snapshot });
    return this.boot(config);
  }
  async adopt(config: VmConfig, pid: number): Promise<MicroVm> {
    if (!this.alive.has(pid)) throw new VmmError('VM_EXITED', `no VM ${pid}`);
    const vm = this.vms.find((v) => v.pid === pid)!;
    return vm;
  }
}

/** A pool of networks like src/network's, refilled at once: `made` counts the namespaces it ever made. */
class FakeNetwork implements InstanceNetwork {
  /** Networks VMs hold, by namespace name. */
  held = new Map<string, number>();
  ready: number[] = [];
  made = 0;
  swept: string[] = [];
  constructor(readonly poolSize = 2) {
    this.#refill();
  }
  async acquire(): Promise<NetworkLease> {
    const index = this.ready.shift() ?? this.made++;
    this.#refill();
    const netns = `ns-${index}`;
    this.held.set(netns, index);
    const attachment: NetworkAttachment = { netns, tap: 'tap0', guestMac: 'm', guestIp: '172.31.255.2', gatewayIp: '172.31.255.1', prefixLength: 30, hostReachableIp: `10.0.0.${index}` };
    return { index, attachment };
  }
  async release(held: HeldNetwork): Promise<void> {
    this.held.delete(held.netns);
  }
  async sweep(keep: readonly HeldNetwork[]): Promise<void> {
    const k = new Set(keep.map((x) => x.netns));
    for (const ns of this.held.keys()) if (!k.has(ns)) (this.swept.push(ns), this.held.delete(ns));
  }
  async dispose(): Promise<void> {}
  #refill(): void {
    while (this.ready.length < this.poolSize) this.ready.push(this.made++);
  }
}

const images: ImageResolver = {
  async resolve(ref) {
    if (!ref.startsWith('hello')) throw Object.assign(new Error(`image ${ref} not found`), { code: 'IMAGE_NOT_FOUND' });
    return { digest: 'sha256:abc', config: { Cmd: ['/server'], ExposedPorts: { '8080/tcp': {} } }, paths: { vmlinux: 'k', initrd: 'i', rootfs: 'r' } };
  },
};

function setup(name: string, opts: { db?: string; driver?: FakeDriver; network?: FakeNetwork; hotBudgetBytes?: number } = {}) {
  const dataDir = path.join(tmp, name);
  const store = InstanceStore.open(opts.db ?? path.join(dataDir, 'state.db'));
  const driver = opts.driver ?? new FakeDriver();
  const network = opts.network ?? new FakeNetwork();
  // Hot standby off unless a test asks: the cold tier is what most tests check.
  const hotStandby = { budgetBytes: opts.hotBudgetBytes ?? 0, pageOutAfterMs: 60_000 };
  const c = new Controller({ store, driver, images, network, dataDir, restartBackoff: { initialMs: 1, maxMs: 5 }, hotStandby, cgroupRoot: path.join(dataDir, 'no-cgroups') });
  after(async () => {
    await c.dispose();
    store.close();
  });
  return { c, store, driver, network, dataDir };
}

test('create boots the VM, waits for the exposed port, and the instance ends up running', async () => {
  const { c, driver, network } = setup('create');
  const created = await c.create({ image: 'hello:latest', name: 'web', env: { A: '1' } });
  assert.equal(created.state, 'starting');
  const rec = await c.wait('web', 'running', { timeoutMs: 5000 });
  assert.equal(rec.service.http?.hostname, 'web.localhost');
  assert.equal(rec.service.http?.guestPort, 8080);
  assert.deepEqual(driver.vms[0]!.config.guest.argv, ['/server']);
  assert.deepEqual(driver.vms[0]!.config.guest.env, ['A=1']);
  assert.equal(rec.pid, driver.vms[0]!.pid);
  assert.deepEqual([...network.held.keys()], [rec.vm!.network!.netns]);
  assert.equal(network.held.get(rec.vm!.network!.netns!), rec.networkIndex);
  assert.equal(rec.counters.boots, 1);
});

test('stop ends the VM and releases its network; a second stop is ILLEGAL_TRANSITION', async () => {
  const { c, network } = setup('stop');
  await c.create({ image: 'hello:1', name: 'a' });
  await c.wait('a', 'running');
  const stopped = await c.stop('a');
  assert.equal(stopped.state, 'stopped');
  assert.equal(stopped.pid, null);
  assert.equal(stopped.networkIndex, null);
  assert.equal(network.held.size, 0);
  await assert.rejects(c.stop('a'), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /it is stopped/.test(err.message));
  const again = await c.start('a');
  assert.equal(again.state, 'starting');
  assert.equal((await c.wait('a', 'running')).counters.boots, 2);
});

test('create refuses an unknown image, a bad name and a duplicate name, and stores nothing for them', async () => {
  const { c } = setup('bad');
  await assert.rejects(c.create({ image: 'nope:1' }), (err: any) => err.code === 'IMAGE_NOT_FOUND');
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
    c.events.on('state', (e) => {
      seen.push(e.to);
      if (e.to === 'running') resolve();
    }),
  );
  driver.vms[0]!.crash(3);
  await restarted;
  assert.deepEqual(seen, ['failed', 'starting', 'running']);
  const rec = await c.wait('r', 'running');
  assert.equal(rec.counters.restarts, 1);
  assert.equal(rec.lastExitCode, 3);
  assert.equal(driver.vms.length, 2);
});

test('with restart policy never, a crash leaves the instance failed with its exit code', async () => {
  const { c, driver } = setup('never');
  await c.create({ image: 'hello:1', name: 'n' });
  await c.wait('n', 'running');
  const failed = new Promise<void>((resolve) => c.events.on('state', (e) => e.to === 'failed' && resolve()));
  driver.vms[0]!.crash(2);
  await failed;
  const rec = c.get('n');
  assert.equal(rec.state, 'failed');
  assert.equal(rec.lastExitCode, 2);
  assert.match(rec.error ?? '', /code 2/);
});

test('rm of a running instance needs force; rm -f removes record, files and network', async () => {
  const { c, network } = setup('rm');
  const rec = await c.create({ image: 'hello:1', name: 'x' });
  await c.wait('x', 'running');
  await assert.rejects(c.rm('x'), (err: any) => err.code === 'ILLEGAL_TRANSITION' && /rm -f x/.test(err.message));
  await c.rm('x', { force: true });
  assert.throws(() => c.get('x'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
  assert.equal(fs.existsSync(rec.dir), false);
  assert.equal(network.held.size, 0);
});

test('stop during boot aborts it and the instance ends stopped, not failed', async () => {
  const driver = new FakeDriver();
  driver.portReady = new Promise(() => {}); // the guest never answers
  const { c } = setup('stop-boot', { driver });
  await c.create({ image: 'hello:1', name: 's' });
  await new Promise((r) => setTimeout(r, 20));
  const rec = await c.stop('s');
  assert.equal(rec.state, 'stopped');
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
  first.store.close();
  assert.ok(driver.vms.every((v) => v.released), 'a disposed controller lets go of its VMs without stopping them');
  const deadVm = driver.vms.find((v) => v.config.guest.hostname === 'dead')!;
  await deadVm.kill();
  const second = setup('reconcile-1', { db, driver, network });
  const result = await second.c.reconcile();
  assert.equal(result.adopted.length, 1);
  assert.equal(result.died.length, 1);
  assert.equal(second.c.get('alive').state, 'running');
  assert.equal(second.c.get('dead').state, 'failed');
  assert.deepEqual([...network.held.keys()], [second.c.get('alive').vm!.network!.netns], "the dead VM's network is released");
  assert.equal(second.c.get('dead').networkIndex, null);
  // The adopted VM is watched again: its crash is noticed.
  const failed = second.c.wait('alive', 'failed');
  driver.vms.find((v) => v.config.guest.hostname === 'alive')!.crash(9);
  assert.equal((await failed).lastExitCode, 9);
});

test('scale to zero: template at first readiness, suspend to standby, one wake for many callers', async () => {
  const { c, driver, network } = setup('s2z');
  await c.create({ image: 'hello:1', name: 'z', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  let rec = await c.wait('z', 'running');
  assert.ok(rec.snapshots.template, 'template snapshot taken');
  assert.ok(fs.existsSync(rec.snapshots.template.memoryFile), 'template RAM copied');
  assert.equal(driver.vms[0]!.paused, false, 'resumed after the snapshot');
  await c.scaleToZero.suspend(rec.id);
  assert.equal(c.get('z').state, 'standby');
  const ups = await Promise.all(Array.from({ length: 20 }, () => c.scaleToZero.ensureAwake(rec.id)));
  assert.equal(driver.restores.length, 1, 'exactly one wake');
  assert.equal(driver.restores[0]!.mode, 'clone');
  assert.deepEqual({ host: ups[0]!.host, port: ups[0]!.port }, { host: c.get('z').vm!.network!.hostReachableIp, port: 8080 });
  assert.equal(ups[0]!.asleep.aborted, false);
  rec = c.get('z');
  assert.equal(rec.state, 'running');
  assert.equal(rec.counters.wakes, 1);
  // A request in flight keeps it awake.
  c.scaleToZero.requestStarted(rec.id);
  await c.scaleToZero.suspend(rec.id);
  assert.equal(c.get('z').state, 'running');
  assert.equal(ups[0]!.asleep.aborted, false);
  c.scaleToZero.requestFinished(rec.id);
  await c.scaleToZero.suspend(rec.id);
  assert.equal(c.get('z').state, 'standby');
  assert.equal(ups[0]!.asleep.aborted, true, 'the proxy learns the address is dead');
  assert.equal(network.held.size, 0, 'cold standby holds no network');
  // A restart finds nothing to keep.
  await c.reconcile();
  assert.deepEqual(network.swept, []);
  assert.equal(c.get('z').state, 'standby');
});

test('a cold-standby instance holds no network; a wake takes a ready one from the pool, which refills', async () => {
  const { c, driver, network } = setup('pool');
  const rec = await c.create({ image: 'hello:1', name: 'p', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const booted = await c.wait('p', 'running');
  const bootAddress = booted.vm!.network!.hostReachableIp;
  await c.scaleToZero.suspend(rec.id);
  const asleep = c.get('p');
  assert.deepEqual([asleep.state, asleep.standbyTier, asleep.networkIndex, asleep.vm?.network], ['standby', 'cold', null, undefined]);
  assert.equal(network.held.size, 0);
  const ready = [...network.ready];
  const made = network.made;
  const up = await c.scaleToZero.ensureAwake(rec.id);
  const awake = c.get('p');
  assert.equal(awake.networkIndex, ready[0], 'the oldest ready network');
  assert.equal(driver.vms.at(-1)!.config.network!.netns, `ns-${ready[0]}`, 'the VM was restored into it');
  assert.equal(up.host, awake.vm!.network!.hostReachableIp, 'the proxy is told the new address');
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
  assert.ok(created.every((r) => r.state === 'standby' && r.standbyTier === 'cold'), 'each is created asleep');
  const stored = c.list().filter((r) => r.name.startsWith('many-'));
  assert.equal(stored.length, 300);
  assert.ok(stored.every((r) => r.state === 'standby' && r.networkIndex === null && r.vm?.network === undefined));
  assert.equal(network.held.size, 0);
  assert.equal(network.made, made, 'no namespace was made for them');
  assert.equal(driver.vms.length, 1, 'and no VM booted');
  const last = created.at(-1)!;
  const up = await c.scaleToZero.ensureAwake(last.id);
  assert.equal(c.get(last.id).state, 'running');
  assert.equal(up.host, c.get(last.id).vm!.network!.hostReachableIp);
  assert.equal(driver.restores.at(-1)!.mode, 'clone');
  assert.equal(network.held.size, 1);
});

test('stateful scale to zero saves the own state at suspend and wakes into it', async () => {
  const { c, driver } = setup('s2z-stateful');
  const rec = await c.create({ image: 'hello:1', name: 'st', scaleToZero: { policy: 'on', stateful: true, cooldownTimeMs: 60_000 } });
  await c.wait('st', 'running');
  await c.scaleToZero.suspend(rec.id);
  const asleep = c.get('st');
  assert.equal(asleep.state, 'standby');
  assert.ok(asleep.snapshots.own && fs.existsSync(asleep.snapshots.own.memoryFile));
  await c.scaleToZero.ensureAwake(rec.id);
  assert.equal(driver.restores[0]!.mode, 'own');
  assert.equal(c.get('st').state, 'running');
  // Stopping ends the own state; the next start boots fresh.
  await c.stop('st');
  assert.equal(c.get('st').snapshots.own, undefined);
});

test('logs yields the console output, rotated files first', async () => {
  const { c } = setup('logs');
  const rec = await c.create({ image: 'hello:1', name: 'l', autostart: false });
  fs.mkdirSync(path.join(rec.dir, 'logs'), { recursive: true });
  fs.writeFileSync(path.join(rec.dir, 'logs', 'console.1.log'), 'old\n');
  fs.mkdirSync(path.join(rec.dir, 'run'), { recursive: true });
  fs.writeFileSync(path.join(rec.dir, 'run', 'console.log'), 'new\n');
  let text = '';
  for await (const chunk of c.logs('l')) text += chunk.toString();
  assert.equal(text, 'old\nnew\n');
  assert.throws(() => c.logs('ghost'), (err: any) => err.code === 'INSTANCE_NOT_FOUND');
});

test('hot standby keeps the paused VM: a wake is a resume, counted as hot; stop ends it', async () => {
  const { c, driver } = setup('hot', { hotBudgetBytes: 2 ** 30 });
  const rec = await c.create({ image: 'hello:1', name: 'h', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  await c.wait('h', 'running');
  const vm = driver.vms[0]!;
  await c.scaleToZero.suspend(rec.id);
  const asleep = c.get('h');
  assert.equal(asleep.state, 'standby');
  assert.equal(asleep.standbyTier, 'hot');
  assert.equal(asleep.pid, vm.pid, 'the process stays');
  assert.equal(vm.paused, true);
  await Promise.all([c.scaleToZero.ensureAwake(rec.id), c.scaleToZero.ensureAwake(rec.id)]);
  assert.equal(driver.restores.length, 0, 'no restore');
  assert.equal(vm.paused, false);
  const woken = c.get('h');
  assert.deepEqual([woken.state, woken.counters.wakesHot, woken.counters.wakesCold ?? 0], ['running', 1, 0]);
  assert.equal(c.metrics.snapshot(rec.id).wakes.hot, 1);
  // A hot instance asked to go cold is demoted: the process ends, the next wake restores.
  await c.suspend('h');
  await c.suspend('h', { tier: 'cold' });
  assert.deepEqual([c.get('h').standbyTier, c.get('h').pid], ['cold', null]);
  await c.scaleToZero.ensureAwake(rec.id);
  assert.equal(driver.restores.length, 1);
  assert.equal(c.get('h').counters.wakesCold, 1);
  await c.suspend('h');
  await c.stop('h');
  assert.equal(c.get('h').state, 'stopped');
  assert.equal(c.get('h').standbyTier, undefined);
});

test('over the hot standby budget the least recently suspended instance is demoted to cold', async () => {
  // Without a memory cgroup each hot VM counts as its RAM + 64 MiB = 192 MiB: one fits in 300 MiB, two do not.
  const { c } = setup('budget', { hotBudgetBytes: 300 * 2 ** 20 });
  const a = await c.create({ image: 'hello:1', name: 'a', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 } });
  const b = await c.create({ image: 'hello:1', name: 'b', scaleToZero: { policy: 'on', cooldownTimeMs: 60_000 }, args: ['/server', 'b'] });
  await c.wait('a', 'running');
  await c.wait('b', 'running');
  await c.scaleToZero.suspend(a.id);
  assert.equal(c.get('a').standbyTier, 'hot');
  await c.scaleToZero.suspend(b.id);
  for (let i = 0; i < 100 && c.get('a').standbyTier !== 'cold'; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual([c.get('a').standbyTier, c.get('a').pid], ['cold', null], 'the older one went cold');
  assert.equal(c.get('b').standbyTier, 'hot');
  assert.equal(c.metrics.snapshot(a.id).demotions, 1);
});

test('instances of one image and configuration share one template; the last rm removes it', async () => {
  const { c, driver } = setup('shared');
  const s2z = { policy: 'on' as const, cooldownTimeMs: 60_000 };
  const first = await c.create({ image: 'hello:1', name: 'one', scaleToZero: s2z });
  await c.wait('one', 'running');
  const template = c.get('one').snapshots.template!;
  assert.ok(fs.existsSync(template.memoryFile));
  // The second does not boot: it sleeps until its first request and wakes from the shared template.
  await c.create({ image: 'hello:1', name: 'two', scaleToZero: s2z });
  const two = await c.wait('two', 'running');
  assert.equal(two.state, 'standby');
  assert.equal(driver.vms.length, 1, 'one boot for two instances');
  assert.equal(two.snapshots.template!.dir, template.dir, 'the same template');
  assert.equal(driver.vms[0]!.config.guest.hostname, 'hello', 'the guest hostname is the image name, not the instance name');
  await c.scaleToZero.ensureAwake(two.id);
  assert.equal(driver.restores[0]!.snapshot.dir, template.dir);
  assert.equal(driver.restores[0]!.mode, 'clone');
  // Another configuration gets its own template.
  await c.create({ image: 'hello:1', name: 'big', memoryMb: 256, scaleToZero: s2z });
  assert.notEqual((await c.wait('big', 'running')).snapshots.template!.dir, template.dir);
  // A stateful instance starts from its own copy of the template.
  await c.create({ image: 'hello:1', name: 'st', scaleToZero: { ...s2z, stateful: true } });
  const st = await c.wait('st', 'running');
  assert.equal(st.state, 'standby');
  assert.ok(st.snapshots.own && fs.existsSync(st.snapshots.own.memoryFile) && st.snapshots.own.dir !== template.dir);
  await c.rm('one', { force: true });
  await c.rm('st', { force: true });
  assert.ok(fs.existsSync(template.dir), 'still used by "two"');
  await c.rm('two', { force: true });
  assert.ok(!fs.existsSync(template.dir), 'removed with its last instance');
  void first;
});

test('a restarted flickd re-adopts a hot-standby VM; one that died meanwhile leaves a stateless instance cold', async () => {
  const driver = new FakeDriver();
  const network = new FakeNetwork();
  const db = path.join(tmp, 'hot-reconcile.db');
  const first = setup('hot-reconcile-1', { db, driver, network, hotBudgetBytes: 2 ** 30 });
  const s2z = { policy: 'on' as const, cooldownTimeMs: 60_000 };
  const kept = await first.c.create({ image: 'hello:1', name: 'kept', scaleToZero: s2z });
  const lost = await first.c.create({ image: 'hello:1', name: 'lost', scaleToZero: s2z, args: ['/server', 'other'] });
  await first.c.wait('kept', 'running');
  await first.c.wait('lost', 'running');
  await first.c.suspend('kept');
  await first.c.suspend('lost');
  await first.c.dispose();
  first.store.close();
  await driver.vms.find((v) => v.pid === lost.pid || v.config.id === lost.id)!.kill();
  const second = setup('hot-reconcile-2', { db, driver, network, hotBudgetBytes: 2 ** 30 });
  await second.c.reconcile();
  assert.deepEqual([second.c.get('kept').state, second.c.get('kept').standbyTier], ['standby', 'hot']);
  assert.deepEqual([second.c.get('lost').state, second.c.get('lost').standbyTier, second.c.get('lost').pid], ['standby', 'cold', null]);
  await second.c.scaleToZero.ensureAwake(kept.id);
  assert.equal(second.c.get('kept').counters.wakesHot, 1, 'the adopted paused VM is resumed, not restored');
  await second.c.scaleToZero.ensureAwake(lost.id);
  assert.equal(second.c.get('lost').counters.wakesCold, 1);
});
