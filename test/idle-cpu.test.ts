// Idle microVMs cost ~no CPU, every one of them: several minimal VMs booted
// through the real QEMU driver (TCG here) and two clones restored from a
// template of one of them sit idle while each QEMU's CPU time is read from
// /proc/<pid>/stat. A guest that lost its TSC ticks at 100 Hz and burns ~1 % of
// a core (src/vmm/qemu/tsc.ts); a quiet one uses a tick or two in the window.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { buildFixtureRootfs, FIXTURE_PROGRAM } from '../src/guest/testing/fixture-rootfs.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import type { MicroVm, VmConfig } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';

const TAG = 'fic';
const PREFIX = runPrefix(TAG);
const PORT = 8080;
const BOOTED = 5;
const CLONES = 2;
const WINDOW_MS = 20_000;
/**
 * Generous, so a busy host does not fail a quiet VM (measured quiet: 0-2 ticks
 * of 10 ms in 20 s, <= 0.1 %), yet a VM ticking at 100 Hz (~1.2 %) fails it.
 */
const MAX_PERCENT = 0.4;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-idle-'));
const network = new NamespaceNetwork({ prefix: PREFIX, pool: runPool(222) });
const driver = new QemuDriver();
const vms: MicroVm[] = [];
let base: Omit<VmConfig, 'id' | 'runDir' | 'network'>;

before(async () => {
  await sweepDeadRuns(TAG);
  const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
  base = {
    kernel: requireKernel().vmlinux,
    initrd: initrd.initrd,
    rootfs,
    memoryMb: 64,
    vcpus: 1,
    guest: { argv: [FIXTURE_PROGRAM['hello-server'], String(PORT)], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'idle' },
  };
});

after(async () => {
  await Promise.all(vms.map((vm) => vm.kill()));
  await sweepLeftovers(PREFIX);
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function config(id: string, slot: number): Promise<VmConfig> {
  return { ...base, id, runDir: path.join(tmp, id), network: await network.attach(id, slot) };
}

/** utime + stime of `pid`, in clock ticks. */
function cpuTicks(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return Number(f[11]) + Number(f[12]);
}

test('every idle VM, booted or restored from a template, uses next to no CPU', { timeout: 240_000 }, async () => {
  // Two boots at a time: the host is busy while the others boot, which is when a guest's own TSC calibration failed.
  for (let i = 0; i < BOOTED; i += 2) {
    await Promise.all(
      [i, i + 1].filter((k) => k < BOOTED).map(async (k) => {
        const vm = await driver.boot(await config(`boot-${k}`, k));
        vms.push(vm);
        await vm.waitForPort(PORT, { timeoutMs: 60_000 });
      }),
    );
  }
  const source = vms[0]!;
  await source.pause();
  const template = await source.createSnapshot(path.join(tmp, 'template'), { keepRunning: true });
  await source.resume();
  for (let c = 0; c < CLONES; c++) {
    const vm = await driver.restore(await config(`clone-${c}`, BOOTED + c), template, { mode: 'clone' });
    vms.push(vm);
    await vm.waitForPort(PORT, { timeoutMs: 30_000 });
  }
  // Let boot-time work (the guest's deferred TSC refinement runs ~1 s after boot) finish first.
  await new Promise((r) => setTimeout(r, 3000));
  const before = vms.map((vm) => cpuTicks(vm.pid));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  const seconds = (performance.now() - t0) / 1000;
  const percent = vms.map((vm, i) => ((cpuTicks(vm.pid) - before[i]!) / 100 / seconds) * 100);
  const report = vms.map((vm, i) => `${vm.id} ${percent[i]!.toFixed(3)} %`).join(', ');
  console.log(`idle CPU over ${seconds.toFixed(1)} s (${source.accel}): ${report}`);
  for (const [i, vm] of vms.entries()) {
    assert.ok(percent[i]! <= MAX_PERCENT, `${vm.id} used ${percent[i]!.toFixed(2)} % of a core while idle (at most ${MAX_PERCENT} %): ${report}`);
  }
});
