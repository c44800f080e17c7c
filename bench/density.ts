// How many instances one host holds, through a real flickd: N scale-to-zero
// instances of the minimal server (create rate; host RAM of them all in standby
// as the drop in MemAvailable, with flickd's RSS and the kernel's slab beside
// it; disk per instance; the wake of the first and of the N-th), the largest
// number of idle *running* minimal instances within a RAM and time bound (PSS
// each), and the cost of one instance network namespace on its own (what N
// standby instances pay in kernel objects); with N records, flickd's RSS, a
// restart of flickd until it serves again (reconcile + proxy routes), the list
// through the API and `flick ls`; and the idle cost of N node apps as Flick
// standby vs containers vs bare processes (idle-cost.ts). A start that fails
// is recorded with its reason, and the ramp stops there rather than piling up
// more failures. Writes bench/results/density.json (issues 7, 18):
//   {"results": {"standby_instances", "standby_ram_bytes", "standby_disk_bytes_each", "create_per_s",
//    "running_instances", "running_pss_bytes_each", "running_cpu_percent_each", "running_cpu_percent_worst",
//    "wake_first_ms", "wake_last_ms", "flickd_rss_bytes", "restart_ms", "list_ms", "idle_cost"},
//    "details": {...}}
//
//   node dist/bench/density.js [--n 100000] [--running-max 1000] [--running-mode clone|boot]
//                              [--running-memory 64] [--minutes 60] [--netns-probe 200] [--idle-cost-n 50]
//                              [--ksm-pages 2000] [--only-running]
// The running ramp turns the host's ksmd on (--ksm-pages per 20 ms; 0: off) and puts it back
// afterwards (bench/running-ramp.ts); --only-running runs that ramp alone and merges its fields.
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import path from 'node:path';
import { APP_PORT, BenchHost, diskBytes, meminfo, rssBytes, settle } from './flickd-host.js';
import { idleCost, type IdleCost } from './idle-cost.js';
import { argValue, forEachLimit, percentile, writeResults } from './lib.js';
import { Failures, onlyRunning, runningFields, runningRamp, whyFailed, type RunningMode } from './running-ramp.js';

const TAG = 'fbd';
/** A /30 per instance: a /16 holds 16,384. */
const POOL = '10.216.0.0/16';
const IMAGE = 'bench/hello-min:1';
const NODE_IMAGE = 'bench/hello-node:1';
/** Boots in flight at once (2 cores: more only queue on the CPU). */
const CONCURRENCY = 3;
/** Cold wakes of the first and of the N-th instance, taking turns: one wake is too noisy a figure (±15 %). */
const WAKE_ROUNDS = 11;
/** Running instances stop being added when MemAvailable falls below this share of MemTotal. */
const RAM_FLOOR_SHARE = 0.2;

const log = (l: string) => console.log(l);
const round = (x: number, d = 1) => Number(x.toFixed(d));

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
async function wakeMedians(host: BenchHost, names: string[], rounds: number, failures: Failures): Promise<Array<number | null>> {
  const out = names.map((): number[] => []);
  for (let r = 0; r < rounds; r++) {
    for (const [i, name] of names.entries()) {
      try {
        if (r > 0) await host.api('PUT', `/v1/instances/${name}/suspend?tier=cold`);
        await host.waitFor(name, 'standby', 120_000);
        out[i]!.push(await host.firstByte(name));
      } catch (err) {
        failures.add(`wake of ${name}`, err); // recorded with its reason; the other rounds still count
      }
    }
  }
  return out.map((ms) => (ms.length > 0 ? round(percentile(ms, 50)) : null));
}

/** ms to list every instance through the API, one page of 100 (if the API pages), and `flick ls`. */
async function listTimes(host: BenchHost): Promise<Record<string, number | string>> {
  const time = async (fn: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await fn();
    return round(performance.now() - t0);
  };
  const all = await time(() => host.must('GET', '/v1/instances'));
  const page = await time(() => host.must('GET', '/v1/instances?limit=100&state=standby'));
  let cli: number | string = 'failed';
  const t0 = performance.now();
  const ls = await host.flick(['ls', '--limit', '100']);
  if (ls.code === 0) cli = round(performance.now() - t0);
  else cli = `failed: ${ls.stderr.slice(0, 200)}`;
  return { api_all: all, api_page_100: page, flick_ls_limit_100: cli };
}

async function removeAll(host: BenchHost, prefix: string): Promise<void> {
  const all: any[] = (await host.must('GET', '/v1/instances')).instances.filter((i: any) => i.name.startsWith(prefix));
  await forEachLimit(all.length, 8, async (i) => void (await host.api('DELETE', `/v1/instances/${all[i].id}?force=true`)));
}

async function main(): Promise<void> {
  const n = Number(argValue(process.argv, 'n') ?? 100_000);
  const idleCostN = Number(argValue(process.argv, 'idle-cost-n') ?? 50);
  const runningMax = Number(argValue(process.argv, 'running-max') ?? 1000);
  const minutes = Number(argValue(process.argv, 'minutes') ?? 60);
  const probeK = Number(argValue(process.argv, 'netns-probe') ?? 200);
  const runningMemoryMb = Number(argValue(process.argv, 'running-memory') ?? 64);
  const runningMode: RunningMode = argValue(process.argv, 'running-mode') === 'boot' ? 'boot' : 'clone';
  const ksmPages = Number(argValue(process.argv, 'ksm-pages') ?? 2000);
  const accel = await new QemuDriver({}).accelerator();
  const ramp = { max: runningMax, memoryMb: runningMemoryMb, mode: runningMode, concurrency: CONCURRENCY, floorShare: RAM_FLOOR_SHARE, ksmPages, log };
  if (process.argv.includes('--only-running')) return onlyRunning({ ...ramp, accel, minutes, tag: TAG, pool: POOL });
  const start = Date.now();
  const deadline = start + minutes * 60_000;

  log(`network namespaces on their own: ${probeK} made and removed`);
  const netns = await netnsProbe(probeK);
  log(`  ${JSON.stringify(netns)}`);

  // No hot tier: every standby instance is cold (no process), the state 100,000 of them can be in.
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
    const createFailures = new Failures();
    let timedOut = false;
    const created = await forEachLimit(
      n,
      CONCURRENCY,
      async (i) => {
        const name = `sb-${i}`;
        try {
          const r = await host.api('POST', '/v1/instances', {
            image: IMAGE,
            name,
            memory_mb: 128,
            ports: [{ port: APP_PORT, protocol: 'http' }],
            scale_to_zero: { policy: 'on', cooldown_time_ms: 1 },
          });
          if (r.status !== 201) throw new Error(`create: HTTP ${r.status} ${r.text}`);
          await host.waitFor(name, 'standby', 300_000);
        } catch (err) {
          createFailures.add(name, await whyFailed(host, name, err));
        }
        if ((i + 1) % 5000 === 0) log(`  ${i + 1} created, ${((i + 1) / ((performance.now() - t0) / 1000)).toFixed(1)}/s, flickd RSS ${((rssBytes(host.pid!) ?? 0) / 2 ** 20).toFixed(0)} MiB`);
      },
      // Stop at the first failure (with its reason), or at half the time: the running ramp gets the rest.
      () => createFailures.count > 0 || (timedOut = Date.now() > start + (deadline - start) / 2),
    );
    const seconds = (performance.now() - t0) / 1000;
    const failed = createFailures.count;
    const standby = created - failed;
    if (createFailures.first) log(`  stopped: ${createFailures.first}`);
    await settle();
    const ramDrop = avail0 - meminfo('MemAvailable');
    const flickdRss = rssBytes(host.pid!) ?? 0;
    const diskInstances = diskBytes(path.join(host.dataDir, 'instances'));
    const diskTemplates = diskBytes(path.join(host.dataDir, 'templates'));
    const diskDb = ['state.db', 'state.db-wal'].reduce((sum, f) => sum + diskBytes(path.join(host.dataDir, f)), 0);
    const disk = diskInstances + diskTemplates + diskDb;
    log(`  ${standby} in standby in ${seconds.toFixed(0)} s; MemAvailable -${(ramDrop / 2 ** 20).toFixed(0)} MiB, flickd RSS ${(flickdRss / 2 ** 20).toFixed(0)} MiB; disk ${(disk / 2 ** 20).toFixed(0)} MiB`);
    const list = await listTimes(host);
    log(`  list: ${JSON.stringify(list)}`);
    log(`restart of flickd with ${standby} records`);
    const restartMs = round(await host.restart());
    const flickdRssRestarted = rssBytes(host.pid!) ?? 0;
    log(`  serving again after ${restartMs} ms (flickd RSS ${(flickdRssRestarted / 2 ** 20).toFixed(0)} MiB)`);
    log('wake of the first and of the last instance');
    const wakeFailures = new Failures();
    const [wakeFirst = null, wakeLast = null] = standby > 0 ? await wakeMedians(host, ['sb-0', `sb-${created - 1}`], WAKE_ROUNDS, wakeFailures) : [];
    if (wakeFailures.first) log(`  ${wakeFailures.count} wakes failed, first: ${wakeFailures.first}`);
    const tRemove = performance.now();
    await removeAll(host, 'sb-');
    log(`  removed ${created} in ${((performance.now() - tRemove) / 1000).toFixed(0)} s`);

    let idle: IdleCost | { error: string } | null = null;
    if (idleCostN > 0) {
      try {
        await host.pushNode(NODE_IMAGE);
        idle = await idleCost(host, NODE_IMAGE, idleCostN, log, standby > 0 ? Math.max(0, Math.round((flickdRss - flickdRss0) / standby)) : 0);
      } catch (err) {
        idle = { error: (err as Error).message.slice(0, 500) };
        log(`  idle cost failed: ${idle.error}`);
      }
    }

    log(`idle running minimal instances (-m ${runningMemoryMb}M, ${runningMode}): up to ${runningMax}, within the time left`);
    const running = await runningRamp(host, { ...ramp, deadline });
    const runningOut = runningFields(running, runningMemoryMb, runningMode);
    log(`  ${running.count} running (stopped by ${running.stoppedBy}), PSS each ${running.pssEach}, idle CPU each ${running.cpuEach} % of a core (worst ${running.cpuWorst} %)`);
    await removeAll(host, 'run-');

    results = {
      standby_instances: standby,
      standby_ram_bytes: ramDrop,
      standby_disk_bytes_each: standby > 0 ? Math.round(disk / standby) : null,
      create_per_s: round(standby / seconds, 2),
      ...runningOut.results,
      wake_first_ms: wakeFirst,
      wake_last_ms: wakeLast,
      flickd_rss_bytes: flickdRss,
      restart_ms: restartMs,
      list_ms: list,
      idle_cost: idle,
    };
    details = {
      date: new Date().toISOString(),
      accel,
      asked: { n, running_max: runningMax, minutes, running_memory_mb: runningMemoryMb, idle_cost_n: idleCostN },
      machine: 'shared: other engineers ran builds, tests and VMs on the same 2 cores meanwhile',
      wake_first_last: `median of ${WAKE_ROUNDS} cold wakes of each, taking turns, after the restart`,
      wake_failures: wakeFailures.toJSON(),
      restart_measure: 'SIGTERM of flickd with every record in place, then spawn until it listens (it listens once reconcile is done and the proxy serves every route)',
      flickd_rss_after_restart_bytes: flickdRssRestarted,
      standby: {
        created,
        failed,
        stopped_by_time_bound: timedOut,
        stopped_by_failure: createFailures.first ?? null,
        failures: createFailures.toJSON(),
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
      running: runningOut.details,
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
