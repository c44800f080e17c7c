// What one primed VM costs in RAM: a clone restored paused from a template of
// the minimal server (RestoreOptions.paused: the QEMU process, its monitor and
// the device state loaded, no guest code run), PSS of each of a few, through
// the real driver. The figure behind a primed pool's budget (issue 18, part 3).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildInitrd } from '../src/guest/init.js';
import { buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import type { MicroVm, VmConfig } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { pssBytes } from './flickd-host.js';
import { minimalVmConfig } from './minimal-vm.js';

const TAG = 'fbq';

export async function primedRamEach(k = 3): Promise<{ pss_bytes: number[]; each: number | null }> {
  await sweepDeadRuns(TAG);
  const prefix = runPrefix(TAG);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-primed-'));
  const network = new NamespaceNetwork({ prefix, pool: runPool(224) });
  const driver = new QemuDriver();
  const vms: MicroVm[] = [];
  try {
    const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
    const config = async (id: string, slot: number): Promise<VmConfig> => minimalVmConfig({ tmp, id, initrd: initrd.initrd, rootfs, port: 8080, network: await network.attach(id, slot) });
    const source = await driver.boot(await config('source', 0));
    vms.push(source);
    await source.waitForPort(8080, { timeoutMs: 60_000 });
    await source.pause();
    const template = await source.createSnapshot(path.join(tmp, 'template'), { keepRunning: true });
    await source.kill();
    for (let i = 0; i < k; i++) vms.push(await driver.restore(await config(`primed-${i}`, i + 1), template, { mode: 'clone', paused: true }));
    await new Promise((r) => setTimeout(r, 1000));
    const pss = vms.slice(1).map((vm) => pssBytes(vm.pid)).filter((x): x is number => x !== undefined);
    return { pss_bytes: pss, each: pss.length > 0 ? Math.round(pss.reduce((a, b) => a + b, 0) / pss.length) : null };
  } finally {
    await Promise.all(vms.map((vm) => vm.kill()));
    await sweepLeftovers(prefix);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
