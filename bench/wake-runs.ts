// The wake benchmark's runs (bench/wake.ts): one instance created, put to sleep in a tier and
// woken by one request through the proxy, timed to the first byte, with the phases flickd recorded
// for each wake; the same for cold wakes served by flickd's primed pool.
import fs from 'node:fs';
import path from 'node:path';
import { BenchHost, APP_PORT, pssBytes } from './flickd-host.js';
import { percentile } from './lib.js';

export type Tier = 'hot' | 'cold';
export type App = 'node' | 'min';

export const IMAGES: Record<App, string> = { min: 'bench/hello-min:1', node: 'hello-node:latest' };
export const MEMORY_MB: Record<App, number> = { min: 128, node: 256 };
/** Long: every sleep in this benchmark is asked for (PUT …/suspend?tier=), none falls on a timer. */
export const COOLDOWN_MS = 600_000;

export async function createInstance(host: BenchHost, name: string, app: App, scaleToZero: Record<string, unknown> | undefined): Promise<void> {
  await host.must('POST', '/v1/instances', {
    image: IMAGES[app],
    name,
    memory_mb: MEMORY_MB[app],
    ports: [{ port: APP_PORT, protocol: 'http' }],
    ...(scaleToZero ? { scale_to_zero: scaleToZero } : {}),
  });
  await host.waitFor(name, 'running');
}

/** The tier a standby instance is in, as the API shows it (or as its pid gives away). */
function observedTier(view: any): Tier {
  const t = view.standby_tier ?? view.tier;
  if (t === 'hot' || t === 'cold') return t;
  return view.pid === null ? 'cold' : 'hot';
}


export interface WakeRuns {
  samples: number[];
  /** Each wake's phases as flickd recorded them (GET /v1/instances/{name} last_wake.phases_ms). */
  phases: Record<string, number>[];
  /** Runs whose standby tier was not the one asked for (not in `samples`). */
  otherTier: number;
  /** PSS of the paused VMM while in hot standby (median over runs). */
  hotPss?: number;
  /** What flickd says the paused VM holds after its page-out (its memory cgroup; median). */
  hotHeld?: number;
}

/**
 * Waits until the paused VMM's PSS stops falling (its guest RAM paged out; at
 * most 10 s), then what flickd says the paused VM holds after its page-out.
 */
async function pagedOut(host: BenchHost, name: string, pid: number | null): Promise<{ pss?: number; held?: number }> {
  let last = pid === null ? undefined : pssBytes(pid);
  const t0 = Date.now();
  while (pid !== null && last !== undefined && Date.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 100));
    const now = pssBytes(pid);
    if (now === undefined) break;
    const settled = Date.now() - t0 >= 300 && Math.abs(now - last) < last * 0.01;
    last = now;
    if (settled) break;
  }
  const m = await host.api('GET', `/v1/instances/${name}/metrics`);
  const held = m.json?.data?.hot_bytes_after_page_out;
  return { ...(last !== undefined ? { pss: last } : {}), ...(typeof held === 'number' ? { held } : {}) };
}

/** Puts `name` to sleep in `tier` `runs` times and wakes it with one request through the proxy each time. */
export async function wakes(host: BenchHost, app: App, tier: Tier, runs: number, keep = false): Promise<WakeRuns> {
  const name = `${app}-${tier}`;
  await createInstance(host, name, app, { policy: 'on', cooldown_time_ms: COOLDOWN_MS });
  const samples: number[] = [];
  const phases: Record<string, number>[] = [];
  const pss: number[] = [];
  const flickdHeld: number[] = [];
  let otherTier = 0;
  try {
    await host.firstByte(name);
    if (tier === 'hot') {
      // As flickd does by itself: the VM that booted goes cold at its first standby (it holds its
      // boot's translations), so hot standby is measured on the restored VM that serves from then on.
      await host.must('PUT', `/v1/instances/${name}/suspend?tier=cold`);
      await host.waitFor(name, 'standby', 60_000);
      await host.firstByte(name);
    }
    for (let i = 0; i < runs; i++) {
      await host.must('PUT', `/v1/instances/${name}/suspend?tier=${tier}`);
      const view = await host.waitFor(name, 'standby', 60_000);
      const actual = observedTier(await host.must('GET', `/v1/instances/${name}`));
      if (actual === 'hot') {
        // Wake from the settled state: the guest RAM paged out, as after any real sleep.
        const settled = await pagedOut(host, name, view.pid);
        if (settled.held !== undefined) flickdHeld.push(settled.held);
        if (settled.pss !== undefined) pss.push(settled.pss);
      } else {
        await new Promise((r) => setTimeout(r, 200));
      }
      const lastAt = (await host.must('GET', `/v1/instances/${name}`)).last_wake?.at;
      const ms = await host.firstByte(name);
      if (actual === tier) {
        samples.push(ms);
        const p = await wakePhases(host, name, lastAt);
        if (p) phases.push(p);
      } else otherTier++;
      process.stdout.write(actual === tier ? '.' : 'x');
    }
    process.stdout.write('\n');
    return {
      samples,
      phases,
      otherTier,
      ...(pss.length > 0 ? { hotPss: percentile(pss, 50) } : {}),
      ...(flickdHeld.length > 0 ? { hotHeld: percentile(flickdHeld, 50) } : {}),
    };
  } finally {
    if (!keep) await host.api('DELETE', `/v1/instances/${name}?force=true`);
  }
}

interface PoolView {
  vms: number;
  priming: boolean;
  used_bytes: number;
  hits: number;
  misses: number;
}

export async function poolOf(host: BenchHost): Promise<PoolView> {
  return (await host.must('GET', '/v1/metrics')).primed_pool as PoolView;
}

/**
 * Cold wakes served by the primed pool: before each, the instance goes to cold standby and the
 * pool is waited for (a VM of its template ready, none being restored: a refill would compete
 * with the wake for the CPU). A wake the pool did not serve (tier not primed) is left out.
 */
export async function primedWakes(host: BenchHost, app: App, runs: number): Promise<WakeRuns & { poolBytes: number[]; pss: number[] }> {
  const name = `${app}-primed`;
  await createInstance(host, name, app, { policy: 'on', cooldown_time_ms: COOLDOWN_MS });
  const out = { samples: [] as number[], phases: [] as Record<string, number>[], otherTier: 0, poolBytes: [] as number[], pss: [] as number[] };
  const ready = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const p = await poolOf(host);
      if (p.vms >= 1 && !p.priming) return p;
      if (Date.now() > deadline) throw new Error(`the primed pool did not fill within 60 s: ${JSON.stringify(p)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    await host.firstByte(name);
    // One cold wake first: it puts the template in demand (the pool primes what was woken).
    await host.must('PUT', `/v1/instances/${name}/suspend?tier=cold`);
    await host.firstByte(name);
    for (let i = 0; i < runs; i++) {
      await host.must('PUT', `/v1/instances/${name}/suspend?tier=cold`);
      await host.waitFor(name, 'standby', 60_000);
      const p = await ready();
      out.poolBytes.push(p.used_bytes / p.vms);
      const pid = primedPids(host.dataDir)[0];
      const pss = pid === undefined ? undefined : pssBytes(pid);
      if (pss !== undefined) out.pss.push(pss);
      await new Promise((r) => setTimeout(r, 200));
      const lastAt = (await host.must('GET', `/v1/instances/${name}`)).last_wake?.at;
      const ms = await host.firstByte(name);
      const w = await wakePhasesOf(host, name, lastAt);
      if (w?.tier === 'primed') {
        out.samples.push(ms);
        out.phases.push(w.phases);
      } else out.otherTier++;
      process.stdout.write(w?.tier === 'primed' ? '.' : 'x');
    }
    process.stdout.write('\n');
    return out;
  } finally {
    await host.api('DELETE', `/v1/instances/${name}?force=true`);
  }
}

/** Pids of the QEMUs of flickd's primed pool (their run folders are under <data dir>/primed/). */
function primedPids(dataDir: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8');
      if (cmd.includes('qemu-system') && cmd.includes(`${path.join(dataDir, 'primed')}/`)) out.push(Number(n));
    } catch {
      // gone
    }
  }
  return out;
}

/** The wake's whole breakdown once the proxy has reported it (a moment after the first byte), or undefined after 5 s. */
async function wakePhases(host: BenchHost, name: string, previousAt: string | undefined): Promise<Record<string, number> | undefined> {
  return (await wakePhasesOf(host, name, previousAt))?.phases;
}

/** The wake's tier and whole breakdown (as wakePhases). */
async function wakePhasesOf(host: BenchHost, name: string, previousAt: string | undefined): Promise<{ tier: string; phases: Record<string, number> } | undefined> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const w = (await host.must('GET', `/v1/instances/${name}`)).last_wake;
    if (w && w.at !== previousAt && w.phases_ms?.total !== undefined) return { tier: w.tier as string, phases: w.phases_ms as Record<string, number> };
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

/** p50 of each phase over the runs (and how many runs had a breakdown). */
export function phaseMedians(runs: WakeRuns | undefined): Record<string, number> | null {
  if (!runs || runs.phases.length === 0) return null;
  const out: Record<string, number> = {};
  for (const k of Object.keys(runs.phases[0]!)) out[k] = Number(percentile(runs.phases.map((p) => p[k] ?? 0), 50).toFixed(3));
  return { ...out, n: runs.phases.length };
}
