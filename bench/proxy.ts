// Benchmark of the ingress proxy's overhead: wrk against an upstream directly,
// then through the proxy (instance always awake), alternating, and the median of
// each. By default the upstream is a real instance (the minimal static server
// in a microVM) of a real flickd, and the proxy is flickd's own; --local
// measures the proxy component alone in this process against a local node
// server (or --upstream URL). Writes bench/results/proxy.json:
//   {"results": {"added_p50_ms", "rps_ratio"}, "details": {...}}
// Goals: added p50 ≤ 0.5 ms and ≥ 70 % of direct throughput. `proxy_cpu_us_per_request`
// (the proxy's own CPU time per request, from process.cpuUsage) is the number
// to compare across runs: the ratio depends on how busy the shared cores are.
//
// --service N measures the component with the host routed as a service of N
// members (every request balanced), writing bench/results/proxy-service.json.
//
//   node dist/bench/proxy.js [--local [--upstream http://HOST:PORT/path]] [--service N] [--runs N] [--duration 3s]
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { argValue, processCpuUs, printTable, writeResults } from './lib.js';
import { APP_PORT, BenchHost } from './flickd-host.js';
import { runPool } from '../src/network/run-scoped.js';
import { createProxy } from '../src/proxy/proxy.js';
import { RouteTable } from '../src/proxy/routes.js';
import type { Waker } from '../src/proxy/waker.js';

export interface ProxyBenchConfig {
  /** The upstream to measure; default: a local minimal node server. */
  upstream?: string;
  runs?: number;
  duration?: string;
  connections?: number;
  /** Route the host as a service of this many members (all at the upstream), so each request goes through the balancer. */
  members?: number;
}

export interface WrkResult {
  requests: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
}

export interface ProxyBenchResult {
  results: { added_p50_ms: number; rps_ratio: number };
  details: { upstream: string; wrk: string[]; direct: WrkResult; proxied: WrkResult; runs: number; proxy_cpu_us_per_request: number; mode?: string };
}

const run = promisify(execFile);

export async function benchProxy(config: ProxyBenchConfig = {}): Promise<ProxyBenchResult> {
  const runs = config.runs ?? 3;
  const wrkArgs = ['-t1', `-c${config.connections ?? 8}`, `-d${config.duration ?? '3s'}`, '--latency'];
  let child: ChildProcess | undefined;
  let upstream = config.upstream;
  const routes = new RouteTable();
  try {
    if (upstream === undefined) {
      const started = await startLocalUpstream();
      child = started.child;
      upstream = started.url;
    }
    const target = new URL(upstream);
    const never = new AbortController().signal;
    const waker: Waker = {
      ensureAwake: async () => ({ host: target.hostname, asleep: never }),
      requestStarted: () => {},
      requestFinished: () => {},
      isAwake: () => true,
    };
    const targetPort = Number(target.port || 80);
    if (config.members === undefined) routes.setHttp('bench', { instanceId: 'bench', targetPort });
    else routes.setService('bench', { service: 'bench', members: Array.from({ length: config.members }, (_, i) => `bench-${i}`), targetPort, targetInFlight: 10 });
    const proxy = await createProxy({ routes, waker, listen: { host: '127.0.0.1', port: 0 }, onError: () => {} });
    try {
      const proxied = `http://127.0.0.1:${proxy.address.port}${target.pathname}${target.search}`;
      const viaProxy = [...wrkArgs, '-H', 'Host: bench.localhost', proxied];
      const direct = [...wrkArgs, upstream];
      const { d, p, cpuPerRequest } = await alternate(direct, viaProxy, runs, () => { const u = process.cpuUsage(); return u.user + u.system; });
      return {
        results: { added_p50_ms: round(p.p50_ms - d.p50_ms), rps_ratio: round(p.rps / d.rps) },
        details: { upstream, wrk: wrkArgs, direct: d, proxied: p, runs, proxy_cpu_us_per_request: cpuPerRequest, ...(config.members !== undefined ? { mode: `the proxy component alone, the host a service of ${config.members} members (balanced, target 10)` } : {}) },
      };
    } finally {
      await proxy.close();
    }
  } finally {
    child?.kill('SIGKILL');
  }
}

/**
 * wrk at `direct` and `viaProxy`: each warmed for a second, then `runs` of
 * each, alternating, so drift on a shared machine hits both alike. `cpuUs`
 * reads the proxy's CPU time (µs), taken around the proxied runs.
 */
async function alternate(direct: string[], viaProxy: string[], runs: number, cpuUs: () => number): Promise<{ d: WrkResult; p: WrkResult; cpuPerRequest: number }> {
  await wrk([...direct.slice(0, 2), '-d1s', ...direct.slice(3)]);
  await wrk([...viaProxy.slice(0, 2), '-d1s', ...viaProxy.slice(3)]);
  const directRuns: WrkResult[] = [];
  const proxiedRuns: WrkResult[] = [];
  let proxyCpuUs = 0;
  for (let i = 0; i < runs; i++) {
    directRuns.push(await wrk(direct));
    const before = cpuUs();
    proxiedRuns.push(await wrk(viaProxy));
    proxyCpuUs += cpuUs() - before;
  }
  const proxiedRequests = proxiedRuns.reduce((sum, r) => sum + r.requests, 0);
  return { d: medianResult(directRuns), p: medianResult(proxiedRuns), cpuPerRequest: round(proxyCpuUs / proxiedRequests) };
}

/** wrk directly at a running instance's address and through its flickd's proxy, alternating, in one run. */
export async function benchProxyThroughFlickd(config: Omit<ProxyBenchConfig, 'upstream'> = {}): Promise<ProxyBenchResult> {
  const runs = config.runs ?? 3;
  const wrkArgs = ['-t1', `-c${config.connections ?? 8}`, `-d${config.duration ?? '3s'}`, '--latency'];
  const host = await BenchHost.start({ tag: 'fbp', pool: runPool(219) });
  try {
    await host.pushMinimal('bench/hello-min:1');
    await host.must('POST', '/v1/instances', { image: 'bench/hello-min:1', name: 'wrk', memory_mb: 128, ports: [{ port: APP_PORT, protocol: 'http' }] });
    const view = await host.waitFor('wrk', 'running');
    // Measure once flickd is quiet: right after a create it refills its namespace pool (ip and
    // nft processes), which the CPU per request would otherwise count (~245 µs a request at TCG).
    await quiet(host.pid!);
    const upstream = `http://${view.address}:${APP_PORT}/`;
    const direct = [...wrkArgs, upstream];
    const viaProxy = [...wrkArgs, '-H', 'Host: wrk.localhost', `http://127.0.0.1:${host.proxyPort}/`];
    const { d, p, cpuPerRequest } = await alternate(direct, viaProxy, runs, () => processCpuUs(host.pid!));
    return {
      results: { added_p50_ms: round(p.p50_ms - d.p50_ms), rps_ratio: round(p.rps / d.rps) },
      details: { mode: 'a real instance (minimal static server in a microVM) through flickd\'s proxy vs at its address', upstream, wrk: wrkArgs, direct: d, proxied: p, runs, proxy_cpu_us_per_request: cpuPerRequest },
    };
  } finally {
    await host.close();
  }
}

/** Resolves once process `pid` used under 2 % of a core over 500 ms (at most 30 s). */
async function quiet(pid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const before = processCpuUs(pid);
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (processCpuUs(pid) - before < 10_000) return;
  }
}

/** A minimal HTTP server in its own process (so it does not share the proxy's event loop). */
async function startLocalUpstream(): Promise<{ child: ChildProcess; url: string }> {
  const code = `const s=require('node:http').createServer((q,r)=>r.end('hello\\n'));s.listen(0,'127.0.0.1',()=>console.log(s.address().port));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (status) => reject(new Error(`bench upstream exited (${status}) before listening`)));
    child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
  });
  return { child, url: `http://127.0.0.1:${port}/` };
}

async function wrk(args: string[]): Promise<WrkResult> {
  const { stdout } = await run('wrk', args);
  return parseWrk(stdout);
}

/** Requests/sec and the latency distribution from wrk's `--latency` report. */
export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const requests = /(\d+) requests in/.exec(text);
  const percentile = (p: number): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(text);
    if (!m) throw new Error(`wrk output has no ${p}% latency:\n${text}`);
    return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 } as const)[m[2] as 'us' | 'ms' | 's'];
  };
  if (!rps || !requests) throw new Error(`wrk output has no request count or Requests/sec:\n${text}`);
  return { requests: Number(requests[1]), rps: Number(rps[1]), p50_ms: round(percentile(50)), p90_ms: round(percentile(90)), p99_ms: round(percentile(99)) };
}

function medianResult(all: WrkResult[]): WrkResult {
  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };
  return {
    requests: median(all.map((r) => r.requests)),
    rps: median(all.map((r) => r.rps)),
    p50_ms: median(all.map((r) => r.p50_ms)),
    p90_ms: median(all.map((r) => r.p90_ms)),
    p99_ms: median(all.map((r) => r.p99_ms)),
  };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  const runs = argValue(argv, 'runs');
  const common = { ...(runs === undefined ? {} : { runs: Number(runs) }), ...(argValue(argv, 'duration') ? { duration: argValue(argv, 'duration')! } : {}) };
  const local = argv.includes('--local') || argValue(argv, 'upstream') !== undefined;
  const members = argValue(argv, 'service');
  const result = local || members !== undefined ? await benchProxy({ upstream: argValue(argv, 'upstream'), ...common, ...(members !== undefined ? { members: Number(members) } : {}) }) : await benchProxyThroughFlickd(common);
  const { direct, proxied } = result.details;
  printTable([
    ['path', 'rps', 'p50 ms', 'p90 ms', 'p99 ms'],
    ['direct', direct.rps, direct.p50_ms, direct.p90_ms, direct.p99_ms],
    ['through the proxy', proxied.rps, proxied.p50_ms, proxied.p90_ms, proxied.p99_ms],
  ]);
  console.log(`added p50 ${result.results.added_p50_ms} ms (goal <= 0.5), throughput ratio ${result.results.rps_ratio} (goal >= 0.7), proxy CPU ${result.details.proxy_cpu_us_per_request} us/request`);
  console.log(`wrote ${await writeResults(members !== undefined ? 'proxy-service' : 'proxy', result)}`);
}
