// A flickd under test, for the integration tests that drive the real daemon
// (test/flickd.test.ts, test/scale-to-zero.test.ts, test/security.test.ts,
// test/hostile-inputs.test.ts): a real flickd process with its own data dir,
// namespace prefix and address pool, and a Flick image of one of the guest
// fixtures pushed to it over /v2.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { buildInitrd } from '../guest/init.js';
import { requireKernel } from '../guest/kernel.js';
import { buildFixtureRootfs, FIXTURE_PROGRAM, type FixtureKind } from '../guest/testing/fixture-rootfs.js';
import { FLICK_ARTIFACT, FLICK_INITRD, FLICK_KERNEL, FLICK_ROOTFS_EROFS } from '../image/media-types.js';
import { sweepLeftovers } from '../network/namespace-network.js';
import { PACKAGE_ROOT } from '../paths.js';
import { sweepJails } from '../vmm/qemu/jail.js';

export interface FlickdUnderTest {
  base: string;
  token: string;
  dataDir: string;
  process: ChildProcess;
  /** flickd's stderr so far. */
  log(): string;
  /** `signal` (SIGTERM by default), then SIGKILL after 10 s; resolves once flickd exited. Safe to call twice. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startFlickd(opts: { dataDir: string; prefix: string; pool: string; args?: string[] }): Promise<FlickdUnderTest> {
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'flickd'), '--data-dir', opts.dataDir, '--listen', '127.0.0.1:0', ...(opts.args ?? [])], {
    env: { ...process.env, FLICK_NETNS_PREFIX: opts.prefix, FLICK_NET_POOL: opts.pool },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM') =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    })());
  try {
    const base = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1] as string);
      });
      void exited.then(() => reject(new Error(`flickd exited while starting:\n${err}`)));
      setTimeout(() => reject(new Error(`flickd did not start within 30 s:\n${err}`)), 30_000).unref();
    });
    const token = fs.readFileSync(path.join(opts.dataDir, 'token'), 'utf8').trim();
    return { base, token, dataDir: opts.dataDir, process: child, log: () => err, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function pushBlob(f: FlickdUnderTest, name: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = `sha256:${crypto.createHash('sha256').update(data).digest('hex')}`;
  const r = await fetch(`${f.base}/v2/${name}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: data,
    headers: { authorization: `Bearer ${f.token}`, 'content-type': 'application/octet-stream' },
  });
  if (r.status !== 201) throw new Error(`pushing a blob of ${name} failed: ${r.status} ${await r.text()}`);
  return { digest, size: data.length };
}

/** Pushes `image` (name:tag): a Flick image whose app is fixture `kind`, run as `[program, '8080']`, exposing 8080. */
export async function pushFixtureImage(f: FlickdUnderTest, image: string, kind: FixtureKind): Promise<void> {
  const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind })]);
  const [name, tag] = image.split(':') as [string, string];
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: [FIXTURE_PROGRAM[kind], '8080'], ExposedPorts: { '8080/tcp': {} } } }));
  const config = await pushBlob(f, name, cfg);
  const layers = [
    { mediaType: FLICK_KERNEL, ...(await pushBlob(f, name, fs.readFileSync(requireKernel().vmlinux))) },
    { mediaType: FLICK_INITRD, ...(await pushBlob(f, name, fs.readFileSync(initrd.initrd))) },
    { mediaType: FLICK_ROOTFS_EROFS, ...(await pushBlob(f, name, fs.readFileSync(rootfs))) },
  ];
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: FLICK_ARTIFACT, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers };
  const r = await fetch(`${f.base}/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    body: JSON.stringify(manifest),
    headers: { authorization: `Bearer ${f.token}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (r.status !== 201) throw new Error(`pushing the manifest of ${image} failed: ${r.status} ${await r.text()}`);
}

export interface ApiAnswer {
  status: number;
  json: any;
  text: string;
}

/** One /v1 call with the token; a string body is sent as it is (e.g. malformed JSON), anything else as JSON. */
export async function api(f: FlickdUnderTest, method: string, p: string, body?: unknown): Promise<ApiAnswer> {
  const res = await fetch(`${f.base}${p}`, {
    method,
    headers: { authorization: `Bearer ${f.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(200_000),
  });
  return readAnswer(res);
}

/** An HTTP answer as tests judge it: status, the body as text, and as JSON when it is JSON. */
export async function readAnswer(res: Response): Promise<ApiAnswer> {
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** Polls `probe` every 100 ms until it gives a value (a throw counts as none yet), or fails after `timeoutMs` naming `what`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Creates an instance of `image` and waits until it runs; returns its view (id, pid, address). */
export async function createRunning(f: FlickdUnderTest, image: string, body: Record<string, unknown> = {}): Promise<any> {
  const created = await api(f, 'POST', '/v1/instances', { image, memory_mb: 128, ...body });
  if (created.status !== 201) throw new Error(`create failed: ${created.status} ${created.text}`);
  const ready = await api(f, 'GET', `/v1/instances/${created.json.data.id}/wait?state=running&timeout_ms=180000`);
  if (ready.status !== 200) throw new Error(`instance did not run: ${ready.status} ${ready.text}\n${f.log()}`);
  return ready.json.data;
}

/** GET `p` from the app at `address`:8080; the body, or throws. */
export async function appGet(address: string, p: string, timeoutMs = 30_000): Promise<string> {
  const res = await fetch(`http://${address}:8080${p}`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${p} from ${address}: ${res.status} ${text}`);
  return text;
}

/**
 * Everything a test's flickd made goes: its instances (deleted through the
 * API), flickd itself, any QEMU left in the test's namespaces (a failed test),
 * the namespaces and the jails under its data dir.
 */
export async function removeFlickd(f: FlickdUnderTest | undefined, prefix: string, dataDir: string): Promise<void> {
  if (f) {
    const list = await api(f, 'GET', '/v1/instances').catch(() => undefined);
    for (const i of list?.json?.data?.instances ?? []) await api(f, 'DELETE', `/v1/instances/${i.id}?force=true`).catch(() => {});
    await f.stop();
  }
  await killInNamespaces(prefix);
  await sweepLeftovers(prefix);
  await sweepJails(dataDir, new Set());
}

/** SIGKILLs every process still inside a network namespace under `prefix` (a VM a failed run left). */
export async function killInNamespaces(prefix: string): Promise<void> {
  for (const ns of fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : []) {
    if (!ns.startsWith(prefix)) continue;
    const out = await new Promise<string>((r) => execFile('ip', ['netns', 'pids', ns], (_e, o) => r(String(o ?? ''))));
    for (const pid of out.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** The port flickd says its proxy listens on (`scheme` https: its HTTPS listener); throws if it said none. */
export function proxyPortOf(f: FlickdUnderTest, scheme: 'http' | 'https' = 'http'): number {
  const port = Number(new RegExp(`proxy: listening on ${scheme}://[^:]+:(\\d+)`).exec(f.log())?.[1] ?? 0);
  if (!(port > 0)) throw new Error(`flickd did not say where its ${scheme} proxy listens:\n${f.log()}`);
  return port;
}

/** Runs the flick CLI against `f` as a user would (config under `configDir`); never rejects. */
export function runFlick(f: FlickdUnderTest, configDir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args], { env: { ...process.env, FLICK_HOST: f.base, FLICK_TOKEN: f.token, XDG_CONFIG_HOME: configDir }, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** A test file's flickd: leftovers of an earlier run swept, flickd started with its proxy on a free port, the hello fixture pushed as `image`. */
export async function startFlickdWithFixture(opts: { dataDir: string; prefix: string; pool: string; image: string; args?: string[] }): Promise<{ f: FlickdUnderTest; proxyPort: number }> {
  await removeFlickd(undefined, opts.prefix, opts.dataDir);
  const f = await startFlickd({ dataDir: opts.dataDir, prefix: opts.prefix, pool: opts.pool, args: ['--proxy-listen', '127.0.0.1:0', ...(opts.args ?? [])] });
  await pushFixtureImage(f, opts.image, 'hello-server');
  return { f, proxyPort: proxyPortOf(f) };
}

/** GET `p` from a proxy listener on 127.0.0.1:`port` for instance `name` (Host `<name>.localhost`), with `headers`. */
export function getVia(port: number, name: string, p = '/', headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, headers: { host: `${name}.localhost`, ...headers }, timeout: 60_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
  });
}
