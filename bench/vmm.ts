// The VMM's three start paths, each to the first byte of an HTTP answer from
// the hello-server fixture, through the VM's namespace as the proxy would see
// it: cold boot, restore of a template snapshot (clone mode, a new QEMU), and
// resume of a paused VM. Writes bench/results/vmm.json:
//   {"accel", "results": {"boot_ms", "restore_ms", "resume_ms": {"p50","p90","n"}}}
// Targets (issue 2): restore p50 ≤ 80 ms, resume p50 ≤ 5 ms.
//
//   node dist/bench/vmm.js [--runs N]
import fs from 'node:fs';
import { firstByte as firstByteAt } from './flickd-host.js';
import os from 'node:os';
import path from 'node:path';
import { buildInitrd } from '../src/guest/init.js';
import { buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import type { MicroVm, NetworkAttachment, VmConfig } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { jailByDefault } from '../src/vmm/qemu/jail.js';
import { minimalVmConfig } from './minimal-vm.js';
import { argValue, printTable, summarize, writeResults } from './lib.js';

const TAG = 'fbv';
const PORT = 8080;

/** ms from `t0` until the first byte of an answer to GET / from the VM at `ip`. */
function firstByte(ip: string, t0: number): Promise<number> {
  return firstByteAt({ host: ip, port: PORT }, t0);
}

async function main(): Promise<void> {
  const runs = Number(argValue(process.argv, 'runs') ?? 12);
  await sweepDeadRuns(TAG);
  const prefix = runPrefix(TAG);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-vmm-'));
  const network = new NamespaceNetwork({ prefix, pool: runPool(214) });
  const driver = new QemuDriver({ log: (l) => console.log(l) });
  const accel = await driver.accelerator();
  const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
  const live = new Set<MicroVm>();
  const config = (id: string, n: NetworkAttachment): VmConfig => minimalVmConfig({ tmp, id, initrd: initrd.initrd, rootfs, port: PORT, network: n });
  const boot: number[] = [];
  const restore: number[] = [];
  const resume: number[] = [];
  try {
    const n = await network.attach('vm', 0);
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const vm = await driver.boot(config('vm', n));
      live.add(vm);
      await vm.waitForPort(PORT, { timeoutMs: 60_000 });
      boot.push(await firstByte(n.hostReachableIp, t0));
      if (i < runs - 1) await vm.kill();
      else {
        // The last boot becomes the template every restore clones.
        await vm.pause();
        const template = await vm.createSnapshot(path.join(tmp, 'template'));
        await vm.kill();
        for (let j = 0; j < runs; j++) {
          const r0 = performance.now();
          const clone = await driver.restore(config('vm', n), template, { mode: 'clone' });
          live.add(clone);
          restore.push(await firstByte(n.hostReachableIp, r0));
          if (j < runs - 1) await clone.kill();
          else {
            await firstByte(n.hostReachableIp, 0); // warm: a paused VM that has served keeps its translations
            for (let k = 0; k < runs; k++) {
              await clone.pause();
              const p0 = performance.now();
              await clone.resume();
              resume.push(await firstByte(n.hostReachableIp, p0));
            }
            await clone.kill();
          }
        }
      }
      process.stdout.write('.');
    }
    console.log();
  } finally {
    await Promise.all([...live].map((vm) => vm.kill()));
    await sweepLeftovers(prefix);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const results = { boot_ms: summarize(boot), restore_ms: summarize(restore), resume_ms: summarize(resume) };
  printTable([
    ['to first HTTP byte', 'p50 ms', 'p90 ms', 'n'],
    ['cold boot', results.boot_ms.p50, results.boot_ms.p90, results.boot_ms.n],
    ['restore (clone of template)', results.restore_ms.p50, results.restore_ms.p90, results.restore_ms.n],
    ['paused -> resume', results.resume_ms.p50, results.resume_ms.p90, results.resume_ms.n],
  ]);
  // The jail (jail.ts; FLICK_JAIL=off turns it off) and the machine's load change these numbers a lot.
  const details = { jail: jailByDefault(), loadavg: os.loadavg().map((l) => Number(l.toFixed(2))), cpus: os.cpus().length };
  console.log(`accelerator: ${accel}; jail ${details.jail ? 'on' : 'off'}; load ${details.loadavg.join(' ')}`);
  console.log(`results in ${await writeResults('vmm', { accel, results, details })}`);
}

await main();
