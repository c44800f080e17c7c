// The primed pool over the controller's fakes (../testing.ts): refill off the wake path, budget,
// which templates, take with a miss on any mismatch, emptied with its template, nothing left behind.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { isAlive } from '../../vmm/qemu/qemu-process.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Snapshot, VmConfig } from '../../vmm/driver.js';
import { FakeDriver, FakeNetwork, tmp, until, type FakeVm } from '../testing.js';
import { PrimedPool, type PrimedPoolConfig } from './primed-pool.js';
import { killAndWait, preparePrimedFolder, primedFolder } from './primed-dir.js';

const MiB = 1024 * 1024;
const log = { info() {}, warn() {} };
const snap = (dir: string, createdAt = 't0'): Snapshot => ({ dir, stateFile: `${dir}/state`, memoryFile: `${dir}/mem`, memoryMb: 128, vcpus: 1, createdAt });
const cfg = (over: Partial<VmConfig> = {}): VmConfig => ({
  id: 'inst',
  runDir: '/nowhere/run',
  kernel: 'k',
  initrd: 'i',
  rootfs: 'r',
  memoryMb: 128,
  vcpus: 1,
  guest: { argv: ['/server'], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'hello' },
  ...over,
});

function pool(name: string, config: Partial<PrimedPoolConfig> = {}) {
  const root = path.join(tmp, 'primed-unit', name);
  const driver = new FakeDriver();
  driver.usageBytes = 20 * MiB;
  const network = new FakeNetwork(0);
  const p = new PrimedPool({ budgetBytes: 100 * MiB, refillDelayMs: 20, ...config }, { driver, network, root, log });
  return { p, driver, network, root };
}


test('a cold wake fills the pool after a quiet time, never on the wake path; a VM is paused in a namespace of its own', async () => {
  const { p, driver, network, root } = pool('fill');
  assert.equal(p.take(snap('/t/a'), cfg()), undefined, 'an empty pool misses');
  p.noteColdWake(snap('/t/a'), cfg({ network: { tap: 't', guestMac: 'm', guestIp: 'g', gatewayIp: 'w', prefixLength: 30, hostReachableIp: 'h' } }));
  assert.equal(driver.restores.length, 0, 'noteColdWake restores nothing itself');
  // Wakes keep coming: no refill while they do.
  for (let i = 0; i < 3; i++) {
    await sleep(10);
    p.noteColdWake(snap('/t/a'), cfg());
  }
  assert.equal(driver.restores.length, 0, 'a refill waits for refillDelayMs without a wake');
  await until(() => p.stats().entries === 3, 'three VMs (4 wakes want 1 + log2 4)');
  const r = driver.restores[0]!;
  assert.equal(r.paused, true, 'restored paused: no guest code ran');
  assert.equal(r.mode, 'clone');
  const vm = driver.vms[0]!;
  assert.equal(vm.paused, true);
  assert.equal(vm.config.network?.netns, 'ns-0', 'its own namespace from the host pool');
  assert.ok(network.held.has('ns-0'));
  assert.equal(vm.config.id.startsWith('primed-'), true);
  assert.equal(path.dirname(vm.config.runDir), path.join(root, vm.config.id));
  assert.ok(fs.existsSync(path.join(root, vm.config.id, 'vm.json')), 'its config is on disk before QEMU starts (a sweep after a crash finds it)');
  await p.dispose();
});

test('take: only a VM of exactly that template and config, else a miss; a hit is removed from the pool', async () => {
  const { p } = pool('take');
  p.noteColdWake(snap('/t/a'), cfg());
  await until(() => p.stats().entries === 1, 'a primed VM');
  await sleep(50); // (one wake wants one VM)
  assert.equal(p.stats().entries, 1);
  assert.equal(p.take(snap('/t/b'), cfg()), undefined, 'another template');
  assert.equal(p.take(snap('/t/a', 'retaken'), cfg()), undefined, 'the same folder, another snapshot');
  assert.equal(p.take(snap('/t/a'), cfg({ memoryMb: 256 })), undefined, 'another config');
  assert.equal(p.take(snap('/t/a'), cfg({ guest: { ...cfg().guest, env: ['A=1'] } })), undefined, 'another guest');
  const got = p.take(snap('/t/a'), cfg({ id: 'someone-else', runDir: '/else/run' }));
  assert.ok(got, 'id and run folder are the instance\'s own business');
  assert.equal((got.vm as FakeVm).paused, true);
  assert.equal(got.config.network?.netns, got.lease.attachment.netns);
  assert.deepEqual({ ...p.stats(), budgetBytes: 0, usedBytes: 0 }, { budgetBytes: 0, usedBytes: 0, entries: 0, templates: 0, priming: false, hits: 1, misses: 4, refills: 1, refillFailures: 0, evictions: 0 });
  await p.dispose();
  assert.equal((got.vm as FakeVm).paused, true, 'a taken VM is not the pool\'s to end');
  await got.discard();
});

test('the budget: measured VMs count, every busy template gets one before any gets two, a busier one evicts the quietest', async () => {
  const { p, driver } = pool('budget', { budgetBytes: 50 * MiB, estimateBytes: 20 * MiB });
  p.noteColdWake(snap('/t/quiet'), cfg());
  await until(() => p.stats().entries === 1, 'quiet primed');
  for (let i = 0; i < 4; i++) p.noteColdWake(snap('/t/busy'), cfg());
  // busy wants 3 (1 + log2 4), quiet 1; 50 MiB hold two of 20: busy's first, then quiet's (breadth first).
  await until(() => p.stats().entries === 2 && !p.stats().priming, 'two primed');
  await sleep(60);
  let s = p.stats();
  assert.equal(s.entries, 2);
  assert.equal(s.templates, 2);
  assert.equal(s.evictions, 0);
  assert.ok(s.usedBytes <= s.budgetBytes, `${s.usedBytes} ≤ ${s.budgetBytes}`);
  // A third template, busier than quiet: quiet's VM makes room for it.
  await sleep(5);
  for (let i = 0; i < 2; i++) p.noteColdWake(snap('/t/mid'), cfg());
  await until(() => p.stats().evictions === 1 && p.stats().entries === 2 && !p.stats().priming, 'an eviction');
  await sleep(60);
  s = p.stats();
  assert.equal(s.entries, 2);
  assert.equal(p.take(snap('/t/quiet'), cfg()), undefined, 'quiet\'s VM went');
  const quietVm = driver.vms[0]!;
  assert.equal(await Promise.race([quietVm.exited.then(() => 'ended'), sleep(100).then(() => 'alive')]), 'ended');
  assert.ok(p.take(snap('/t/busy'), cfg()) && p.take(snap('/t/mid'), cfg()));
  await p.dispose();
});

test('a removed or replaced template empties its VMs: process, namespace and folder', async () => {
  const { p, driver, network, root } = pool('drop');
  p.noteColdWake(snap('/t/a'), cfg());
  p.noteColdWake(snap('/t/b'), cfg());
  await until(() => p.stats().entries === 2, 'two primed');
  const [va, vb] = driver.vms as [FakeVm, FakeVm];
  await p.dropTemplate('/t/a');
  await va.exited;
  assert.equal(p.stats().entries, 1);
  assert.ok(!network.held.has(va.config.network!.netns!), 'its namespace went');
  assert.ok(!fs.existsSync(path.join(root, va.config.id)), 'its folder went');
  // b is retaken: its old VM can serve nobody.
  p.noteColdWake(snap('/t/b', 'retaken'), cfg());
  await vb.exited;
  await until(() => p.stats().entries >= 1, 'b primed from the new snapshot');
  assert.equal(p.take(snap('/t/b'), cfg()), undefined, 'nothing of the old snapshot');
  assert.ok(p.take(snap('/t/b', 'retaken'), cfg()));
  await p.dispose();
});

test('dispose ends every VM still in the pool and leaves no namespace or folder', async () => {
  const { p, driver, network, root } = pool('dispose');
  for (const t of ['a', 'b', 'c']) p.noteColdWake(snap(`/t/${t}`), cfg());
  await until(() => p.stats().entries === 3, 'three primed');
  await p.dispose();
  await p.dispose();
  assert.deepEqual([...driver.alive], []);
  assert.equal(network.held.size, 0);
  assert.deepEqual(fs.readdirSync(root), []);
  p.noteColdWake(snap('/t/a'), cfg());
  await sleep(60);
  assert.equal(driver.vms.length, 3, 'a disposed pool primes nothing');
});

test('a failing restore backs off, leaves nothing; a VM that dies in the pool is dropped; no budget: no pool', async () => {
  const { p, driver, network, root } = pool('fail');
  driver.failRestores = true;
  p.noteColdWake(snap('/t/a'), cfg());
  await until(() => p.stats().refillFailures === 1, 'a failure');
  assert.equal(network.held.size, 0, 'its lease went back');
  assert.deepEqual(fs.readdirSync(root), [], 'its folder went');
  await sleep(60);
  assert.equal(p.stats().refillFailures, 1, 'backed off');
  await p.dispose();

  const q = pool('dies');
  q.p.noteColdWake(snap('/t/a'), cfg());
  await until(() => q.p.stats().entries === 1, 'primed');
  (q.driver.vms[0] as FakeVm).crash(1);
  await until(() => q.p.stats().entries === 0 && q.network.held.size === 0, 'dropped and released');
  await until(() => q.p.stats().entries === 1, 'refilled');
  await q.p.dispose();

  const off = pool('off', { budgetBytes: 0 });
  off.p.noteColdWake(snap('/t/a'), cfg());
  await sleep(60);
  assert.equal(off.driver.restores.length, 0);
  assert.equal(off.p.take(snap('/t/a'), cfg()), undefined);
  assert.equal(off.p.stats().misses, 0, 'a disabled pool counts nothing');
});

test('sweep at start: folders no record names go (their VMs killed), bound ones stay', async () => {
  const { p, root } = pool('sweep');
  for (const id of ['primed-aaa', 'primed-bbb']) await preparePrimedFolder(root, cfg({ id, runDir: primedFolder(root, id).runDir }));
  fs.mkdirSync(path.join(root, 'primed-half'), { recursive: true }); // a crash before vm.json
  const bound = primedFolder(root, 'primed-bbb').dir;
  assert.equal(await p.sweep((f) => f === bound), 2);
  assert.deepEqual(fs.readdirSync(root), ['primed-bbb']);
  await p.dispose();
});

test('--primed-warm: a primed VM of an HTTP app serves its warm-up requests, then waits paused again', async () => {
  const seen: string[] = [];
  const server = http.createServer((req, res) => (seen.push(String(req.headers['user-agent'])), res.end('ok')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  class LoopbackNetwork extends FakeNetwork {
    override async acquire() {
      const lease = await super.acquire();
      return { ...lease, attachment: { ...lease.attachment, hostReachableIp: '127.0.0.1' } };
    }
  }
  const driver = new FakeDriver();
  const network = new LoopbackNetwork(0);
  const p = new PrimedPool({ budgetBytes: 100 * MiB, refillDelayMs: 10, warmRequests: 2 }, { driver, network, root: path.join(tmp, 'primed-unit', 'warm'), log });
  try {
    p.noteColdWake(snap('/t/a'), cfg(), { port, hostname: 'a.localhost' });
    await until(() => p.stats().entries === 1, 'a warmed VM');
    assert.deepEqual(seen, ['flick-template-warmup', 'flick-template-warmup']);
    assert.equal(driver.vms[0]!.paused, true, 'paused again before it waits');
  } finally {
    await p.dispose();
    server.close();
  }
});

test("the sweep's fallback kill (a QEMU it could not adopt) resolves once the process is dead", async () => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await new Promise((r) => child.once('spawn', r));
  const pid = child.pid!;
  assert.equal(isAlive(pid), true);
  assert.equal(await killAndWait(pid), true);
  assert.equal(isAlive(pid), false, 'dead (or a zombie) when it resolves');
  assert.equal(await killAndWait(pid), true, 'one already gone');
});
