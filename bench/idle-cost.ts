// What N idle copies of the node app cost this host, three ways, in one run:
// Flick standby instances (cold: no process), idle podman + runc containers
// (host network, as bench/peers.ts starts them) and bare `node server.js`
// processes. RAM per copy is the drop of MemAvailable over the N (the
// process's PSS beside it where there is one); CPU per copy is the CPU time
// of the processes that keep the copies (flickd for Flick; node and conmon for
// containers) over a window. Then the break-even: the share of a day an app may
// be awake (as a running Flick instance, its PSS measured on a few woken ones)
// for Flick to cost less RAM than the always-on container, and the cold wake it
// pays on each waking. Used by bench/density.ts ("idle_cost" in density.json).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from '../src/network/free-port.js';
import { APP_PORT, type BenchHost, firstByteOnceListening, meminfo, pssBytes, rssBytes, settle } from './flickd-host.js';
import { percentile, processCpuUs } from './lib.js';
import { appCopy, CONTAINER_IMAGE, ensureContainerImage, STORAGE, ULIMITS } from './peers.js';

const run = promisify(execFile);
const CPU_WINDOW_MS = 20_000;
const round = (x: number, d = 1) => Number(x.toFixed(d));

export interface CopyCost {
  copies: number;
  ram_bytes_each: number;
  pss_bytes_each: number | null;
  cpu_percent_each: number;
}

export interface IdleCost {
  n: number;
  standby: CopyCost & { flickd_rss_growth_bytes_each: number };
  container: CopyCost;
  bare_process: CopyCost;
  running_flick_pss_bytes_each: number | null;
  standby_ram_bytes_each: number;
  container_ram_bytes_each: number;
  standby_ram_share_of_container: number;
  awake_fraction_break_even: number;
  wake_cold_ms: number | null;
  measure: string;
}

/** CPU of `pids` over the window, as the mean share of one core per copy. */
async function cpuPerCopy(pids: number[], copies: number): Promise<number> {
  const read = (pid: number) => {
    try {
      return processCpuUs(pid);
    } catch {
      return 0;
    }
  };
  const before = pids.map(read);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, CPU_WINDOW_MS));
  const us = pids.reduce((sum, pid, i) => sum + read(pid) - before[i]!, 0);
  return round((us / ((performance.now() - t0) * 1000) / copies) * 100, 4);
}

const mean = (xs: number[]) => (xs.length > 0 ? Math.round(xs.reduce((a, b) => a + b, 0) / xs.length) : null);

/** N idle containers of the app: RAM, PSS (node + conmon) and CPU each. */
async function containers(n: number, log: (l: string) => void): Promise<CopyCost> {
  await ensureContainerImage(log);
  await settle();
  const avail0 = meminfo('MemAvailable');
  const names: string[] = [];
  const pids: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const name = `flick-bench-idle-${process.pid}-${i}`;
      names.push(name);
      await run('podman', [...STORAGE, 'run', '-d', '--rm', '--runtime', 'runc', '--network', 'host', ...ULIMITS, '--name', name, '-e', `PORT=${port}`, CONTAINER_IMAGE]);
      await firstByteOnceListening({ host: '127.0.0.1', port }, performance.now(), 60_000);
      const { stdout } = await run('podman', [...STORAGE, 'inspect', '--format', '{{.State.Pid}} {{.State.ConmonPid}}', name]);
      pids.push(...stdout.trim().split(/\s+/).map(Number).filter((p) => p > 0));
    }
    await settle();
    const drop = avail0 - meminfo('MemAvailable');
    const pss = pids.map(pssBytes).filter((x): x is number => x !== undefined);
    const cpu = await cpuPerCopy(pids, n);
    return { copies: n, ram_bytes_each: Math.round(drop / n), pss_bytes_each: pss.length > 0 ? Math.round(pss.reduce((a, b) => a + b, 0) / n) : null, cpu_percent_each: cpu };
  } finally {
    for (let i = 0; i < names.length; i += 8) await Promise.all(names.slice(i, i + 8).map((nm) => run('podman', [...STORAGE, 'rm', '-f', '-t', '0', nm]).catch(() => {})));
  }
}

/** N idle `node server.js` of the app's files (copied out of the image): RAM, PSS and CPU each. */
async function bareProcesses(n: number): Promise<CopyCost> {
  const app = await appCopy();
  const children: ChildProcess[] = [];
  try {
    await settle();
    const avail0 = meminfo('MemAvailable');
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const child = spawn(process.execPath, ['server.js'], { cwd: app.dir, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
      children.push(child);
      await firstByteOnceListening({ host: '127.0.0.1', port }, performance.now(), 30_000, () => child.exitCode === null);
    }
    await settle();
    const drop = avail0 - meminfo('MemAvailable');
    const pids = children.map((c) => c.pid!);
    const pss = mean(pids.map(pssBytes).filter((x): x is number => x !== undefined));
    const cpu = await cpuPerCopy(pids, n);
    return { copies: n, ram_bytes_each: Math.round(drop / n), pss_bytes_each: pss, cpu_percent_each: cpu };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    app.dispose();
  }
}

/** N node instances in cold standby on `host` (the node image pushed as `image`), then a few woken. */
async function standby(host: BenchHost, image: string, n: number): Promise<{ cost: CopyCost & { flickd_rss_growth_bytes_each: number }; runningPss: number | null; wakeMs: number | null }> {
  const rss = (): number => rssBytes(host.pid!) ?? 0;
  const create = (name: string) =>
    host.must('POST', '/v1/instances', { image, name, memory_mb: 256, ports: [{ port: APP_PORT, protocol: 'http' }], scale_to_zero: { policy: 'on', cooldown_time_ms: 1 } });
  // The first makes the template (a boot); it is not one of the N, so the N pay only for being records.
  await create('idle-tpl');
  await host.waitFor('idle-tpl', 'standby', 600_000);
  await settle();
  const avail0 = meminfo('MemAvailable');
  const rss0 = rss();
  for (let i = 0; i < n; i++) await create(`idle-${i}`);
  for (let i = 0; i < n; i++) await host.waitFor(`idle-${i}`, 'standby', 300_000);
  await settle();
  const drop = avail0 - meminfo('MemAvailable');
  const growth = rss() - rss0;
  const cpu = await cpuPerCopy([host.pid!], n);
  // A few woken (cold wake: a clone restored from the template), their PSS once running.
  const wakes: number[] = [];
  const pss: number[] = [];
  for (let i = 0; i < Math.min(3, n); i++) {
    wakes.push(await host.firstByte(`idle-${i}`));
    const view = await host.must('GET', `/v1/instances/idle-${i}`);
    const p = view.pid ? pssBytes(view.pid) : undefined;
    if (p !== undefined) pss.push(p);
  }
  await Promise.all(['idle-tpl', ...Array.from({ length: n }, (_, i) => `idle-${i}`)].map((nm) => host.api('DELETE', `/v1/instances/${nm}?force=true`)));
  return {
    cost: { copies: n, ram_bytes_each: Math.round(drop / n), pss_bytes_each: null, cpu_percent_each: cpu, flickd_rss_growth_bytes_each: Math.round(growth / n) },
    runningPss: mean(pss),
    wakeMs: wakes.length > 0 ? round(percentile(wakes, 50)) : null,
  };
}

/**
 * `standbyRecordBytes`: flickd's RSS growth per record over a large standby
 * phase (density's N), the cost of one standby instance that N = 50 is too few
 * to see on a host whose MemAvailable moves by hundreds of MB meanwhile.
 */
export async function idleCost(host: BenchHost, nodeImage: string, n: number, log: (l: string) => void, standbyRecordBytes = 0): Promise<IdleCost> {
  log(`idle cost: ${n} node apps as Flick standby instances`);
  const s = await standby(host, nodeImage, n);
  log(`  ${JSON.stringify(s.cost)}; running PSS ${s.runningPss}, cold wake ${s.wakeMs} ms`);
  log(`idle cost: ${n} idle podman + runc containers`);
  const c = await containers(n, log);
  log(`  ${JSON.stringify(c)}`);
  log(`idle cost: ${n} bare node processes`);
  const b = await bareProcesses(n);
  log(`  ${JSON.stringify(b)}`);
  return idleCostFigures(n, s, c, b, standbyRecordBytes);
}

/** The derived figures: per-copy RAM as PSS where there is a process (MemAvailable is too noisy on a shared host), standby as flickd's growth per record. */
export function idleCostFigures(
  n: number,
  s: { cost: IdleCost['standby']; runningPss: number | null; wakeMs: number | null },
  c: CopyCost,
  b: CopyCost,
  standbyRecordBytes: number,
): IdleCost {
  const standbyRam = Math.max(0, s.cost.flickd_rss_growth_bytes_each, standbyRecordBytes);
  const containerRam = c.pss_bytes_each ?? c.ram_bytes_each;
  const running = s.runningPss ?? containerRam;
  // Flick's RAM over a day: standby for (1 - f), running for f; the container's: always.
  const breakEven = running <= standbyRam ? 1 : Math.min(1, Math.max(0, (containerRam - standbyRam) / (running - standbyRam)));
  return {
    n,
    standby: s.cost,
    container: c,
    bare_process: b,
    running_flick_pss_bytes_each: s.runningPss,
    standby_ram_bytes_each: standbyRam,
    container_ram_bytes_each: containerRam,
    standby_ram_share_of_container: round(standbyRam / containerRam, 5),
    awake_fraction_break_even: round(breakEven, 3),
    wake_cold_ms: s.wakeMs,
    measure:
      'ram_bytes_each: drop of MemAvailable over the N copies once steady (noisy on a shared host; can be negative); pss_bytes_each: PSS of the copies\' processes (container: node + conmon); standby_ram_bytes_each: flickd RSS growth per record (the larger of this phase and the big standby phase, floor 0); container_ram_bytes_each: container PSS; CPU each: CPU time of the processes keeping the copies (flickd; node + conmon; node) over 20 s / N; awake_fraction_break_even: the share of a day an app may run (as a woken Flick clone, its PSS) before its RAM-time exceeds an always-on idle container\'s',
  };
}
