// `flick host up|down|status`: runs flickd on this machine. `up` starts it in
// the background (detached, output in <data-dir>/flickd.log, pid in
// <data-dir>/flickd.pid) or with --foreground in this terminal, waits until it
// answers, and writes the CLI's host config so other verbs find it.
// `down` sends SIGTERM; running VMs are left alone and re-adopted by the next `up`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN, parseListen } from '../../daemon/flags.js';
import { describeError } from '../../errors.js';
import { PACKAGE_ROOT } from '../../paths.js';
import { hostConfigPath, writeHostConfig } from '../host-config.js';
import { HostClient } from '../http-client.js';
import { Spinner, printJson, renderFields, withOutputOption, type OutputFormat } from '../output.js';
import { CliError } from '../cli-error.js';

interface HostPaths {
  dataDir: string;
  pidFile: string;
  logFile: string;
  tokenFile: string;
}

function hostPaths(dataDir: string): HostPaths {
  const d = path.resolve(dataDir);
  return { dataDir: d, pidFile: path.join(d, 'flickd.pid'), logFile: path.join(d, 'flickd.log'), tokenFile: path.join(d, 'token') };
}

/** The URL a client on this machine uses for a listen address (a wildcard becomes loopback). */
export function clientUrl(listen: string): string {
  const { host, port } = parseListen(listen);
  const h = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/** The pid in the pid file if that process is alive. */
function runningPid(p: HostPaths): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(p.pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** True once flickd answers HTTP at `url` (any status: auth and routes are its business). */
async function answers(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/v1/instances`, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function flickdArgs(p: HostPaths, listen: string, extra: string[]): string[] {
  return [path.join(PACKAGE_ROOT, 'bin', 'flickd'), '--data-dir', p.dataDir, '--listen', listen, ...extra];
}

function announce(p: HostPaths, url: string, pid: number): void {
  writeHostConfig({ version: 1, url, tokenFile: p.tokenFile });
  process.stdout.write(`flickd is up (pid ${pid})\n  API:    ${url}/v1/\n  token:  ${p.tokenFile}\n  log:    ${p.logFile}\n  the CLI now uses this host (${hostConfigPath()})\n`);
}

async function up(opts: { dataDir: string; listen: string; foreground?: boolean; proxyListen?: string; timeout: number }): Promise<void> {
  const p = hostPaths(opts.dataDir);
  const url = clientUrl(opts.listen);
  const extra = opts.proxyListen ? ['--proxy-listen', opts.proxyListen] : [];
  const existing = runningPid(p);
  if (existing !== undefined) {
    process.stdout.write(`flickd is already running\n`);
    return announce(p, url, existing);
  }
  fs.mkdirSync(p.dataDir, { recursive: true, mode: 0o700 });
  if (opts.foreground) {
    writeHostConfig({ version: 1, url, tokenFile: p.tokenFile });
    process.stderr.write(`flickd: API ${url}/v1/, token in ${p.tokenFile}\n`);
    const child = spawn(process.execPath, flickdArgs(p, opts.listen, extra), { stdio: 'inherit' });
    fs.writeFileSync(p.pidFile, `${child.pid}\n`);
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
    process.off('SIGINT', forward).off('SIGTERM', forward);
    fs.rmSync(p.pidFile, { force: true });
    process.exitCode = code;
    return;
  }
  const log = fs.openSync(p.logFile, 'a');
  const child = spawn(process.execPath, flickdArgs(p, opts.listen, extra), { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.unref();
  fs.writeFileSync(p.pidFile, `${child.pid}\n`);
  const spinner = new Spinner('starting flickd');
  const deadline = Date.now() + opts.timeout;
  try {
    while (!(await answers(url))) {
      if (exited !== undefined) {
        throw new CliError('HOST_START_FAILED', `flickd exited (code ${exited}) while starting:\n${tail(p.logFile)}\n(full log: ${p.logFile})`);
      }
      if (Date.now() > deadline) {
        throw new CliError('HOST_START_FAILED', `flickd did not answer at ${url} within ${opts.timeout} ms: see ${p.logFile}`);
      }
      await sleep(100);
    }
  } catch (err) {
    if (exited === undefined && child.pid) process.kill(child.pid, 'SIGTERM');
    fs.rmSync(p.pidFile, { force: true });
    throw err;
  } finally {
    spinner.stop();
  }
  announce(p, url, child.pid!);
}

async function down(opts: { dataDir: string; timeout: number }): Promise<void> {
  const p = hostPaths(opts.dataDir);
  const pid = runningPid(p);
  if (pid === undefined) {
    fs.rmSync(p.pidFile, { force: true });
    process.stdout.write('flickd is not running\n');
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + opts.timeout;
  while (runningPid(p) !== undefined) {
    if (Date.now() > deadline) throw new CliError('HOST_STOP_FAILED', `flickd (pid ${pid}) did not exit within ${opts.timeout} ms: see ${p.logFile}, or 'kill -9 ${pid}'`);
    await sleep(100);
  }
  fs.rmSync(p.pidFile, { force: true });
  process.stdout.write(`flickd stopped (pid ${pid}); running instances keep running and are re-adopted by 'flick host up'\n`);
}

async function status(opts: { dataDir: string; listen: string; output: OutputFormat }): Promise<void> {
  const p = hostPaths(opts.dataDir);
  const url = clientUrl(opts.listen);
  const pid = runningPid(p);
  let instances: number | undefined;
  let primed: PrimedPoolView | null = null;
  let problem: string | undefined;
  if (pid !== undefined) {
    try {
      let token: string | undefined;
      try {
        token = fs.readFileSync(p.tokenFile, 'utf8').trim();
      } catch {
        // Not root, or not this host's data dir: report what we can.
      }
      const client = new HostClient({ url, token });
      const res = await client.check(await client.request('GET', '/v1/instances'), 'GET /v1/instances');
      const body = (await res.json()) as { data?: { instances?: unknown[] } };
      instances = body.data?.instances?.length;
      const m = await client.check(await client.request('GET', '/v1/metrics'), 'GET /v1/metrics');
      primed = ((await m.json()) as { data?: { primed_pool?: PrimedPoolView | null } }).data?.primed_pool ?? null;
    } catch (err) {
      problem = describeError(err);
    }
  }
  const report = { running: pid !== undefined, pid: pid ?? null, url, api: `${url}/v1/`, token_file: p.tokenFile, log_file: p.logFile, instances: instances ?? null, primed_pool: primed, problem: problem ?? null };
  if (opts.output === 'json') printJson(report);
  else process.stdout.write(renderFields(Object.entries({ ...report, primed_pool: primedPoolText(primed) })));
  if (pid === undefined) process.exitCode = 69; // EX_UNAVAILABLE: scripts can test `flick host status`
}

/** The primed pool as /v1/metrics shows it (src/api/metrics.ts). */
interface PrimedPoolView {
  budget_bytes: number;
  used_bytes: number;
  vms: number;
  templates: number;
  hits: number;
  misses: number;
}

/** `3 VMs of 2 templates, 71.5 of 491.5 MiB; 12 hits, 3 misses` (null: none, or flickd not reached). */
export function primedPoolText(p: PrimedPoolView | null): string | null {
  if (p === null) return null;
  if (p.budget_bytes === 0) return 'off (--primed-pool-mb 0)';
  const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
  return `${p.vms} VM${p.vms === 1 ? '' : 's'} of ${p.templates} template${p.templates === 1 ? '' : 's'}, ${mib(p.used_bytes)} of ${mib(p.budget_bytes)} MiB; ${p.hits} hit${p.hits === 1 ? '' : 's'}, ${p.misses} miss${p.misses === 1 ? '' : 'es'}`;
}

export function register(program: Command): void {
  const host = program.command('host').description('run flickd, the host daemon, on this machine');
  const common = (c: Command) =>
    c.option('--data-dir <dir>', "flickd's data directory", DEFAULT_DATA_DIR).option('--listen <host:port>', 'API and registry address', DEFAULT_LISTEN);
  common(host.command('up').description('start flickd in the background (or --foreground) and point the CLI at it'))
    .option('--foreground', 'run in this terminal until Ctrl-C')
    .option('--proxy-listen <host:port>', 'ingress proxy address (passed to flickd)')
    .option('--timeout <ms>', 'how long to wait for flickd to answer', (v) => Number(v), 60_000)
    .action(up);
  common(host.command('down').description('stop flickd (instances keep running and are re-adopted on the next up)'))
    .option('--timeout <ms>', 'how long to wait for flickd to exit', (v) => Number(v), 60_000)
    .action(down);
  withOutputOption(common(host.command('status').description('is flickd running, where, and how many instances'))).action(status);
}
