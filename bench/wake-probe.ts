// Where a cold wake's time goes, straight through the VMM driver (no flickd,
// no proxy): for the minimal static server and the node hello app
// (examples/hello-node as `flick build` left it in the local image layout),
// restore of a template snapshot → first HTTP byte, side by side. Variants
// differ in how the template is taken or how QEMU runs (see VARIANTS); their
// restores are interleaved (one of each, round after round) so a noisy machine
// spreads its noise over all of them alike. Writes bench/results/wake-probe.json:
//   {"accel", "results": {<variant>: {"restore_ms", "first_byte_ms", "second_ms": {p50,p90,n}}}}
// restore_ms: until driver.restore() resolves (spawn, QMP, state load, clock);
// for a primed variant (restored paused ahead of time) until resume() resolves;
// first_byte_ms: from the restore (primed: resume) call to the first byte of GET /;
// second_ms: a second GET / right after (what is left to warm up).
//
//   node dist/bench/wake-probe.js [--runs N] [--variants min,node,node-warm]
import fs from 'node:fs';
import { firstByte as firstByteAt } from './flickd-host.js';
import os from 'node:os';
import path from 'node:path';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { buildFixtureRootfs, FIXTURE_PROGRAM } from '../src/guest/testing/fixture-rootfs.js';
import { partOf, unpackLayer } from '../src/image/layer-codec.js';
import { normalizeRef, OciLayout } from '../src/image/oci-layout.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import type { GuestConfig, MicroVm, NetworkAttachment, Snapshot, VmConfig } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { argValue, printTable, summarize, writeResults } from './lib.js';

const TAG = 'fbp';
const PORT = 8080;
const NODE_IMAGE = 'hello-node:latest';

interface Variant {
  app: 'min' | 'node';
  /** GET / requests served before the template is taken (0: at first readiness, as before). */
  warmup: number;
  memoryMb: number;
  tbSizeMb?: number;
  /** Extra environment for the app (e.g. NODE_OPTIONS). */
  env?: string[];
  /** Words put right after argv[0] (node's own flags, e.g. V8's, which NODE_OPTIONS refuses). */
  flags?: string[];
  /** Restore paused ahead of the request (RestoreOptions.paused); the wake is resume() → first byte. */
  primed?: boolean;
}

const VARIANTS: Record<string, Variant> = {
  min: { app: 'min', warmup: 0, memoryMb: 128 },
  'min-warm': { app: 'min', warmup: 3, memoryMb: 128 },
  node: { app: 'node', warmup: 0, memoryMb: 256 },
  'node-warm': { app: 'node', warmup: 3, memoryMb: 256 },
  'min-warm-primed': { app: 'min', warmup: 3, memoryMb: 128, primed: true },
  'node-warm-primed': { app: 'node', warmup: 3, memoryMb: 256, primed: true },
  'node-warm-128m': { app: 'node', warmup: 3, memoryMb: 128 },
  'node-warm-tb16': { app: 'node', warmup: 3, memoryMb: 256, tbSizeMb: 16 },
  'node-warm-tb256': { app: 'node', warmup: 3, memoryMb: 256, tbSizeMb: 256 },
  'node-warm-noopt': { app: 'node', warmup: 3, memoryMb: 256, flags: ['--no-opt'] },
  'node-warm-nosparkplug': { app: 'node', warmup: 3, memoryMb: 256, flags: ['--no-opt', '--no-sparkplug'] },
  'node-warm-jitless': { app: 'node', warmup: 3, memoryMb: 256, env: ['NODE_OPTIONS=--jitless'] },
  'node-warm-single': { app: 'node', warmup: 3, memoryMb: 256, flags: ['--single-threaded'] },
};

/** ms from `t0` until the first byte of an answer to GET / from the VM at `ip`. */
function firstByte(ip: string, t0: number): Promise<number> {
  return firstByteAt({ host: ip, port: PORT }, t0);
}

interface AppFiles {
  kernel: string;
  initrd: string;
  rootfs: string;
  guest: Omit<GuestConfig, 'hostname'>;
}

/** The node hello app as `flick build` stored it: its kernel, initrd and rootfs layers unpacked into `dir`, and its run config. */
async function nodeApp(dir: string): Promise<AppFiles> {
  const layout = new OciLayout();
  const img = (await layout.list()).find((i) => i.ref === normalizeRef(NODE_IMAGE));
  if (!img) throw new Error(`${NODE_IMAGE} is not in ${layout.dir}: build it with 'bin/flick build -t ${NODE_IMAGE} examples/hello-node'`);
  fs.mkdirSync(dir, { recursive: true });
  const layer = async (kind: 'vmlinux' | 'initrd' | 'rootfs') => {
    const l = img.manifest.layers.find((x) => partOf(x.mediaType) === kind);
    if (!l) throw new Error(`${NODE_IMAGE} has no ${kind} layer`);
    const file = path.join(dir, kind);
    await unpackLayer(layout.blobPath(l.digest), l.mediaType, file);
    return file;
  };
  const config = JSON.parse(fs.readFileSync(layout.blobPath(img.manifest.config.digest), 'utf8')).config;
  return {
    kernel: await layer('vmlinux'),
    initrd: await layer('initrd'),
    rootfs: await layer('rootfs'),
    guest: { argv: [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])], env: config.Env ?? [], cwd: config.WorkingDir || '/', uid: 0, gid: 0 },
  };
}

async function main(): Promise<void> {
  const runs = Number(argValue(process.argv, 'runs') ?? 10);
  const names = (argValue(process.argv, 'variants') ?? 'min,node,node-warm').split(',');
  for (const n of names) if (!VARIANTS[n]) throw new Error(`unknown variant ${n}: one of ${Object.keys(VARIANTS).join(', ')}`);
  await sweepDeadRuns(TAG);
  const prefix = runPrefix(TAG);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-probe-'));
  const network = new NamespaceNetwork({ prefix, pool: runPool(219) });
  const log = (l: string) => console.log(l);
  const [initrd, minRootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
  const apps: Record<Variant['app'], () => Promise<AppFiles>> = {
    min: async () => ({
      kernel: requireKernel().vmlinux,
      initrd: initrd.initrd,
      rootfs: minRootfs,
      guest: { argv: [FIXTURE_PROGRAM['hello-server'], String(PORT)], env: [], cwd: '/', uid: 0, gid: 0 },
    }),
    node: () => nodeApp(path.join(tmp, 'node-image')),
  };
  const live = new Set<MicroVm>();
  const results: Record<string, { restore: number[]; fb: number[]; second: number[] }> = {};
  let accel = '';
  try {
    const n: NetworkAttachment = await network.attach('vm', 0);
    const prepared: Array<{ name: string; driver: QemuDriver; config: VmConfig; template: Snapshot; primed: boolean }> = [];
    for (const name of names) {
      const v = VARIANTS[name] as Variant;
      const files = await apps[v.app]();
      const driver = new QemuDriver({ log, ...(v.tbSizeMb ? { tcgTbSizeMb: v.tbSizeMb } : {}) });
      accel = await driver.accelerator();
      const config: VmConfig = {
        id: 'vm',
        runDir: path.join(tmp, name),
        kernel: files.kernel,
        initrd: files.initrd,
        rootfs: files.rootfs,
        memoryMb: v.memoryMb,
        vcpus: 1,
        guest: {
          ...files.guest,
          argv: [...files.guest.argv.slice(0, 1), ...(v.flags ?? []), ...files.guest.argv.slice(1)],
          env: [...files.guest.env, ...(v.env ?? [])],
          hostname: 'probe',
        },
        network: n,
      };
      const t0 = performance.now();
      const vm = await driver.boot(config);
      live.add(vm);
      await vm.waitForPort(PORT, { timeoutMs: 120_000 });
      const warm: number[] = [];
      for (let i = 0; i < v.warmup; i++) warm.push(await firstByte(n.hostReachableIp, performance.now()));
      await vm.pause();
      const template = await vm.createSnapshot(path.join(tmp, `${name}-template`));
      await vm.kill();
      live.delete(vm);
      console.log(`${name}: template after ${(performance.now() - t0).toFixed(0)} ms (warm-up requests: ${warm.map((x) => x.toFixed(1)).join(', ') || 'none'})`);
      prepared.push({ name, driver, config, template, primed: v.primed === true });
      results[name] = { restore: [], fb: [], second: [] };
    }
    for (let i = 0; i < runs; i++) {
      for (const p of prepared) {
        const r = results[p.name]!;
        let t0 = performance.now();
        const clone = await p.driver.restore(p.config, p.template, { mode: 'clone', paused: p.primed });
        live.add(clone);
        if (p.primed) {
          await new Promise((r) => setTimeout(r, 100)); // primed well before the request
          t0 = performance.now();
          await clone.resume();
        }
        r.restore.push(performance.now() - t0);
        r.fb.push(await firstByte(n.hostReachableIp, t0));
        r.second.push(await firstByte(n.hostReachableIp, performance.now()));
        await clone.kill();
        live.delete(clone);
      }
      process.stdout.write('.');
    }
    console.log();
  } finally {
    await Promise.all([...live].map((vm) => vm.kill()));
    await sweepLeftovers(prefix);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const out: Record<string, unknown> = {};
  const rows: Array<Array<string | number>> = [['variant', 'restore p50', 'p90', 'first byte p50', 'p90', '2nd req p50', 'n']];
  for (const [name, r] of Object.entries(results)) {
    const s = { restore_ms: summarize(r.restore), first_byte_ms: summarize(r.fb), second_ms: summarize(r.second) };
    out[name] = s;
    rows.push([name, s.restore_ms.p50, s.restore_ms.p90, s.first_byte_ms.p50, s.first_byte_ms.p90, s.second_ms.p50, s.first_byte_ms.n]);
  }
  printTable(rows);
  const details = { loadavg: os.loadavg().map((l) => Number(l.toFixed(2))), variants: Object.fromEntries(names.map((n) => [n, VARIANTS[n]])) };
  console.log(`accelerator: ${accel}; load ${details.loadavg.join(' ')}`);
  console.log(`results in ${await writeResults('wake-probe', { accel, results: out, details })}`);
}

await main();
