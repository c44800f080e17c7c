// A real etcd cluster of N members on loopback ports, in a folder of its own:
// for tests, benchmarks and scripts/cluster.sh. One owner per member process:
// it knows how it starts (all members at once: a new cluster's members wait for
// each other), when it is ready (GET /health on its client URL), and how it
// dies (SIGTERM, then SIGKILL); stop() removes the processes and the folder.
// Debian's etcd-server (3.4) provides the `etcd` binary.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../network/free-port.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  /** The running process, if any. */
  readonly process: ChildProcess | undefined;
  /** SIGKILL (a crash) or SIGTERM; resolves once it exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again with its data (rejoins the cluster); resolves once it is healthy. */
  start(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every member's client URL, comma-separated (flickd --cluster-etcd). */
  endpoints: string[];
  dir: string;
  /** Kills every member and removes the folder; safe to call twice. */
  stop(): Promise<void>;
}

const ETCD = process.env.FLICK_ETCD_BIN ?? 'etcd';

/** etcd's client URLs over TLS with client-certificate auth, as a real multi-machine cluster runs it. */
export interface EtcdServerTls {
  /** The CA client certificates must be signed by (--trusted-ca-file with --client-cert-auth). */
  caFile: string;
  /** The members' certificate and key: a SAN for 127.0.0.1, and client auth too (etcd's gateway dials its own gRPC with it). */
  certFile: string;
  keyFile: string;
  /** A client certificate and key the harness checks the members' health with. */
  clientCertFile: string;
  clientKeyFile: string;
}

/** Starts `size` members (default 3) under a new temp folder (or `dir`) and waits until each is healthy. */
export async function startEtcdCluster(opts: { size?: number; dir?: string; token?: string; tls?: EtcdServerTls } = {}): Promise<EtcdCluster> {
  const tls = opts.tls;
  const size = opts.size ?? 3;
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'flick-etcd-'));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ports: number[] = [];
  while (ports.length < size * 2) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `etcd${i}`,
    clientUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${ports[2 * i]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
    dataDir: path.join(dir, `etcd${i}`),
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(',');
  const token = opts.token ?? `flick-${path.basename(dir)}`;
  const members: EtcdMember[] = specs.map((s) => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const logFile = path.join(dir, `${s.name}.log`);
    const member: EtcdMember = {
      ...s,
      get process() {
        return child;
      },
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        child.kill(signal);
        const timer = setTimeout(() => child?.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      },
      async start() {
        if (child && child.exitCode === null && child.signalCode === null) return;
        const log = fs.openSync(logFile, 'a');
        child = spawn(
          ETCD,
          [
            '--name', s.name,
            '--data-dir', s.dataDir,
            '--listen-client-urls', s.clientUrl,
            '--advertise-client-urls', s.clientUrl,
            '--listen-peer-urls', s.peerUrl,
            '--initial-advertise-peer-urls', s.peerUrl,
            '--initial-cluster', initialCluster,
            '--initial-cluster-token', token,
            '--initial-cluster-state', 'new',
            // Short heartbeats: a lost leader is replaced in about a second on loopback.
            '--heartbeat-interval', '100',
            '--election-timeout', '1000',
            '--logger', 'zap',
            ...(tls ? ['--client-cert-auth', '--trusted-ca-file', tls.caFile, '--cert-file', tls.certFile, '--key-file', tls.keyFile] : []),
          ],
          { stdio: ['ignore', log, log] },
        );
        fs.closeSync(log);
        const c = child;
        exited = new Promise((r) => c.once('exit', () => r()));
        await waitHealthy(member, logFile, 30_000, tls);
      },
    };
    return member;
  });
  let stopping: Promise<void> | undefined;
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    dir,
    stop: () =>
      (stopping ??= (async () => {
        await Promise.all(members.map((m) => m.kill('SIGKILL')));
        if (opts.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
      })()),
  };
  try {
    await Promise.all(members.map((m) => m.start()));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Resolves once the member answers /health with true (a leader is known). */
export async function waitHealthy(m: Pick<EtcdMember, 'clientUrl' | 'process'>, logFile?: string, timeoutMs = 30_000, tls?: EtcdServerTls): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = m.process;
    if (p && (p.exitCode !== null || p.signalCode !== null)) {
      throw new Error(`etcd at ${m.clientUrl} exited while starting${logFile ? `:\n${tail(logFile)}` : ''}`);
    }
    const ok = await (tls ? healthOverTls(m.clientUrl, tls) : fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) }).then(async (r) => r.status === 200 && ((await r.json()) as { health?: string }).health === 'true')).catch(() => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`etcd at ${m.clientUrl} is not healthy after ${timeoutMs} ms${logFile ? `:\n${tail(logFile)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** GET /health over TLS with the harness's client certificate (node's fetch takes none). */
function healthOverTls(clientUrl: string, tls: EtcdServerTls): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get(`${clientUrl}/health`, { ca: fs.readFileSync(tls.caFile), cert: fs.readFileSync(tls.clientCertFile), key: fs.readFileSync(tls.clientKeyFile), timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-3000);
  } catch {
    return '(no log)';
  }
}

export interface TcpRelay {
  url: string;
  /** Cuts every connection through the relay and refuses new ones (a network cut), until heal(). */
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

/**
 * A TCP relay on a free port of `listenHost` (default loopback) to `targetUrl`'s host and port: one host's
 * path to an etcd member, to cut in a test (or, on 0.0.0.0, etcd as a host's network would offer it).
 */
export async function startRelay(targetUrl: string, listenHost = '127.0.0.1'): Promise<TcpRelay> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, listenHost, () => r()));
  return {
    url: `${target.protocol}//127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    heal() {
      cut = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
