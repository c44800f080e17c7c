// The QEMU microVM driver and per-VM networks, for real: TCG (or KVM where it
// works), real taps and namespaces, the guest helper's fixture apps. Boots as
// few VMs as the behaviours allow: one server VM carries boot, pause/resume,
// a template for two clones, and a stateful snapshot/restore; one more boots
// the app that exits.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { buildFixtureRootfs, FIXTURE_PROGRAM } from '../src/guest/testing/fixture-rootfs.js';
import { NamespaceNetwork, namespaceExists, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { VmmError, type MicroVm, type Snapshot, type VmConfig } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';

// Per run, so two runs at once never sweep or address each other's VMs.
const TAG = 'fvt';
const PREFIX = runPrefix(TAG);
const PORT = 8080;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-vmm-'));
const network = new NamespaceNetwork({ prefix: PREFIX, pool: runPool(213) });
const driver = new QemuDriver();
const vms = new Set<MicroVm>();
let base: Omit<VmConfig, 'id' | 'runDir' | 'rootfs' | 'guest'>;
let helloRootfs: string;
let exitRootfs: string;

before(async () => {
  await sweepDeadRuns(TAG);
  const [initrd, hello, exit] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' }), buildFixtureRootfs({ kind: 'exit-code' })]);
  base = { kernel: requireKernel().vmlinux, initrd: initrd.initrd, memoryMb: 128, vcpus: 1 };
  helloRootfs = hello;
  exitRootfs = exit;
});

after(async () => {
  await Promise.all([...vms].map((vm) => vm.kill()));
  await sweepLeftovers(PREFIX);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function helloConfig(id: string, attachment: VmConfig['network']): VmConfig {
  return {
    ...base,
    id,
    runDir: path.join(tmp, id),
    rootfs: helloRootfs,
    guest: { argv: [FIXTURE_PROGRAM['hello-server'], String(PORT)], env: [], cwd: '/', uid: 0, gid: 0, hostname: id },
    network: attachment,
  };
}

function track(vm: MicroVm): MicroVm {
  vms.add(vm);
  void vm.exited.then(() => vms.delete(vm));
  return vm;
}

interface Hello {
  guestTime: number;
  requests: number;
  hostname: string;
}

/** GET / from the fixture server; resolves when the whole answer is in. */
function hello(ip: string, signal?: AbortSignal): Promise<Hello> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ip, port: PORT, path: '/', agent: false, signal: signal ?? AbortSignal.timeout(20_000) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        const field = (name: string) => /^(\S+) (.*)$/m.exec(body.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? '';
        resolve({ guestTime: Number(field('time')), requests: Number(field('requests')), hostname: field('hostname') });
      });
    });
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: MicroVm;
let serverIp: string;
let template: Snapshot;

test('a booted microVM serves HTTP to the host through its namespace', async () => {
  const attachment = await network.attach('server', 1);
  serverIp = attachment.hostReachableIp;
  server = track(await driver.boot(helloConfig('server', attachment)));
  assert.ok(['tcg', 'kvm'].includes(server.accel));
  await server.waitForPort(PORT);
  const answer = await hello(serverIp);
  assert.equal(answer.hostname, 'server');
  assert.ok(Math.abs(answer.guestTime - Date.now() / 1000) < 1, 'the booted guest took the host clock');
});

test('a paused VM holds a request until it is resumed', async () => {
  await server.pause();
  const pending = hello(serverIp);
  const early = await Promise.race([pending.then(() => 'answered'), sleep(700).then(() => 'stalled')]);
  assert.equal(early, 'stalled');
  await server.resume();
  assert.equal((await pending).hostname, 'server');
});

test('two clones of one template answer at once, each in its own namespace', async () => {
  await server.pause();
  template = await server.createSnapshot(path.join(tmp, 'template'), { keepRunning: true });
  await server.resume();
  await sleep(1500); // long enough that a guest clock left at snapshot time would be visibly wrong
  const [a, b] = await Promise.all([network.attach('clone-a', 2), network.attach('clone-b', 3)]);
  const clones = await Promise.all([
    driver.restore(helloConfig('clone-a', a), template, { mode: 'clone' }),
    driver.restore(helloConfig('clone-b', b), template, { mode: 'clone' }),
  ]);
  clones.forEach(track);
  const answers = await Promise.all([hello(a.hostReachableIp), hello(b.hostReachableIp), hello(serverIp)]);
  // Both clones come from the server's memory (its hostname), yet each is reached at its own address.
  assert.deepEqual(
    answers.map((x) => x.hostname),
    ['server', 'server', 'server'],
  );
  for (const x of answers) assert.ok(Math.abs(x.guestTime - Date.now() / 1000) < 1, `guest clock ${x.guestTime} is within 1 s of the host's`);
  await Promise.all(clones.map((c) => c.kill()));
  await Promise.all([network.detach('clone-a', 2), network.detach('clone-b', 3)]);
  assert.equal(namespaceExists(`${PREFIX}clone-a`), false);
});

test('a clone restored paused (primed) holds a request until resumed, then answers with the clock set', async () => {
  const attachment = await network.attach('primed', 4);
  const primed = track(await driver.restore(helloConfig('primed', attachment), template, { mode: 'clone', paused: true }));
  await sleep(1200); // the clock a resume must set is stale by at least this
  const pending = hello(attachment.hostReachableIp);
  const early = await Promise.race([pending.then(() => 'answered'), sleep(700).then(() => 'stalled')]);
  assert.equal(early, 'stalled');
  await primed.resume();
  const answer = await pending;
  assert.equal(answer.hostname, 'server');
  assert.ok(Math.abs(answer.guestTime - Date.now() / 1000) < 1, `guest clock ${answer.guestTime} is within 1 s of the host's`);
  await primed.kill();
  await network.detach('primed', 4);
});

test('a snapshot restored in a new process continues where it was, with the clock set', async () => {
  const before = await hello(serverIp);
  await server.pause();
  const snap = await server.createSnapshot(path.join(tmp, 'state'));
  await assert.rejects(server.resume(), (e: VmmError) => e.code === 'INVALID_STATE');
  const exit = await server.kill();
  assert.equal(exit.guestExitCode, undefined);
  assert.equal(fs.existsSync(path.join(tmp, 'server', 'qmp.sock')), false, 'the dead VM left no socket');
  await sleep(1200);
  const restored = track(await driver.restore(helloConfig('server', server.config.network), snap, { mode: 'own' }));
  const after = await hello(serverIp);
  assert.equal(after.requests, before.requests + 1, 'the request counter survived: same process, same memory');
  assert.ok(Math.abs(after.guestTime - Date.now() / 1000) < 1, `guest clock ${after.guestTime} is within 1 s of the host's`);

  // A flickd restart: the old owner lets go, a new driver adopts the running QEMU by its pid.
  restored.release();
  const adopted = track(await new QemuDriver().adopt(restored.config, restored.pid));
  assert.equal((await hello(serverIp)).requests, after.requests + 1);
  await adopted.pause();
  await adopted.resume();
  const exit2 = await adopted.stop();
  assert.equal(exit2.guestExitCode, 143, 'the app ended by SIGTERM from the poweroff');
  assert.equal(fs.existsSync(path.join(tmp, 'server', 'mem')), false, 'the adopter cleaned the run folder');
  await assert.rejects(new QemuDriver().adopt(restored.config, restored.pid), (e: VmmError) => e.code === 'VM_EXITED');
  await network.detach('server', 1);
});

test('an app that exits ends its VM, and exited reports its code', async () => {
  const vm = track(
    await driver.boot({
      ...base,
      id: 'exits',
      runDir: path.join(tmp, 'exits'),
      rootfs: exitRootfs,
      guest: { argv: [FIXTURE_PROGRAM['exit-code'], '7'], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'exits' },
    }),
  );
  const exit = await vm.exited;
  assert.equal(exit.guestExitCode, 7);
  assert.equal(exit.processCode, 0);
  assert.match(fs.readFileSync(path.join(tmp, 'exits', 'console.log'), 'utf8'), /exiting with 7/);
});

function qemuProcessesFor(runDir: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(runDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('a missing kernel or disk fails clearly and leaves no process or file', async () => {
  const cases: Array<[Partial<VmConfig>, string]> = [
    [{ kernel: path.join(tmp, 'no-such-vmlinux') }, 'KERNEL_MISSING'],
    [{ rootfs: path.join(tmp, 'no-such-rootfs.erofs') }, 'DISK_MISSING'],
    [{ initrd: path.join(tmp, 'no-such-initrd.cpio') }, 'DISK_MISSING'],
  ];
  for (const [change, code] of cases) {
    const config = { ...helloConfig('broken', undefined), ...change };
    await assert.rejects(driver.boot(config), (e: VmmError) => {
      assert.equal(e.code, code);
      assert.match(e.message, /does not exist/);
      return true;
    });
    assert.equal(fs.existsSync(config.runDir), false, 'no run folder');
    assert.deepEqual(qemuProcessesFor(config.runDir), [], 'no QEMU process');
  }
  assert.deepEqual(
    fs.readdirSync('/run/netns').filter((n) => n.startsWith(`${PREFIX}broken`)),
    [],
  );
});
