// The demo's building blocks: running the flick CLI as a user would (showing
// the command, then a short answer), a timed HTTP request through the proxy,
// and the few parsers the demo needs from the CLI's output.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { FlickError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

export type DemoErrorCode = 'STEP_FAILED' | 'NO_ANSWER' | 'TIMEOUT';
export class DemoError extends FlickError<DemoErrorCode> {}

const tty = process.stdout.isTTY === true;
const paint = (code: string) => (s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
export const bold = paint('1');
export const dim = paint('2');
export const green = paint('32');
export const cyan = paint('36');

export function heading(n: number, text: string): void {
  process.stdout.write(`\n${bold(`${n}. ${text}`)}\n`);
}

export interface CliResult {
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Show stderr lines as they come (long steps: build, base images). */
  progress?: boolean;
  /** Do not show the command line. */
  quiet?: boolean;
}

/** Runs `flick ARGS…` (this checkout's), shows `$ flick …`; rejects with its stderr if it fails. */
export function flick(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  if (!opts.quiet) process.stdout.write(`${cyan(`$ flick ${args.join(' ')}`)}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (!opts.progress) return;
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l.trim() !== '') process.stdout.write(`${dim(`  │ ${l}`)}\n`);
    });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) return resolve({ stdout, stderr });
      reject(new DemoError('STEP_FAILED', `'flick ${args.join(' ')}' failed (exit ${code}):\n${(stderr || stdout).trimEnd()}`));
    });
  });
}

/** Shows the lines of `text` indented under the command. */
export function show(text: string): void {
  for (const l of text.trimEnd().split('\n')) if (l !== '') process.stdout.write(`  ${l}\n`);
}

/** `http://hello.localhost:7451` from `flick run`'s "hello running at http://…" line. */
export function urlFromRun(stdout: string): URL {
  const m = /\bat (https?:\/\/\S+)/.exec(stdout);
  if (!m) throw new DemoError('STEP_FAILED', `'flick run' printed no URL (got "${stdout.trim()}"): is flickd's ingress proxy on? ('flick host status')`);
  const url = new URL(m[1]!);
  if (!url.hostname.endsWith('.localhost')) {
    throw new DemoError(
      'STEP_FAILED',
      `the instance is reachable only at its address ${url.host}, not through the ingress proxy: flickd runs without its proxy (see 'flick host status' and its log); free the port and run 'flick host down' and this demo again`,
    );
  }
  return url;
}

export interface Answer {
  status: number;
  body: string;
  /** From sending the request to the first byte of the answer. */
  firstByteMs: number;
}

/**
 * GET `url` through the proxy. Connects to 127.0.0.1 with the URL's Host header,
 * which is what a browser or curl does for `*.localhost` names.
 */
export function request(url: URL, timeoutMs = 60_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstByteMs = 0;
    const req = http.get({ host: '127.0.0.1', port: Number(url.port || 80), path: url.pathname, headers: { host: url.host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.once('data', () => (firstByteMs = performance.now() - t0));
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, firstByteMs: firstByteMs || performance.now() - t0 }));
    });
    req.once('timeout', () => req.destroy(new DemoError('TIMEOUT', `no answer from ${url.href} within ${timeoutMs} ms`)));
    req.once('error', (err) => reject(err instanceof DemoError ? err : new DemoError('NO_ANSWER', `GET ${url.href}: ${err.message}: is flickd running? ('flick host status')`, { cause: err })));
  });
}

/** "3.2 ms", "245 ms", "1.42 s". */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export interface InstanceView {
  name: string;
  state: string;
  standby_tier?: string | null;
  wakes?: number;
  wakes_hot?: number;
  wakes_cold?: number;
  pid?: number | null;
}

/** The instance as `flick get NAME -o json` shows it. */
export async function getInstance(name: string): Promise<InstanceView> {
  const r = await flick(['get', name, '-o', 'json'], { quiet: true });
  return JSON.parse(r.stdout) as InstanceView;
}

/** Polls until the instance is in `state` (the CLI's view), or rejects after `timeoutMs`. */
export async function waitForState(name: string, state: string, timeoutMs: number): Promise<InstanceView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await getInstance(name);
    if (v.state === state) return v;
    if (v.state === 'failed' || v.state === 'stopped') throw new DemoError('STEP_FAILED', `instance "${name}" is ${v.state}: see 'flick logs ${name}'`);
    if (Date.now() > deadline) throw new DemoError('TIMEOUT', `instance "${name}" did not reach ${state} within ${timeoutMs} ms (it is ${v.state}): see 'flick logs ${name}'`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
