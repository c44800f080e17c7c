// How many instances one host holds, through a real flickd: N scale-to-zero
// instances of the minimal server (create rate; host RAM of them all in standby
// as the drop in MemAvailable, with flickd's RSS and the kernel's slab beside
// it; disk per instance; the wake of the first and of the N-th), the largest
// number of idle *running* minimal instances within a RAM and time bound (PSS
// each), and the cost of one instance network namespace on its own (what N
// standby instances pay in kernel objects). Writes bench/results/density.json
// (issue 7):
//   {"results": {"standby_instances", "standby_ram_bytes", "standby_disk_bytes_each", "create_per_s",
//    "running_instances", "running_pss_bytes_each", "running_cpu_percent_each", "wake_first_ms", "wake_last_ms"},
//    "details": {...}}
//
//   node dist/bench/density.js [--n 10000] [--running-max 1000] [--running-mode clone|boot]
//                              [--running-memory 64] [--minutes 60] [--netns-probe 200]
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import path from 'node:path';
import { APP_PORT, BenchHost, diskBytes, meminfo, pssBytes, rssBytes } from './flickd-host.js';
import { argValue, percentile, processCpuUs, writeResults } from './lib.js';

const TAG = 'fbd';
/** A /30 per instance: a /16 holds 16,384. */
const POOL = '10.216.0.0/16';
const IMAGE = 'bench/hello-min:1';
/** Boots in flight at once (2 cores: more only queue on the CPU). */
const CONCURRENCY = 3;
/** Cold wakes of the first and of the N-th instance, taking turns: one wake is too noisy a figure (±15 %). */
const WAKE_ROUNDS = 11;
/** Running instances stop being added when MemAvailable falls below this share of MemTotal. */
const RAM_FLOOR_SHARE = 0.2;

const log = (l: string) => console.log(l);
const round = (x: number, d = 1) => Number(x.toFixed(d));

/** Runs `fn(i)` for i in [0, n) with at most `limit` at once; stops early when `stop()` says so. */
async function pool(n: number, limit: number, fn: (i: number) => Promise<void>, stop: () => boolean = () => false): Promise<number> {
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < n && !stop()) {
      const i = next++;
      await fn(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return done;
}

/** Kernel memory that network namespaces grow: slab, per-CPU areas, kernel stacks, page tables. */
function kernelBytes(): number {
  return meminfo('Slab') + meminfo('Percpu') + meminfo('KernelStack') + meminfo('PageTables');
}

/** Creates instances and measures the cost of one network namespace on its own, away from flickd. */
async function netnsProbe(k: number): Promise<Record<string, number>> {
  const prefix = runPrefix('fbdn');
  await sweepDeadRuns('fbdn');
  const net = new NamespaceNetwork({ prefix, pool: '10.217.0.0/16' });
  const avail0 = meminfo('MemAvailable');
  const kernel0 = kernelBytes();
  const t0 = performance.now();
  let made = 0;
  try {
    for (let i = 0; i < k; i++) {
      await net.attach(`p${i}`, i);
      made++;
    }
    const attachMs = (performance.now() - t0) / k;
    const perNs = (avail0 - meminfo('MemAvailable')) / k;
    const kernelPerNs = (kernelBytes() - kernel0) / k;
    const t1 = performance.now();
    for (let i = 0; i < made; i++) await net.detach(`p${i}`, i);
    const detachMs = (performance.now() - t1) / made;
    made = 0;
    return { namespaces: k, attach_ms_each: round(attachMs), detach_ms_each: round(detachMs), mem_available_drop_bytes_each: Math.round(perNs), kernel_bytes_each: Math.round(kernelPerNs) };
  } finally {
    if (made > 0) await sweepLeftovers(prefix);
  }
}

/**
 * Median first-byte of `rounds` cold wakes of each of `names` (a created
 * instance sleeps cold; later rounds put it back cold). The instances take
 * turns, so whatever else the host does meanwhile falls on all of them alike.
 */
async function wakeMedians(host: BenchHost, names: string[], rounds: number): Promise<number[]> {
  const out = names.map((): number[] => []);
  for (let r = 0; r < rounds; r++) {
    for (const [i, name] of names.entries()) {
      if (r > 0) await host.must('PUT', `/v1/instances/${name}/suspend?tier=cold`);
      await host.waitFor(name, 'standby', 120_000);
      out[i]!.push(await host.firstByte(name));
    }
  }
  return out.map((ms) => round(percentile(ms, 50)));
}

/**
 * How running instances are made. `clone`: scale-to-zero instances (a day's
 * cooldown) woken by one request each, so all but the first are clones of one
 * shared template (as every woken instance is); `boot`: plain instances, each
 * booted from scratch.
 */
type RunningMode = 'clone' | 'boot';

async function runningRamp(host: BenchHost, max: number, deadline: number, memoryMb: number, mode: RunningMode): Promise<{ count: number; pssEach: number | null; cpuEach: number | null; memAvailableDrop: number; stoppedBy: string }> {
  const floor = meminfo('MemTotal') * RAM_FLOOR_SHARE;
  const avail0 = meminfo('MemAvailable');
  let stoppedBy = `the ${max} asked for`;
  const stop = (): boolean => {
    if (meminfo('MemAvailable') < floor) stoppedBy = `MemAvailable below ${Math.round(RAM_FLOOR_SHARE * 100)} % of RAM`;
    else if (Date.now() > deadline) stoppedBy = 'the time bound';
    else return false;
    return true;
  };
  const pids: number[] = [];
  let failed = 0;
  const count = await pool(max, CONCURRENCY, async (i) => {
    const name = `run-${i}`;
    const r = await host.api('POST', '/v1/instances', {
      image: IMAGE,
      name,
      memory_mb: memoryMb,
      ports: [{ port: APP_PORT, protocol: 'http' }],
      ...(mode === 'clone' ? { scale_to_zero: { policy: 'on', cooldown_time_ms: 86_400_000 } } : {}),
    });
    let view: any;
    try {
      if (r.status !== 201) throw new Error(r.text);
      if (mode === 'clone') await host.firstByte(name); // wakes it unless it just booted
      view = await host.waitFor(name, 'running', 300_000);
    } catch {
      view = undefined;
    }
    if (view?.pid) pids.push(view.pid);
    else failed++;
    if ((i + 1) % 50 === 0) log(`  ${i + 1} running, MemAvailable ${(meminfo('MemAvailable') / 2 ** 30).toFixed(1)} GiB`);
  }, stop);
  // Idle for a moment so boot-time pages settle, then PSS each.
  await new Promise((r) => setTimeout(r, 5000));
  const pss = pids.map(pssBytes).filter((x): x is number => x !== undefined);
  const cpuEach = await idleCpuShare(pids, 10_000);
  return {
    count: count - failed,
    pssEach: pss.length > 0 ? Math.round(pss.reduce((a, b) => a + b, 0) / pss.length) : null,
    cpuEach,
    memAvailableDrop: avail0 - meminfo('MemAvailable'),
    stoppedBy: failed > 0 ? `${stoppedBy}; ${failed} failed to start` : stoppedBy,
  };
}

/** CPU time (user + system) of `pids` over `ms`, as the mean share of one core each (idle VMs should cost ~0). */
async function idleCpuShare(pids: number[], ms: number): Promise<number | null> {
  const cpu = (pid: number): number | undefined => {
    try {
      return processCpuUs(pid);
    } catch {
      return undefined; // gone
    }
  };
  const before = new Map(pids.map((pid) => [pid, cpu(pid)]));
  await new Promise((r) => setTimeout(r, ms));
  let used = 0;
  let n = 0;
  for (const pid of pids) {
    const t0 = before.get(pid);
    const t1 = cpu(pid);
    if (t0 === undefined || t1 === undefined) continue;
    used += t1 - t0;
    n++;
  }
  return n > 0 ? round((used / (ms * 1000) / n) * 100, 3) : null;
}

/** Waits (at most 30 s) until MemAvailable moves less than 16 MiB over 2 s: a baseline others' churn does not tilt much. */
async function settle(): Promise<void> {
  const t0 = Date.now();
  let last = meminfo('MemAvailable');
  while (Date.now() - t0 < 30_000) {
    await new Promise((r) => setTimeout(r, 2000));
    const now = meminfo('MemAvailable');
    if (Math.abs(now - last) < 16 * 2 ** 20) return;
    last = now;
  }
}

async function removeAll(host: BenchHost, prefix: string): Promise<void> {
  const all: any[] = (await host.must('GET', '/v1/instances')).instances.filter((i: any) => i.name.startsWith(prefix));
  await pool(all.length, 8, async (i) => void (await host.api('DELETE', `/v1/instances/${all[i].id}?force=true`)));
}

async function main(): Promise<void> {
  const n = Number(argValue(process.argv, 'n') ?? 10_000);
  const runningMax = Number(argValue(process.argv, 'running-max') ?? 1000);
  const minutes = Number(argValue(process.argv, 'minutes') ?? 60);
  const probeK = Number(argValue(process.argv, 'netns-probe') ?? 200);
  const runningMemoryMb = Number(argValue(process.argv, 'running-memory') ?? 64);
  const runningMode: RunningMode = argValue(process.argv, 'running-mode') === 'boot' ? 'boot' : 'clone';
  const accel = await new QemuDriver({}).accelerator();
  const start = Date.now();
  const deadline = start + minutes * 60_000;

  log(`network namespaces on their own: ${probeK} made and removed`);
  const netns = await netnsProbe(probeK);
  log(`  ${JSON.stringify(netns)}`);

  // No hot tier: every standby instance is cold (no process), the state 10,000 of them can be in.
  const host = await BenchHost.start({ tag: TAG, pool: POOL, args: ['--hot-standby-budget', '0'], log });
  let results: Record<string, unknown>;
  let details: Record<string, unknown>;
  try {
    await host.pushMinimal(IMAGE);

    log(`${n} scale-to-zero instances, ${CONCURRENCY} at a time until each is in standby`);
    await settle();
    const flickdRss0 = rssBytes(host.pid!) ?? 0;
    const avail0 = meminfo('MemAvailable');
    const kernel0 = kernelBytes();
    const t0 = performance.now();
    let failed = 0;
    let timedOut = false;
    const created = await pool(
      n,
      CONCURRENCY,
      async (i) => {
        const name = `sb-${i}`;
        const r = await host.api('POST', '/v1/instances', {
          image: IMAGE,
          name,
          memory_mb: 128,
          ports: [{ port: APP_PORT, protocol: 'http' }],
          scale_to_zero: { policy: 'on', cooldown_time_ms: 1 },
        });
        const ok = r.status === 201 && (await host.waitFor(name, 'standby', 300_000).then(() => true, () => false));
        if (!ok) failed++;
        if ((i + 1) % 100 === 0) log(`  ${i + 1} created, ${((i + 1) / ((performance.now() - t0) / 1000)).toFixed(1)}/s`);
      },
      () => (timedOut = Date.now() > start + (deadline - start) / 2), // half the time: the running ramp gets the rest
    );
    const seconds = (performance.now() - t0) / 1000;
    const standby = created - failed;
    await settle();
    const ramDrop = avail0 - meminfo('MemAvailable');
    const flickdRss = rssBytes(host.pid!) ?? 0;
    const diskInstances = diskBytes(path.join(host.dataDir, 'instances'));
    const diskTemplates = diskBytes(path.join(host.dataDir, 'templates'));
    const diskDb = ['state.db', 'state.db-wal'].reduce((sum, f) => sum + diskBytes(path.join(host.dataDir, f)), 0);
    const disk = diskInstances + diskTemplates + diskDb;
    log(`  ${standby} in standby in ${seconds.toFixed(0)} s; MemAvailable -${(ramDrop / 2 ** 20).toFixed(0)} MiB, flickd RSS ${(flickdRss / 2 ** 20).toFixed(0)} MiB; disk ${(disk / 2 ** 20).toFixed(0)} MiB`);
    log('wake of the first and of the last instance');
    const [wakeFirst = null, wakeLast = null] = standby > 0 ? await wakeMedians(host, ['sb-0', `sb-${created - 1}`], WAKE_ROUNDS) : [];
    await removeAll(host, 'sb-');

    log(`idle running minimal instances (-m ${runningMemoryMb}M, ${runningMode}): up to ${runningMax}, within the time left`);
    const running = await runningRamp(host, runningMax, deadline, runningMemoryMb, runningMode);
    log(`  ${running.count} running (stopped by ${running.stoppedBy}), PSS each ${running.pssEach}, idle CPU each ${running.cpuEach} % of a core`);
    await removeAll(host, 'run-');

    results = {
      standby_instances: standby,
      standby_ram_bytes: ramDrop,
      standby_disk_bytes_each: standby > 0 ? Math.round(disk / standby) : null,
      create_per_s: round(standby / seconds, 2),
      running_instances: running.count,
      running_pss_bytes_each: running.pssEach,
      running_cpu_percent_each: running.cpuEach,
      wake_first_ms: wakeFirst,
      wake_last_ms: wakeLast,
    };
    details = {
      date: new Date().toISOString(),
      accel,
      asked: { n, running_max: runningMax, minutes, running_memory_mb: runningMemoryMb },
      wake_first_last: `median of ${WAKE_ROUNDS} cold wakes of each, taking turns`,
      standby: {
        created,
        failed,
        stopped_by_time_bound: timedOut,
        seconds: round(seconds),
        ram_measure: 'drop of MemAvailable from before the first create to after the last standby, each taken once MemAvailable is steady (flickd, kernel objects, page cache that cannot be dropped); noisy on a shared machine for small N: see flickd_rss_growth_bytes and kernel_growth_bytes',
        flickd_rss_bytes: flickdRss,
        flickd_rss_growth_bytes: flickdRss - flickdRss0,
        kernel_growth_bytes: kernelBytes() - kernel0,
        kernel_measure: 'Slab + Percpu + KernelStack + PageTables from /proc/meminfo',
        ram_bytes_each: standby > 0 ? Math.round(ramDrop / standby) : null,
        disk_bytes_total: disk,
        disk_measure: 'allocated blocks under <data-dir>/instances, the shared templates and the state database, divided by the standby instances',
        disk_bytes_instances: diskInstances,
        disk_bytes_templates: diskTemplates,
        disk_bytes_state_db: diskDb,
      },
      running: {
        mode: runningMode === 'clone' ? 'scale-to-zero instances woken by a request: clones of one shared template' : 'each booted from scratch',
        stopped_by: running.stoppedBy,
        memory_mb: runningMemoryMb,
        mem_available_drop_bytes: running.memAvailableDrop,
        mem_available_drop_bytes_each: running.count > 0 ? Math.round(running.memAvailableDrop / running.count) : null,
      },
      network_namespace_alone: netns,
    };
  } finally {
    await host.close();
  }
  console.log(JSON.stringify(results, null, 2));
  console.log(`results in ${await writeResults('density', { accel, results, details })}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
