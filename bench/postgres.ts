// PostgreSQL on a volume, through a real flickd (issue 13): examples/postgres
// (Debian's postgresql-15, built once and cached: src/volumes/testing.ts) on a
// 1 GiB volume with stateful scale to zero, and its peer in the same run, the
// host's own PostgreSQL 15 started cold as a process. Each figure times the
// same client (`psql -c 'SELECT 1'` over TCP), so both sides pay its start.
//
//   wake → first query (hot: paused VMM; cold: own state restored, primed: ahead of the wake, or
//   unprimed: on the wake's path, interleaved), through the proxy
//   host: `pg_ctl start` → first query answered (pg_isready polled every 5 ms)
//   pgbench TPS through the proxy vs the instance's address directly (alternating rounds)
//   N standby instances, each on its own volume: host RAM and disk each
//   flick fork: of the standby database (state copied, volume cloned) and of the running one
//   (paused, saved with its RAM and disk copied, resumed): the fork's time, then fork → first
//   query answered by the fork (its cold wake included), and the disk a fork takes before it runs
//   shared forks (the density path): N forks of the standby database sharing one copy of its state,
//   a volume branch each: time and disk per fork, the shared template once; ten woken, each one's first
//   SELECT 1 (beside the source's cold wake, same query) and its second wake (its own state by then)
//   Every timed wake is checked to be one (the wake counters), and its breakdown kept (last_wake).
// Writes bench/results/postgres.json:
//   {"accel", "results": {"wake_hot_ms", "wake_cold_ms", "host_cold_start_ms" (each {p50,p90,p99,n}),
//    "pgbench_tps_proxy", "pgbench_tps_direct", "standby_instances", "standby_ram_bytes",
//    "standby_disk_bytes_each", "fork_ms"}, "details": {...}}
//
//   node dist/bench/postgres.js [--n 20] [--standby 3] [--forks 5] [--shared-forks 1000] [--shared-woken 10] [--pgbench-seconds 10] [--pgbench-rounds 3]
//   [--only-wakes]: the wakes and the host's cold starts alone, written as details.wakes_only_run beside the last full run's figures
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../src/network/free-port.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { psql, pushPostgresImage } from '../src/volumes/testing.js';
import { BenchHost, diskBytes, meminfo, rssBytes, settle } from './flickd-host.js';
import { coldWake, dist, HostPostgres, phaseP50, round, suspend, timed, timedWake, wakeQuery } from './postgres-wakes.js';
import { argValue, percentile, printTable, writeResults } from './lib.js';

const exec = promisify(execFile);
const IMAGE = 'postgres:15';
const log = (l: string) => console.log(l);

async function pgbench(host: string, port: number, seconds: number): Promise<number> {
  const r = await exec('pgbench', ['-h', host, '-p', String(port), '-U', 'postgres', '-c', '4', '-j', '2', '-T', String(seconds), 'postgres'], { timeout: (seconds + 120) * 1000 });
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (!m) throw new Error(`pgbench said: ${r.stdout}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const n = Number(argValue(process.argv, 'n') ?? 20);
  const standbyN = Number(argValue(process.argv, 'standby') ?? 3);
  const benchSeconds = Number(argValue(process.argv, 'pgbench-seconds') ?? 10);
  const benchRounds = Number(argValue(process.argv, 'pgbench-rounds') ?? 3);
  const forkN = Number(argValue(process.argv, 'forks') ?? 5);
  const sharedN = Number(argValue(process.argv, 'shared-forks') ?? 1000);
  const sharedWoken = Number(argValue(process.argv, 'shared-woken') ?? 10);
  const host = await BenchHost.start({ tag: 'fbp', pool: '10.220.0.0/22', args: ['--hot-standby-budget', '4G', '--ready-timeout', '600000'], log });
  const hostPg = new HostPostgres();
  try {
    log('pushing the PostgreSQL image (built once and cached)');
    await pushPostgresImage(host.base, host.token, IMAGE, log);
    const port = await freePort();
    await host.must('POST', '/v1/volumes', { name: 'pgdata', size: '1G' });
    await host.must('POST', '/v1/instances', {
      image: IMAGE,
      name: 'pg',
      memory_mb: 256,
      ports: [{ port, guest_port: 5432, protocol: 'tcp' }],
      volumes: [{ name: 'pgdata', path: '/data' }],
      scale_to_zero: { policy: 'idle', cooldown_time_ms: 600_000, stateful: true },
    });
    const booted = await host.waitFor('pg', 'running', 600_000);
    const accel = /using (KVM|TCG)/i.exec(fs.readFileSync(path.join(host.dir, 'flickd.log'), 'utf8'))?.[1]?.toLowerCase() ?? 'tcg';
    await psql('127.0.0.1', port, 'SELECT 1');

    // Wakes: suspend explicitly (the cooldown is long), then time the first query through the proxy.
    // Cold wakes both ways, interleaved: primed (flickd's default once a database slept ~1 s) and
    // unprimed (restored on the wake's path).
    const hot: number[] = [];
    const cold: number[] = [];
    const unprimed: number[] = [];
    const warm: number[] = [];
    const coldWakes: Array<{ phases: Record<string, number> }> = [];
    const unprimedWakes: Array<{ phases: Record<string, number> }> = [];
    for (let i = 0; i < n; i++) {
      const u = await coldWake(host, 'pg', port, 'unprimed');
      unprimed.push(u.ms);
      unprimedWakes.push(u);
      warm.push(await timed(() => psql('127.0.0.1', port, 'SELECT 1')));
      const c = await coldWake(host, 'pg', port, 'primed');
      cold.push(c.ms);
      coldWakes.push(c);
      warm.push(await timed(() => psql('127.0.0.1', port, 'SELECT 1')));
      hot.push((await wakeQuery(host, 'pg', port, 'hot')).ms);
      warm.push(await timed(() => psql('127.0.0.1', port, 'SELECT 1')));
      log(`round ${i + 1}/${n}: cold primed ${round(cold.at(-1)!)} ms, unprimed ${round(unprimed.at(-1)!)} ms, hot ${round(hot.at(-1)!)} ms, warm ${round(warm.at(-1)!)} ms`);
    }
    const loadDuringWakes = os.loadavg();

    // The peer: the host's own PostgreSQL, started cold as a process n times.
    await hostPg.init();
    const hostCold: number[] = [];
    for (let i = 0; i < n; i++) {
      hostCold.push(await hostPg.coldStart());
      hostPg.stop();
    }

    if (process.argv.includes('--only-wakes')) {
      // The wakes alone (a quieter moment than the full run's): written beside the full run's figures.
      const run = { at: new Date().toISOString(), load_average: loadDuringWakes.map((x) => round(x, 2)), wake_cold_primed_ms: dist(cold), wake_cold_unprimed_ms: dist(unprimed), wake_hot_ms: dist(hot), host_cold_start_ms: dist(hostCold), warm_select_ms: dist(warm), wake_phases_p50_ms: { cold_primed: phaseP50(coldWakes), cold_unprimed: phaseP50(unprimedWakes) } };
      printTable([
        [`PostgreSQL 15 wakes only (${accel.toUpperCase()}, load ${run.load_average[0]})`, 'p50', 'p90', 'p99', 'n'],
        ['wake cold, primed → SELECT 1 (ms, proxy)', ...p3(cold), cold.length],
        ['wake cold, unprimed → SELECT 1 (ms, proxy)', ...p3(unprimed), unprimed.length],
        ['wake hot → SELECT 1 (ms, proxy)', ...p3(hot), hot.length],
        ['host pg_ctl start → SELECT 1 (ms)', ...p3(hostCold), hostCold.length],
        ['warm SELECT 1 (ms, proxy)', ...p3(warm), warm.length],
      ]);
      log(`phases p50: ${JSON.stringify(run.wake_phases_p50_ms)}`);
      const prev = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'bench', 'results', 'postgres.json'), 'utf8'));
      log(`wrote ${await writeResults('postgres', { ...prev, details: { ...prev.details, wakes_only_run: run } })}`);
      return;
    }

    // pgbench through the proxy and directly, alternating.
    const direct = (await host.must('GET', '/v1/instances/pg')).address as string;
    await exec('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'], { timeout: 600_000 });
    const tpsProxy: number[] = [];
    const tpsDirect: number[] = [];
    // The second peer: the same hop through the barest relay Node has (a pipe each way, no delay), so
    // what the hop itself costs on this machine is told from what Flick's proxy adds to it.
    const relay = await bareRelay(direct, 5432);
    const tpsRelay: number[] = [];
    try {
      for (let i = 0; i < benchRounds; i++) {
        tpsProxy.push(await pgbench('127.0.0.1', port, benchSeconds));
        tpsDirect.push(await pgbench(direct, 5432, benchSeconds));
        tpsRelay.push(await pgbench('127.0.0.1', relay.port, benchSeconds));
      }
    } finally {
      relay.close();
    }

    const forks = await measureForks(host, port, forkN);
    const shared = await measureSharedForks(host, sharedN, Math.min(sharedN, sharedWoken));

    // Standby instances, each with its own volume: every one boots (initdb) once, then goes cold.
    const availBefore = meminfo('MemAvailable');
    const diskBefore = diskBytes(host.dataDir);
    for (let i = 0; i < standbyN; i++) {
      const name = `pg${i}`;
      await host.must('POST', '/v1/volumes', { name: `v${i}`, size: '1G' });
      await host.must('POST', '/v1/instances', { image: IMAGE, name, memory_mb: 256, ports: [{ port: await freePort(), guest_port: 5432, protocol: 'tcp' }], volumes: [{ name: `v${i}`, path: '/data' }], scale_to_zero: { policy: 'idle', cooldown_time_ms: 600_000, stateful: true } });
      await host.waitFor(name, 'running', 600_000);
      await host.must('PUT', `/v1/instances/${name}/suspend?tier=cold`);
      log(`standby ${i + 1}/${standbyN}`);
    }
    const standbyRam = Math.max(0, availBefore - meminfo('MemAvailable'));
    const standbyDiskEach = Math.round((diskBytes(host.dataDir) - diskBefore) / Math.max(1, standbyN));

    const results = {
      wake_hot_ms: dist(hot),
      wake_cold_ms: dist(cold),
      host_cold_start_ms: dist(hostCold),
      pgbench_tps_proxy: round(percentile(tpsProxy, 50)),
      pgbench_tps_direct: round(percentile(tpsDirect, 50)),
      standby_instances: standbyN,
      standby_ram_bytes: standbyRam,
      standby_disk_bytes_each: standbyDiskEach,
      fork_ms: dist(forks.cold),
    };
    printTable([
      ['PostgreSQL 15 (' + accel.toUpperCase() + ', shared 2-core machine)', 'p50', 'p90', 'p99', 'n'],
      ['wake hot → SELECT 1 answered (ms, proxy)', results.wake_hot_ms.p50, results.wake_hot_ms.p90, results.wake_hot_ms.p99, hot.length],
      ['wake cold → SELECT 1 answered (ms, proxy; primed: its saved state restored paused ahead)', results.wake_cold_ms.p50, results.wake_cold_ms.p90, results.wake_cold_ms.p99, cold.length],
      ['wake cold, unprimed (restored on the wake) → SELECT 1 (ms, proxy)', ...p3(unprimed), unprimed.length],
      ['host pg_ctl start → SELECT 1 answered (ms)', results.host_cold_start_ms.p50, results.host_cold_start_ms.p90, results.host_cold_start_ms.p99, hostCold.length],
      ['warm SELECT 1 (ms, proxy, psql start included)', round(percentile(warm, 50)), round(percentile(warm, 90)), round(percentile(warm, 99)), warm.length],
    ]);
    printTable([
      ['pgbench (TPC-B, scale 1, 4 clients)', 'tps'],
      ['through the proxy', results.pgbench_tps_proxy],
      ['direct to the instance', results.pgbench_tps_direct],
      ['proxy / direct', `${round((100 * results.pgbench_tps_proxy) / results.pgbench_tps_direct)} %`],
      ['peer: a bare Node TCP relay on the host', round(percentile(tpsRelay, 50))],
      ['bare relay / direct', `${round((100 * percentile(tpsRelay, 50)) / results.pgbench_tps_direct)} %`],
    ]);
    printTable([
      ['standby PostgreSQL instances (cold, own volume each)', 'value'],
      ['instances', standbyN],
      ['host RAM, all of them (MemAvailable drop)', `${round(standbyRam / 2 ** 20)} MiB`],
      ['disk each (volume + saved state)', `${round(standbyDiskEach / 2 ** 20)} MiB`],
    ]);
    printTable([
      ['flick fork of the database (TCG)', 'p50', 'p90', 'p99', 'n'],
      ['fork of the standby instance (ms)', results.fork_ms.p50, results.fork_ms.p90, results.fork_ms.p99, forks.cold.length],
      ['fork of the running instance: paused, copied, resumed (ms)', ...p3(forks.live), forks.live.length],
      ['fork → its first query answered (ms, wake included)', ...p3(forks.firstQuery), forks.firstQuery.length],
      ['disk a standby fork takes (MiB: state copy + volume clone)', ...p3(forks.diskCold.map((b) => b / 2 ** 20)), forks.diskCold.length],
      ['disk a running fork takes (MiB: RAM copy + volume copy)', ...p3(forks.diskLive.map((b) => b / 2 ** 20)), forks.diskLive.length],
      ['shared fork of the standby instance (ms)', ...p3(shared.ms), shared.ms.length],
      ['shared fork → its first SELECT 1 (ms, woken from its copy of the shared state)', ...p3(shared.firstQuery), shared.firstQuery.length],
      ['  beside: cold wake → SELECT 1 of the source, this run (ms)', results.wake_cold_ms.p50, results.wake_cold_ms.p90, results.wake_cold_ms.p99, cold.length],
      ['shared fork, its second wake → SELECT 1 (ms, own state)', ...p3(shared.secondWake), shared.secondWake.length],
    ]);
    printTable([
      ['shared forks: the density path (TCG)', 'value'],
      ['disk per shared fork until it runs (record, folder, volume head)', `${round(shared.diskEach / 1024)} KiB`],
      ['the one shared template (state + RAM copy)', `${round(shared.templateBytes / 2 ** 20)} MiB`],
      ['shared forks in standby', `${shared.ms.length} in ${shared.seconds} s`],
      ['flickd RSS per shared fork in standby', `${round(shared.flickdRssEach / 1024)} KiB`],
      ['host MemAvailable drop, all of them', `${round(shared.memAvailableDrop / 2 ** 20)} MiB`],
    ]);
    const file = await writeResults('postgres', {
      accel,
      results,
      details: {
        machine: 'shared by 7 engineers running tests and builds at the same time: compare ratios within this run only',
        warm_select_ms: dist(warm),
        wake_cold_unprimed_ms: dist(unprimed),
        load_average_during_wakes: loadDuringWakes.map((x) => round(x, 2)),
        boot_to_running_ms: booted.started_at ? new Date(booted.started_at).getTime() - new Date(booted.created_at).getTime() : null,
        pgbench_rounds: { proxy: tpsProxy, direct: tpsDirect, bare_node_relay: tpsRelay },
        pgbench_tps_bare_node_relay: round(percentile(tpsRelay, 50)),
        samples: { wake_hot_ms: hot.map((x) => round(x)), wake_cold_ms: cold.map((x) => round(x)), wake_cold_unprimed_ms: unprimed.map((x) => round(x)), host_cold_start_ms: hostCold.map((x) => round(x)) },
        fork_live_ms: dist(forks.live),
        fork_to_first_query_ms: dist(forks.firstQuery),
        fork_disk_bytes: { standby_source: dist(forks.diskCold), running_source: dist(forks.diskLive) },
        fork_samples: { cold: forks.cold.map((x) => round(x)), live: forks.live.map((x) => round(x)) },
        shared_fork_ms: dist(shared.ms),
        shared_fork_disk_bytes_each: shared.diskEach,
        shared_fork_template_bytes: shared.templateBytes,
        shared_fork_first_query_ms: dist(shared.firstQuery),
        shared_fork_second_wake_ms: dist(shared.secondWake),
        wake_phases_p50_ms: { cold: phaseP50(coldWakes), cold_unprimed: phaseP50(unprimedWakes), shared_fork_first: shared.firstPhases },
        shared_fork_first_query_samples: shared.firstQuery.map((x) => round(x)),
        shared_forks: { instances: shared.ms.length, seconds: shared.seconds, flickd_rss_bytes_each: shared.flickdRssEach, mem_available_drop_bytes: shared.memAvailableDrop },
      },
    });
    log(`wrote ${file}`);
  } finally {
    hostPg.close();
    await host.close();
  }
}

const p3 = (xs: number[]): [number, number, number] => [round(percentile(xs, 50)), round(percentile(xs, 90)), round(percentile(xs, 99))];

/**
 * `n` forks of `pg` from standby and `n` while it runs (a query keeps it awake: its cooldown is
 * long). Each fork is woken by its first query, then removed with its volume.
 */
/** A TCP relay with nothing but two pipes (the peer of the proxy's hop); closes its connections with it. */
async function bareRelay(host: string, port: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port, noDelay: true });
    client.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

async function measureForks(host: BenchHost, port: number, n: number): Promise<{ cold: number[]; live: number[]; firstQuery: number[]; diskCold: number[]; diskLive: number[] }> {
  const out = { cold: [] as number[], live: [] as number[], firstQuery: [] as number[], diskCold: [] as number[], diskLive: [] as number[] };
  for (let i = 0; i < n; i++) {
    for (const mode of ['cold', 'live'] as const) {
      if (mode === 'cold') await suspend(host, 'pg', 'cold');
      else await psql('127.0.0.1', port, 'SELECT 1');
      const forkPort = await freePort();
      const name = `fork-${mode}-${i}`;
      const diskBefore = diskBytes(host.dataDir);
      let forked: any;
      const ms = await timed(async () => (forked = await host.must('POST', '/v1/instances/pg/fork', { name, ports: [{ port: forkPort, guest_port: 5432, protocol: 'tcp' }] })));
      if (forked.fork.mode !== mode) throw new Error(`fork ${name}: taken ${forked.fork.mode}, expected ${mode}`);
      (mode === 'cold' ? out.diskCold : out.diskLive).push(Math.max(0, diskBytes(host.dataDir) - diskBefore));
      (mode === 'cold' ? out.cold : out.live).push(ms);
      out.firstQuery.push(ms + (await timed(() => psql('127.0.0.1', forkPort, 'SELECT count(*) FROM pgbench_accounts'))));
      log(`fork ${name}: ${round(ms)} ms, first query after ${round(out.firstQuery.at(-1)!)} ms`);
      await host.must('DELETE', `/v1/instances/${name}?force=true`);
      await host.must('DELETE', `/v1/volumes/${name}-pgdata`);
    }
  }
  return out;
}

/**
 * The density path: `n` shared forks of the standby `pg` (one shared copy of its saved state, a
 * branch of one frozen layer of its volume each), in standby, each with a TCP port of its own.
 * Disk: what all of them added, less the shared template, per fork; RAM: flickd's RSS and the
 * host's MemAvailable before and after (standby forks have no process). A few are woken (from the
 * template, copy-on-write) and queried. They stay: removing a volume rescans every volume's backing
 * chain today (quadratic over 1,000), and the host is removed with its data at the end.
 */
async function measureSharedForks(host: BenchHost, n: number, woken: number): Promise<{ ms: number[]; diskEach: number; templateBytes: number; firstQuery: number[]; secondWake: number[]; firstPhases: Record<string, number>; flickdRssEach: number; memAvailableDrop: number; seconds: number }> {
  await suspend(host, 'pg', 'cold');
  await settle();
  const diskBefore = diskBytes(host.dataDir);
  const rss0 = rssBytes(host.pid!) ?? 0;
  const avail0 = meminfo('MemAvailable');
  const ms: number[] = [];
  const ports: number[] = [];
  const t0 = performance.now();
  const used = new Set<number>();
  for (let i = 0; i < n; i++) {
    // A port another fork's route holds is free to bind when its listener is on another address: pick each once.
    let port = await freePort();
    while (used.has(port)) port = await freePort();
    used.add(port);
    let forked: any;
    ms.push(await timed(async () => (forked = await host.must('POST', '/v1/instances/pg/fork', { name: `shared-${i}`, shared: true, ports: [{ port, guest_port: 5432, protocol: 'tcp' }] }))));
    if (forked.fork.mode !== 'shared') throw new Error(`shared-${i}: taken ${forked.fork.mode}`);
    ports.push(port);
    if ((i + 1) % 100 === 0) log(`  ${i + 1} shared forks, ${round(percentile(ms, 50))} ms p50 each`);
  }
  const seconds = (performance.now() - t0) / 1000;
  await settle();
  const flickdRssEach = Math.max(0, (rssBytes(host.pid!) ?? 0) - rss0) / n;
  const memAvailableDrop = Math.max(0, avail0 - meminfo('MemAvailable'));
  const templatesDir = path.join(host.dataDir, 'templates');
  const templateBytes = fs.readdirSync(templatesDir).filter((d) => d.startsWith('fork-')).reduce((sum, d) => sum + diskBytes(path.join(templatesDir, d)), 0);
  const diskEach = Math.max(0, diskBytes(host.dataDir) - diskBefore - templateBytes) / n;
  log(`${n} shared forks in ${round(seconds)} s: ${round(percentile(ms, 50))} ms p50 each, ${round(diskEach / 1024)} KiB of disk each, one template of ${round(templateBytes / 2 ** 20)} MiB; flickd RSS +${round(flickdRssEach / 1024)} KiB each`);
  // The same query as the cold wakes above: each fork's first wake (from its copy of the shared
  // state), then its second (from the state its first suspend saved).
  const first: Array<{ ms: number; phases: Record<string, number> }> = [];
  const secondWake: number[] = [];
  for (const [i, port] of ports.slice(0, woken).entries()) {
    first.push(await timedWake(host, `shared-${i}`, port, 'cold'));
    if ((await psql('127.0.0.1', port, 'SELECT count(*) FROM pgbench_accounts')).trim() !== '100000') throw new Error(`shared-${i} does not see the source's rows`);
    secondWake.push((await wakeQuery(host, `shared-${i}`, port, 'cold')).ms);
    log(`shared-${i}: first query ${round(first.at(-1)!.ms)} ms (${JSON.stringify(first.at(-1)!.phases)}), after its first suspend ${round(secondWake.at(-1)!)} ms`);
  }
  const firstQuery = first.map((w) => w.ms);
  return { ms, diskEach: Math.round(diskEach), templateBytes, firstQuery, secondWake, firstPhases: phaseP50(first), flickdRssEach: Math.round(flickdRssEach), memAvailableDrop, seconds: round(seconds) };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
