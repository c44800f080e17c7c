// Test helpers for the proxy's tests: a hand-written Waker, local upstream
// servers on port 0, and small HTTP client calls. Not used by the product.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { createProxy, type Proxy, type ProxyConfig } from './proxy.js';
import { RouteTable } from './routes.js';
import { newStats, type InstanceProxyStats } from './stats.js';
import { PAUSED, type AwakeInstance, type ProxyWakeTimes, type Waker } from './waker.js';

/** A Waker whose instances are awake at 127.0.0.1 once `release` (or `autoWake`) lets them. */
export class FakeWaker implements Waker {
  /** Calls to ensureAwake, per instance. */
  readonly wakes = new Map<string, number>();
  readonly inFlight = new Map<string, number>();
  /** Lowest in-flight count ever seen (negative means a finished without a started). */
  minInFlight = 0;
  readonly connections = new Map<string, number>();
  readonly signals: AbortSignal[] = [];
  /** The proxy's reports of each wake's first request (AwakeInstance.reportWake), per instance. */
  readonly reports = new Map<string, ProxyWakeTimes[]>();
  /** Instances the fake controller reports running before any request (isAwake). */
  running = new Set<string>();
  #pending: Array<{ id: string; wake: () => void }> = [];
  #asleep = new Map<string, AbortController>();
  /** Bumped when an instance's "VM" ends (standby), kept when it only pauses: the wake's session. */
  #generation = new Map<string, number>();

  /** When true, ensureAwake resolves at once; otherwise it waits for `release()`. */
  constructor(public autoWake = true) {}

  ensureAwake(instanceId: string, signal: AbortSignal): Promise<AwakeInstance> {
    this.wakes.set(instanceId, (this.wakes.get(instanceId) ?? 0) + 1);
    this.signals.push(signal);
    return new Promise((resolve) => {
      const wake = (): void => {
        const asleep = new AbortController();
        this.#asleep.set(instanceId, asleep);
        const reportWake = (times: ProxyWakeTimes): void => void this.reports.set(instanceId, [...(this.reports.get(instanceId) ?? []), times]);
        resolve({ host: '127.0.0.1', asleep: asleep.signal, session: `vm-${this.#generation.get(instanceId) ?? 0}`, reportWake });
      };
      if (this.autoWake) wake();
      else this.#pending.push({ id: instanceId, wake });
    });
  }

  /** Finish every wake in progress, or only those of one instance. */
  release(instanceId?: string): void {
    const now = this.#pending.filter((p) => instanceId === undefined || p.id === instanceId);
    this.#pending = this.#pending.filter((p) => !now.includes(p));
    for (const p of now) p.wake();
  }

  /** Instances with a wake in progress (not released yet). */
  waking(): string[] {
    return [...new Set(this.#pending.map((p) => p.id))];
  }

  /** Put an instance to standby, as the controller would; its VM ends (cold standby). */
  standby(instanceId: string): void {
    this.#generation.set(instanceId, (this.#generation.get(instanceId) ?? 0) + 1);
    this.#asleep.get(instanceId)?.abort();
  }

  /** Put an instance to hot standby: its VM only pauses and keeps its connections. */
  pause(instanceId: string): void {
    this.#asleep.get(instanceId)?.abort(PAUSED);
  }

  isAwake(id: string): boolean {
    const asleep = this.#asleep.get(id);
    return this.running.has(id) || (asleep !== undefined && !asleep.signal.aborted);
  }

  requestStarted(id: string): void {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
  }

  requestFinished(id: string): void {
    const n = (this.inFlight.get(id) ?? 0) - 1;
    this.inFlight.set(id, n);
    this.minInFlight = Math.min(this.minInFlight, n);
  }

  connectionOpened(id: string): void {
    this.connections.set(id, (this.connections.get(id) ?? 0) + 1);
  }

  connectionClosed(id: string): void {
    this.connections.set(id, (this.connections.get(id) ?? 0) - 1);
  }
}

/** An HTTP server on 127.0.0.1:0, closed after the test; counts the TCP connections it accepted and those still open. */
export async function startUpstream(
  t: TestContext,
  handler: http.RequestListener,
): Promise<{ server: http.Server; port: number; connections: () => number; open: () => number }> {
  const server = http.createServer(handler);
  let connections = 0;
  let open = 0;
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    connections += 1;
    open += 1;
    sockets.add(socket);
    socket.on('close', () => {
      open -= 1;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    // Upgraded sockets are no longer the HTTP server's to close.
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections, open: () => open };
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request through the proxy, body read whole (the tests' client side only). */
export function request(
  port: number,
  options: { host: string; path?: string; method?: string; agent?: http.Agent; headers?: http.OutgoingHttpHeaders; body?: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: options.path ?? '/',
        method: options.method ?? 'GET',
        agent: options.agent ?? false,
        headers: { host: options.host, ...options.headers },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Resolves once `check()` is true, polling every few ms (for effects that happen on another socket). */
export async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A proxy on 127.0.0.1:0 with its own route table, closed after the test. */
export async function startProxy(
  t: TestContext,
  waker: Waker,
  extra: Partial<ProxyConfig> = {},
): Promise<{ proxy: Proxy; routes: RouteTable; port: number }> {
  const routes = extra.routes ?? new RouteTable();
  const proxy = await createProxy({ routes, waker, listen: { host: '127.0.0.1', port: 0 }, ...extra });
  t.after(() => proxy.close());
  return { proxy, routes, port: proxy.address.port };
}

/** The proxy's counters for one instance (all zero before its first request). */
export function statsOf(proxy: Proxy, instanceId: string): InstanceProxyStats {
  return proxy.stats().find((s) => s.instanceId === instanceId) ?? newStats(instanceId);
}
