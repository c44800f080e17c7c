// A real flickd for the benchmarks: its own data dir, namespace prefix and
// address pool, API and proxy on free loopback ports; the two apps the
// benchmarks compare (the guest helper's static hello server pushed as a Flick
// image, and examples/hello-node built by `flick build` and pushed by
// `flick push`); first-byte timing through the proxy; and a close() that
// removes every instance, VM, namespace and file it made.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { FIXTURE_PROGRAM, buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { FLICK_ARTIFACT, FLICK_INITRD, FLICK_KERNEL, FLICK_ROOTFS_EROFS } from '../src/image/media-types.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { killInNamespaces, readAnswer, type ApiAnswer } from '../src/daemon/testing.js';
export { rssBytes } from '../src/console/proc-rss.js';

export const APP_PORT = 8080;

export interface BenchHostConfig {
  /**
   * Names this benchmark's namespaces: `<tag><pid>-…` (src/network/run-scoped.ts),
   * so two runs never sweep each other's; a dead run's are swept at start.
   */
  tag: string;
  /** Address pool (CIDR) of the instance networks. */
  pool: string;
  /** More flickd arguments (e.g. a RAM budget). */
  args?: string[];
  log?: (line: string) => void;
}

export type { ApiAnswer };

export class BenchHost {
  readonly dir: string;
  readonly dataDir: string;
  base = '';
  token = '';
  proxyPort = 0;
  #child: ChildProcess | undefined;
  #closed = false;
  readonly #config: BenchHostConfig;
  readonly #prefix: string;

  private constructor(config: BenchHostConfig) {
    this.#config = config;
    this.#prefix = runPrefix(config.tag);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-'));
    this.dataDir = path.join(this.dir, 'data');
  }

  static async start(config: BenchHostConfig): Promise<BenchHost> {
    await sweepDeadRuns(config.tag);
    const host = new BenchHost(config);
    try {
      await host.#spawn();
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  #spawn(): Promise<void> {
    const args = [path.join(PACKAGE_ROOT, 'bin', 'flickd'), '--data-dir', this.dataDir, '--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0', ...(this.#config.args ?? [])];
    // FLICK_BENCH_CPU_PROF=DIR: flickd writes a V8 CPU profile there when it exits (node --cpu-prof).
    const prof = process.env.FLICK_BENCH_CPU_PROF;
    const child = spawn(process.execPath, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []), ...args], {
      env: { ...process.env, FLICK_NETNS_PREFIX: this.#prefix, FLICK_NET_POOL: this.#config.pool },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const logFile = fs.createWriteStream(path.join(this.dir, 'flickd.log'), { flags: 'a' });
    return new Promise((resolve, reject) => {
      let err = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        logFile.write(d);
        if (err.length < 20_000) err += d;
        const m = /proxy: listening on http:\/\/[^:]+:(\d+)/.exec(d);
        if (m) this.proxyPort = Number(m[1]);
      });
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        const m = /listening on (http:\/\/\S+)/.exec(d);
        if (!m) return;
        this.base = m[1]!;
        this.token = fs.readFileSync(path.join(this.dataDir, 'token'), 'utf8').trim();
        if (this.proxyPort === 0) reject(new Error(`flickd started without a proxy:\n${err}`));
        else resolve();
      });
      child.once('exit', (code) => reject(new Error(`flickd exited with ${code} while starting:\n${err}`)));
    });
  }

  /**
   * Stops flickd (SIGTERM: running VMs stay for the next one to adopt) and starts
   * it again on the same data dir; resolves with the ms from the new spawn until it
   * listens, which it does once it has reconciled every record and its proxy
   * serves their routes.
   */
  async restart(): Promise<number> {
    const child = this.#child;
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 60_000).unref();
      });
    }
    this.base = '';
    this.proxyPort = 0;
    const t0 = performance.now();
    await this.#spawn();
    return performance.now() - t0;
  }

  async api(method: string, p: string, body?: unknown): Promise<ApiAnswer> {
    const res = await fetch(`${this.base}${p}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return readAnswer(res);
  }

  /** The API call, or an error naming what failed. */
  async must(method: string, p: string, body?: unknown): Promise<any> {
    const r = await this.api(method, p, body);
    if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
    return r.json.data;
  }

  /** Waits until the instance is in `state` and returns its view. */
  waitFor(name: string, state: string, timeoutMs = 300_000): Promise<any> {
    return this.must('GET', `/v1/instances/${name}/wait?state=${state}&timeout_ms=${timeoutMs}`);
  }

  /** Pushes the static hello server (listening on APP_PORT) as `ref`. */
  async pushMinimal(ref: string): Promise<void> {
    const [initrd, rootfs] = await Promise.all([buildInitrd(), buildFixtureRootfs({ kind: 'hello-server' })]);
    const [name, tag] = ref.split(':') as [string, string];
    const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: [FIXTURE_PROGRAM['hello-server'], String(APP_PORT)], ExposedPorts: { [`${APP_PORT}/tcp`]: {} } } }));
    const config = await this.#pushBlob(name, cfg);
    const layers = [
      { mediaType: FLICK_KERNEL, ...(await this.#pushBlob(name, fs.readFileSync(requireKernel().vmlinux))) },
      { mediaType: FLICK_INITRD, ...(await this.#pushBlob(name, fs.readFileSync(initrd.initrd))) },
      { mediaType: FLICK_ROOTFS_EROFS, ...(await this.#pushBlob(name, fs.readFileSync(rootfs))) },
    ];
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: FLICK_ARTIFACT, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers };
    const r = await fetch(`${this.base}/v2/${name}/manifests/${tag}`, {
      method: 'PUT',
      body: JSON.stringify(manifest),
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    if (r.status !== 201) throw new Error(`pushing ${ref}: ${r.status} ${await r.text()}`);
  }

  async #pushBlob(name: string, data: Buffer): Promise<{ digest: string; size: number }> {
    const digest = `sha256:${crypto.createHash('sha256').update(data).digest('hex')}`;
    const r = await fetch(`${this.base}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data, headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/octet-stream' } });
    if (r.status !== 201) throw new Error(`pushing a blob of ${name}: ${r.status} ${await r.text()}`);
    return { digest, size: data.length };
  }

  /** Runs the flick CLI against this host. */
  flick(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args],
        { env: { ...process.env, FLICK_HOST: this.base, FLICK_TOKEN: this.token, XDG_CONFIG_HOME: path.join(this.dir, 'config'), XDG_STATE_HOME: path.join(this.dir, 'state') }, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  /** Builds examples/hello-node with `flick build` if the local layout lacks it, then `flick push`es it. */
  async pushNode(ref: string): Promise<void> {
    const pushed = await this.flick(['push', ref]);
    if (pushed.code === 0) return;
    const built = await this.flick(['build', '-t', ref, path.join(PACKAGE_ROOT, 'examples', 'hello-node')]);
    if (built.code !== 0) throw new Error(`flick build examples/hello-node failed:\n${built.stderr}`);
    const again = await this.flick(['push', ref]);
    if (again.code !== 0) throw new Error(`flick push ${ref} failed:\n${again.stderr}`);
  }

  /** ms from now until the first byte of the answer to GET / through the proxy. */
  firstByte(name: string, t0 = performance.now()): Promise<number> {
    return firstByte({ host: '127.0.0.1', port: this.proxyPort, hostHeader: `${name}.localhost` }, t0);
  }

  /** Removes every instance, stops flickd, kills VMs left in our namespaces, sweeps them. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const child = this.#child;
    if (child && child.exitCode === null && this.base !== '') {
      const list = await this.api('GET', '/v1/instances').catch(() => undefined);
      const all: any[] = list?.json?.data?.instances ?? [];
      // In parallel, a few at a time: a density run leaves thousands.
      for (let i = 0; i < all.length; i += 16) {
        await Promise.all(all.slice(i, i + 16).map((x) => this.api('DELETE', `/v1/instances/${x.id}?force=true`).catch(() => {})));
      }
    }
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
      });
    }
    await killInNamespaces(this.#prefix);
    await sweepLeftovers(this.#prefix);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Target {
  host: string;
  port: number;
  hostHeader?: string;
}

/** ms from `t0` until the first byte of an answer to GET / (the connection closes after it). */
export function firstByte(t: Target, t0 = performance.now(), timeoutMs = 120_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: t.host, port: t.port }, () => s.write(`GET / HTTP/1.1\r\nHost: ${t.hostHeader ?? 'bench'}\r\nConnection: close\r\n\r\n`));
    const timer = setTimeout(() => s.destroy(new Error(`no answer from ${t.host}:${t.port} within ${timeoutMs} ms`)), timeoutMs);
    s.once('data', (d: Buffer) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      s.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(d.toString('latin1'))?.[1];
      if (status !== undefined && status !== '200') reject(new Error(`${t.hostHeader ?? t.host}: HTTP ${status}: ${d.toString('latin1').split('\r\n\r\n')[1] ?? ''}`));
      else resolve(ms);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // Closed without a byte (no-op after a resolve or an error).
    s.once('close', () => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`${t.hostHeader ?? t.host}: connection closed before an answer`), { code: 'ECONNRESET' }));
    });
  });
}

/**
 * ms from `t0` until something at `t` answers GET / at all: polls every few ms
 * while the server is not listening yet (the spawn → first byte of a container
 * or a bare process).
 */
export async function firstByteOnceListening(t: Target, t0: number, timeoutMs = 60_000, alive: () => boolean = () => true): Promise<number> {
  for (;;) {
    try {
      return await firstByte(t, t0, timeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ECONNREFUSED' && code !== 'ECONNRESET') throw err;
      if (!alive()) throw new Error(`the server at ${t.host}:${t.port} exited before answering`);
      if (performance.now() - t0 > timeoutMs) throw new Error(`nothing answered at ${t.host}:${t.port} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** Proportional set size of a process (bytes), from /proc/<pid>/smaps_rollup. */
export function pssBytes(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** One field of /proc/meminfo, in bytes. */
export function meminfo(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  if (!m) throw new Error(`/proc/meminfo has no ${field}`);
  return Number(m[1]) * 1024;
}

/** Waits (at most 30 s) until MemAvailable moves less than 16 MiB over 2 s: a baseline others' churn does not tilt much. */
export async function settle(): Promise<void> {
  const t0 = Date.now();
  let last = meminfo('MemAvailable');
  while (Date.now() - t0 < 30_000) {
    await new Promise((r) => setTimeout(r, 2000));
    const now = meminfo('MemAvailable');
    if (Math.abs(now - last) < 16 * 2 ** 20) return;
    last = now;
  }
}

/** Bytes used on disk by a file or under a folder (allocated blocks, hard links counted once; 0 if absent). */
export function diskBytes(dir: string): number {
  const seen = new Set<string>();
  let total = 0;
  try {
    const st = fs.lstatSync(dir);
    if (!st.isDirectory()) return st.blocks * 512;
  } catch {
    return 0;
  }
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p, { bigint: false });
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) continue;
      seen.add(key);
      total += st.blocks * 512;
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return total;
}
