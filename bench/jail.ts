// What the VMM jail (src/vmm/qemu/jail.ts) costs on the start path: setting a
// jail up and tearing it down (cgroups, chroot folder, uid claim), and QEMU's
// spawn until its monitor answers (`-S`, nothing booted), plain and jailed,
// interleaved so both see the same machine load. For the whole boot/restore
// path run bench/vmm.ts with FLICK_JAIL=off and without. Writes bench/results/jail.json.
//
//   node dist/bench/jail.js [--runs N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { writeConfigDisk } from '../src/guest/config.js';
import { buildQemuArgs, kernelCmdline } from '../src/vmm/qemu/args.js';
import { prepareJail } from '../src/vmm/qemu/jail.js';
import { QemuProcess } from '../src/vmm/qemu/qemu-process.js';
import { QmpClient } from '../src/vmm/qemu/qmp-client.js';
import { runDirFiles } from '../src/vmm/qemu/run-dir.js';
import { argValue, printTable, summarize, writeResults } from './lib.js';

async function spawnToQmp(dir: string, jailed: boolean, rootfs: string): Promise<number> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const rd = runDirFiles(dir);
  await writeConfigDisk(rd.configDisk, { argv: ['/bin/true'], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'bench' });
  const args = buildQemuArgs({
    accel: 'tcg',
    memoryMb: 128,
    vcpus: 1,
    kernel: requireKernel().vmlinux,
    initrd: requireInitrd().initrd,
    cmdline: kernelCmdline(undefined),
    rootfs,
    configDisk: rd.configDisk,
    memory: { path: rd.memory, share: true },
    files: rd,
    incoming: false,
  });
  const t0 = performance.now();
  const proc = await QemuProcess.spawn(args, { stderrPath: rd.qemuLog, ...(jailed ? { jail: { id: 'bench-jail', runDir: dir, memoryMb: 128, vcpus: 1, tbSizeMb: 64 } } : {}) });
  try {
    for (;;) {
      try {
        const qmp = await QmpClient.connect(rd.qmpSocket, { timeoutMs: 5000 });
        const ms = performance.now() - t0;
        qmp.close();
        return ms;
      } catch {
        if (performance.now() - t0 > 10_000) throw new Error(`QEMU did not answer: ${fs.readFileSync(rd.qemuLog, 'utf8')}`);
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  } finally {
    await proc.kill();
  }
}

async function main(): Promise<void> {
  const runs = Number(argValue(process.argv, 'runs') ?? 15);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-jail-'));
  try {
    const rootfs = await buildFixtureRootfs({ kind: 'hello-server' });
    const setup: number[] = [];
    const teardown: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const jail = await prepareJail({ id: 'bench-jail', runDir: path.join(tmp, 'setup'), memoryMb: 128, vcpus: 1, tbSizeMb: 64 });
      const t1 = performance.now();
      await jail.cleanup();
      setup.push(t1 - t0);
      teardown.push(performance.now() - t1);
    }
    const plain: number[] = [];
    const jailed: number[] = [];
    for (let i = 0; i < runs; i++) {
      plain.push(await spawnToQmp(path.join(tmp, 'plain'), false, rootfs));
      jailed.push(await spawnToQmp(path.join(tmp, 'jailed'), true, rootfs));
    }
    const results = {
      jail_setup_ms: summarize(setup, 2),
      jail_cleanup_ms: summarize(teardown, 2),
      spawn_to_qmp_plain_ms: summarize(plain),
      spawn_to_qmp_jailed_ms: summarize(jailed),
    };
    printTable([['measure', 'p50', 'p90', 'n'], ...Object.entries(results).map(([k, s]) => [k, s.p50, s.p90, s.n])]);
    console.log(`wrote ${await writeResults('jail', { results })}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
