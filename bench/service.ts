// Services (issue 14): a burst of N concurrent requests (default 1,000) against
// a service at zero (`--autoscale min=0,max=4`) beside the same burst against a
// single scale-to-zero instance at zero, in the same run, taking turns (both the
// minimal static hello server, which serves one connection at a time): answers,
// wakes, p50/p99 to the first byte. Then a rolling deploy of a 3-replica service
// under a steady load (a request every 5 ms, each on a new connection): its
// duration, the requests and failures during it, p99 during against p99 before.
// details.service_wake_ms / single_wake_ms: each round's wake durations (four
// cold restores at once share the cores, so each takes longer than one alone).
// The service's target-inflight is 1 by default (see below; --target 10 for the earlier shape).
//
// Writes bench/results/service.json: {"accel", "results": {"burst_service": {requests, ok,
// wakes, p50_ms, p99_ms}, "burst_single": {…}, "deploy": {duration_ms, requests, failed,
// p99_ms_before, p99_ms_during}}, "details": {...}}.
//   node dist/bench/service.js [--burst N] [--rounds N] [--target N] [--max N]
import http from 'node:http';
import os from 'node:os';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { BenchHost } from './flickd-host.js';
import { argValue, percentile, printTable, writeResults } from './lib.js';

const IMAGE = 'bench/hello:1';
const NEXT = 'bench/hello:2';
const COOLDOWN_MS = 1000;

interface Burst {
  requests: number;
  ok: number;
  wakes: number;
  p50_ms: number;
  p99_ms: number;
}

const log = (line: string) => console.log(`service: ${line}`);

/** `n` requests at once through the proxy to `host`, each on its own connection, timed to its first byte. */
async function fire(port: number, host: string, n: number): Promise<{ ok: number[]; statuses: Record<string, number> }> {
  const t0 = performance.now();
  const ok: number[] = [];
  const statuses: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<void>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host }, timeout: 120_000 }, (res) => {
          const ms = performance.now() - t0;
          const k = String(res.statusCode);
          statuses[k] = (statuses[k] ?? 0) + 1;
          if (res.statusCode === 200) ok.push(ms);
          res.resume();
          res.on('end', resolve);
          res.on('error', () => resolve());
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (err: NodeJS.ErrnoException) => {
          const k = err.code ?? err.message;
          statuses[k] = (statuses[k] ?? 0) + 1;
          resolve();
        });
      }),
    ),
  );
  return { ok, statuses };
}

/** A request every `everyMs` until `stop` resolves: latencies of the 200s and the count of the rest. */
async function steady(port: number, host: string, stop: Promise<unknown>, everyMs = 5): Promise<{ ok: number[]; failed: number }> {
  let done = false;
  void stop.finally(() => (done = true));
  const shots: Array<Promise<number | undefined>> = [];
  while (!done && shots.length < 50_000) {
    const t0 = performance.now();
    shots.push(
      new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host }, timeout: 30_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - t0 : undefined));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => resolve(undefined));
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  const all = await Promise.all(shots);
  const ok = all.filter((x): x is number => x !== undefined);
  return { ok, failed: all.length - ok.length };
}

async function deployUnderLoad(host: BenchHost): Promise<{ duration_ms: number; requests: number; failed: number; p99_ms_before: number; p99_ms_during: number }> {
  await host.must('POST', '/v1/services', { image: IMAGE, name: 'dep', replicas: 3 });
  for (const m of (await host.must('GET', '/v1/services/dep')).instances as Array<{ id: string }>) await host.waitFor(m.id, 'running');
  const before = await steady(host.proxyPort, 'dep.localhost', new Promise((resolve) => setTimeout(resolve, 5_000)));
  const t0 = performance.now();
  const deploying = host.must('POST', '/v1/services/dep/deploy', { image: NEXT });
  const during = await steady(host.proxyPort, 'dep.localhost', deploying);
  await deploying;
  const r = (x: number) => Number(x.toFixed(1));
  return { duration_ms: r(performance.now() - t0), requests: during.ok.length + during.failed, failed: during.failed, p99_ms_before: r(percentile(before.ok, 99)), p99_ms_during: r(percentile(during.ok, 99)) };
}

async function wakesOf(host: BenchHost, ids: string[]): Promise<number> {
  let n = 0;
  for (const id of ids) n += (await host.must('GET', `/v1/instances/${id}`)).wakes as number;
  return n;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function summary(n: number, ok: number[], wakes: number): Burst {
  const r = (x: number) => Number(x.toFixed(1));
  return { requests: n, ok: ok.length, wakes, p50_ms: r(percentile(ok, 50)), p99_ms: r(percentile(ok, 99)) };
}

async function main(): Promise<void> {
  const n = Number(argValue(process.argv, 'burst') ?? 1000);
  const rounds = Number(argValue(process.argv, 'rounds') ?? 2);
  // target-inflight 1: the minimal server serves one connection at a time (Cloud Run's concurrency 1 for such an
  // app), so a member handed more while the others wake only queues them in its guest's backlog (128), where
  // the proxy can no longer give them to the member awake first. Paired runs at load 12-16: 0.45 and 0.93 of
  // the single instance's p99 with target 1, 1.12 and 1.30 with target 10.
  const target = Number(argValue(process.argv, 'target') ?? 1);
  // The shape is max=4; fewer members than 4 is a lever on 2 cores (fewer restores at once).
  const MAX = Number(argValue(process.argv, 'max') ?? 4);
  const accel = await new QemuDriver({ log: () => {} }).accelerator();
  const host = await BenchHost.start({ tag: 'bsvc-', pool: '10.224.0.0/22', log });
  try {
    await host.pushMinimal(IMAGE);
    await host.must('POST', '/v1/instances', { image: IMAGE, name: 'single', scale_to_zero: { policy: 'on', cooldown_time_ms: COOLDOWN_MS } });
    await host.waitFor('single', 'running');
    await host.must('POST', '/v1/services', { image: IMAGE, name: 'svc', autoscale: { min: 0, max: MAX, target_inflight: target, cooldown_time_ms: COOLDOWN_MS } });
    const members = ((await host.must('GET', '/v1/services/svc')).instances as Array<{ id: string }>).map((m) => m.id);
    const single: { ok: number[]; wakes: number; statuses: Record<string, number> }[] = [];
    const service: typeof single = [];
    const wakeMs: number[][] = [];
    const singleWakeMs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // Taking turns, each from zero: every instance in cold standby first.
      await host.must('PUT', '/v1/instances/single/suspend?tier=cold');
      await host.waitFor('single', 'standby', 60_000);
      const w0 = await wakesOf(host, ['single']);
      const a = await fire(host.proxyPort, 'single.localhost', n);
      single.push({ ...a, wakes: (await wakesOf(host, ['single'])) - w0 });
      singleWakeMs.push(Math.round(((await host.must('GET', '/v1/instances/single')).last_wake as { duration_ms: number } | null)?.duration_ms ?? NaN));
      log(`round ${round + 1}: single instance: ${a.ok.length}/${n} ok, p99 ${percentile(a.ok, 99).toFixed(0)} ms ${JSON.stringify(a.statuses)}`);

      for (const id of members) await host.api('PUT', `/v1/instances/${id}/suspend?tier=cold`);
      await until('the service at zero', async () => (await host.must('GET', '/v1/services/svc')).awake === 0);
      for (const id of members) await host.waitFor(id, 'standby', 60_000);
      const v0 = await wakesOf(host, members);
      const e0 = ((await host.must('GET', '/v1/services/svc')).scale_events as { up: number } | null)?.up ?? 0;
      const b = await fire(host.proxyPort, 'svc.localhost', n);
      service.push({ ...b, wakes: (await wakesOf(host, members)) - v0 });
      // How long each member's wake took this round (from its scale-up event): four cold restores share the cores.
      const events = (await host.must('GET', '/v1/services/svc')).scale_events as { up: number; recent: Array<{ direction: string; reason: string }> };
      const ups = events.recent.filter((e) => e.direction === 'up').slice(-(events.up - e0));
      wakeMs.push(ups.map((e) => Number(/(\d+) ms\)/.exec(e.reason)?.[1] ?? NaN)));
      log(`round ${round + 1}: service (max ${MAX}): ${b.ok.length}/${n} ok, p99 ${percentile(b.ok, 99).toFixed(0)} ms ${JSON.stringify(b.statuses)}`);
    }
    // The median round of each by p99 (of two, the better one), so one slow round on a shared machine does not decide.
    const pick = (rs: typeof single) => [...rs].sort((x, y) => percentile(x.ok, 99) - percentile(y.ok, 99))[Math.floor((rs.length - 1) / 2)]!;
    const s = pick(single);
    const v = pick(service);
    await host.pushMinimal(NEXT);
    const deploy = await deployUnderLoad(host);
    log(`deploy of 3 replicas under load: ${deploy.duration_ms.toFixed(0)} ms, ${deploy.failed}/${deploy.requests} failed, p99 ${deploy.p99_ms_during} ms during vs ${deploy.p99_ms_before} before`);
    const results = { burst_service: summary(n, v.ok, v.wakes), burst_single: summary(n, s.ok, s.wakes), deploy };
    printTable([
      ['rolling deploy, 3 replicas, a request every 5 ms', 'duration ms', 'requests', 'failed', 'p99 before', 'p99 during'],
      ['', deploy.duration_ms, deploy.requests, deploy.failed, deploy.p99_ms_before, deploy.p99_ms_during],
    ]);
    printTable([
      ['burst at zero', 'requests', 'ok', 'wakes', 'p50 ms', 'p99 ms'],
      [`service, autoscale max=${MAX}, target ${target}`, n, results.burst_service.ok, results.burst_service.wakes, results.burst_service.p50_ms, results.burst_service.p99_ms],
      ['single instance', n, results.burst_single.ok, results.burst_single.wakes, results.burst_single.p50_ms, results.burst_single.p99_ms],
    ]);
    const ratio = results.burst_single.p99_ms > 0 ? results.burst_service.p99_ms / results.burst_single.p99_ms : null;
    console.log(`service p99 / single p99 = ${ratio?.toFixed(2)} (goal ≤ 0.5); accelerator: ${accel}; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (a shared machine)`);
    const details = {
      app: 'minimal static hello server (one connection at a time)',
      max: MAX,
      target_inflight: target,
      cooldown_ms: COOLDOWN_MS,
      rounds,
      p99_ratio: ratio === null ? null : Number(ratio.toFixed(3)),
      statuses: { service: service.map((r) => r.statuses), single: single.map((r) => r.statuses) },
      rounds_p99_ms: { service: service.map((r) => Number(percentile(r.ok, 99).toFixed(1))), single: single.map((r) => Number(percentile(r.ok, 99).toFixed(1))) },
      service_wake_ms: wakeMs,
      single_wake_ms: singleWakeMs,
      deploy_p99_ratio: deploy.p99_ms_before > 0 ? Number((deploy.p99_ms_during / deploy.p99_ms_before).toFixed(2)) : null,
      loadavg: os.loadavg(),
    };
    console.log(`results in ${await writeResults('service', { accel, results, details })}`);
  } finally {
    await host.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
