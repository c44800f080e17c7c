// The density benchmark's idle *running* instances (bench/density.ts): as many
// idle running minimal instances as the host holds within a RAM floor and a
// time bound, their PSS and idle CPU each (the scheduler's own run time per
// thread: exact at the 0.05 %-of-a-core scale), with the host's ksmd turned on
// for the ramp (the VMMs are mergeable: src/security/jailer.c) and put back as
// it was afterwards, its own CPU counted beside the VMs'. Also why failed
// starts failed (shared with the standby phase), and `--only-running`, which
// runs this phase alone and merges its fields into density.json.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { APP_PORT, BenchHost, meminfo, pssBytes } from './flickd-host.js';
import { forEachLimit, processRunUs, writeResults } from './lib.js';

const round = (x: number, d = 1) => Number(x.toFixed(d));

/**
 * How running instances are made. `clone`: scale-to-zero instances (a day's
 * cooldown) woken by one request each, so all but the first are clones of one
 * shared template (as every woken instance is); `boot`: plain instances, each
 * booted from scratch.
 */
export type RunningMode = 'clone' | 'boot';

/** Why starts failed: each distinct reason (trimmed) with how many times it came. */
export class Failures {
  readonly #byReason = new Map<string, { count: number; first: string }>();
  count = 0;
  add(name: string, err: unknown): void {
    const reason = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 800);
    const seen = this.#byReason.get(reason);
    if (seen) seen.count++;
    else this.#byReason.set(reason, { count: 1, first: name });
    this.count++;
  }
  get first(): string | undefined {
    const [reason, { first } = { first: '' }] = [...this.#byReason.entries()][0] ?? [];
    return reason === undefined ? undefined : `${first} failed to start: ${reason}`;
  }
  toJSON(): Array<{ reason: string; count: number; first: string }> {
    return [...this.#byReason.entries()].map(([reason, v]) => ({ reason, count: v.count, first: v.first }));
  }
}

/** What the call said, with the last lines of the instance's console log (the guest's and its VMM's last words). */
export async function whyFailed(host: BenchHost, name: string, err: unknown): Promise<Error> {
  const log = await fetch(`${host.base}/v1/instances/${name}/log`, { headers: { authorization: `Bearer ${host.token}` } })
    .then((r) => (r.ok ? r.text() : ''))
    .catch(() => '');
  const tail = log.trim().split('\n').slice(-4).join(' | ');
  return new Error(`${err instanceof Error ? err.message : String(err)}${tail ? ` (console: ${tail.slice(-400)})` : ''}`);
}

const KSM = '/sys/kernel/mm/ksm';
const KSM_KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs'] as const;

/** The host's ksmd, on for the ramp at `pagesToScan` per 20 ms and put back as it was by `restore()`. */
export class KsmDuringRun {
  readonly #before: Record<string, string> = {};
  readonly available = fs.existsSync(path.join(KSM, 'run'));

  /** Pages per 20 ms from now on (a slower scan once the ramp's pages are merged). */
  rate(pagesToScan: number): void {
    if (this.available) fs.writeFileSync(path.join(KSM, 'pages_to_scan'), String(pagesToScan));
  }

  start(pagesToScan: number): void {
    if (!this.available) return;
    for (const k of KSM_KNOBS) this.#before[k] = fs.readFileSync(path.join(KSM, k), 'utf8').trim();
    fs.writeFileSync(path.join(KSM, 'pages_to_scan'), String(pagesToScan));
    fs.writeFileSync(path.join(KSM, 'sleep_millisecs'), '20');
    fs.writeFileSync(path.join(KSM, 'run'), '1');
  }

  /** Pages merged now: `pages_sharing` (what the merges saved) and `pages_shared` (the copies kept). */
  stats(): Record<string, number> {
    const n = (f: string) => (this.available ? Number(fs.readFileSync(path.join(KSM, f), 'utf8')) : 0);
    return { pages_sharing: n('pages_sharing'), pages_shared: n('pages_shared'), full_scans: n('full_scans') };
  }

  /** ksmd's own run time so far (µs), or 0 without it. */
  cpuUs(): number {
    for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'ksmd') return processRunUs(Number(pid));
      } catch {
        // gone
      }
    }
    return 0;
  }

  /**
   * The old settings back. Never run=2 (unmerge) here: the VMs still run, and
   * copying every merged page back could exhaust RAM; with run=0 merged pages
   * stay shared until written or freed with their VMs.
   */
  restore(): void {
    if (!this.available || Object.keys(this.#before).length === 0) return;
    for (const k of ['pages_to_scan', 'sleep_millisecs', 'run'] as const) fs.writeFileSync(path.join(KSM, k), this.#before[k]!);
  }
}

export interface RampResult {
  count: number;
  pssEach: number | null;
  cpuEach: number | null;
  cpuWorst: number | null;
  memAvailableDrop: number;
  stoppedBy: string;
  failures: Failures;
  ksm: Record<string, number> | null;
}

export async function runningRamp(host: BenchHost, opts: { max: number; deadline: number; memoryMb: number; mode: RunningMode; concurrency: number; floorShare: number; ksmPages: number; log: (l: string) => void }): Promise<RampResult> {
  const floor = meminfo('MemTotal') * opts.floorShare;
  const avail0 = meminfo('MemAvailable');
  const failures = new Failures();
  const ksm = new KsmDuringRun();
  if (opts.ksmPages > 0) ksm.start(opts.ksmPages);
  try {
    let stoppedBy = `the ${opts.max} asked for`;
    const stop = (): boolean => {
      if (failures.first) stoppedBy = failures.first;
      else if (meminfo('MemAvailable') < floor) stoppedBy = `MemAvailable below ${Math.round(opts.floorShare * 100)} % of RAM`;
      else if (Date.now() > opts.deadline) stoppedBy = 'the time bound';
      else return false;
      return true;
    };
    // ksmd merges a new VM's pages a scan or two after it starts (minutes on a loaded host): near the floor,
    // wait (up to 5 minutes) for it to catch up.
    const catchUp = async (): Promise<void> => {
      const until = Date.now() + 300_000;
      while (opts.ksmPages > 0 && meminfo('MemAvailable') < floor * 1.1 && Date.now() < until) await new Promise((r) => setTimeout(r, 2000));
    };
    const pids: number[] = [];
    await forEachLimit(opts.max, opts.concurrency, async (i) => {
      const name = `run-${i}`;
      await catchUp();
      if (stop()) return;
      try {
        const r = await host.api('POST', '/v1/instances', {
          image: 'bench/hello-min:1',
          name,
          memory_mb: opts.memoryMb,
          ports: [{ port: APP_PORT, protocol: 'http' }],
          ...(opts.mode === 'clone' ? { scale_to_zero: { policy: 'on', cooldown_time_ms: 86_400_000 } } : {}),
        });
        if (r.status !== 201) throw new Error(`create: HTTP ${r.status} ${r.text}`);
        if (opts.mode === 'clone') await host.firstByte(name); // wakes it unless it just booted
        const view = await host.waitFor(name, 'running', 300_000);
        if (!view?.pid) throw new Error(`running without a VMM process: ${JSON.stringify(view).slice(0, 200)}`);
        pids.push(view.pid);
      } catch (err) {
        failures.add(name, await whyFailed(host, name, err));
      }
      if ((i + 1) % 50 === 0) opts.log(`  ${i + 1} started, MemAvailable ${(meminfo('MemAvailable') / 2 ** 30).toFixed(1)} GiB${opts.ksmPages > 0 ? `, KSM ${JSON.stringify(ksm.stats())}` : ''}`);
    }, stop);
    // Idle for a moment so boot-time pages settle (and ksmd merges the last ones), then PSS and CPU each.
    await new Promise((r) => setTimeout(r, opts.ksmPages > 0 ? 60_000 : 5000));
    const pss = pids.map(pssBytes).filter((x): x is number => x !== undefined);
    // Once merged, ksmd only has to keep up with what changes: the idle window runs at a tenth of the ramp's rate.
    const steadyPages = Math.max(1, Math.round(opts.ksmPages / 10));
    if (opts.ksmPages > 0) ksm.rate(steadyPages);
    const ksmCpu0 = ksm.cpuUs();
    const t0 = performance.now();
    const cpu = await idleCpuShares(pids, 30_000);
    const ksmdShare = ((ksm.cpuUs() - ksmCpu0) / ((performance.now() - t0) * 1000)) * 100;
    return {
      count: pids.length,
      pssEach: pss.length > 0 ? Math.round(pss.reduce((a, b) => a + b, 0) / pss.length) : null,
      cpuEach: cpu.length > 0 ? round(cpu.reduce((a, b) => a + b, 0) / cpu.length, 3) : null,
      cpuWorst: cpu.length > 0 ? round(Math.max(...cpu), 3) : null,
      memAvailableDrop: avail0 - meminfo('MemAvailable'),
      stoppedBy,
      failures,
      ksm: opts.ksmPages > 0 && ksm.available ? { ...ksm.stats(), pages_to_scan_ramp: opts.ksmPages, pages_to_scan_idle: steadyPages, ksmd_cpu_percent_idle: round(ksmdShare, 2), ksmd_cpu_percent_idle_per_vm: pids.length > 0 ? round(ksmdShare / pids.length, 4) : 0 } : null,
    };
  } finally {
    ksm.restore();
  }
}

/** Run time (all threads) of each of `pids` over `ms`, as its share of one core in % (an idle VM should cost ~0). */
async function idleCpuShares(pids: number[], ms: number): Promise<number[]> {
  const cpu = (pid: number): number | undefined => {
    try {
      return processRunUs(pid);
    } catch {
      return undefined; // gone
    }
  };
  const before = new Map(pids.map((pid) => [pid, cpu(pid)]));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const elapsedUs = (performance.now() - t0) * 1000;
  return pids.flatMap((pid) => {
    const t0cpu = before.get(pid);
    const t1 = cpu(pid);
    return t0cpu === undefined || t1 === undefined ? [] : [((t1 - t0cpu) / elapsedUs) * 100];
  });
}

/** The ramp's fields of density.json (results and details.running). */
export function runningFields(running: RampResult, memoryMb: number, mode: RunningMode): { results: Record<string, unknown>; details: Record<string, unknown> } {
  return {
    results: {
      running_instances: running.count,
      running_pss_bytes_each: running.pssEach,
      running_cpu_percent_each: running.cpuEach,
      running_cpu_percent_worst: running.cpuWorst,
    },
    details: {
      mode: mode === 'clone' ? 'scale-to-zero instances woken by a request: clones of one shared template' : 'each booted from scratch',
      stopped_by: running.stoppedBy,
      failures: running.failures.toJSON(),
      cpu_measure: 'run time of every thread of each VMM (/proc/<pid>/task/*/schedstat) over 30 s idle, as a share of one core; each = mean, worst = the busiest VMM',
      memory_mb: memoryMb,
      mem_available_drop_bytes: running.memAvailableDrop,
      mem_available_drop_bytes_each: running.count > 0 ? Math.round(running.memAvailableDrop / running.count) : null,
      ksm: running.ksm ?? 'off (--ksm-pages 0)',
    },
  };
}

/** `--only-running`: this phase alone on a flickd of its own; its fields replace those in density.json, the rest stays. */
export async function onlyRunning(opts: { accel: string; max: number; minutes: number; memoryMb: number; mode: RunningMode; concurrency: number; floorShare: number; ksmPages: number; tag: string; pool: string; log: (l: string) => void }): Promise<void> {
  const host = await BenchHost.start({ tag: opts.tag, pool: opts.pool, args: ['--hot-standby-budget', '0', '--primed-pool-mb', '0'], log: opts.log });
  let fields: ReturnType<typeof runningFields>;
  try {
    await host.pushMinimal('bench/hello-min:1');
    opts.log(`idle running minimal instances (-m ${opts.memoryMb}M, ${opts.mode}, KSM ${opts.ksmPages > 0 ? `${opts.ksmPages} pages / 20 ms` : 'off'}): up to ${opts.max}`);
    const running = await runningRamp(host, { ...opts, deadline: Date.now() + opts.minutes * 60_000 });
    opts.log(`  ${running.count} running (stopped by ${running.stoppedBy}), PSS each ${running.pssEach}, idle CPU each ${running.cpuEach} % of a core (worst ${running.cpuWorst} %), KSM ${JSON.stringify(running.ksm)}`);
    fields = runningFields(running, opts.memoryMb, opts.mode);
  } finally {
    await host.close();
  }
  const file = path.join(PACKAGE_ROOT, 'bench', 'results', 'density.json');
  const old = JSON.parse(await fsp.readFile(file, 'utf8').catch(() => '{}')) as { results?: Record<string, unknown>; details?: Record<string, unknown> };
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const details = { ...old.details, running: { ...fields.details, from: `--only-running (${new Date().toISOString()}, ${opts.accel}, load average after: ${load}); the other fields are from the last full run` } };
  console.log(JSON.stringify(fields.results, null, 2));
  console.log(`results in ${await writeResults('density', { accel: opts.accel, results: { ...old.results, ...fields.results }, details })}`);
}
