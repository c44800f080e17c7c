// Flick's ingress proxy: HTTP/1.1 (and HTTPS: on a listener of its own, with a
// default certificate and per-route ones chosen by SNI) routed by Host to
// instances, raw TCP routed by host port, and a wake gate per instance that
// parks traffic while the instance wakes. It knows instances only through the
// RouteTable and the Waker seam, never the controller.
//
// flickd:   const proxy = await createProxy({ routes, waker, listen: { host, port }, tlsListen, tls });
// controller: routes.setHttp('app', { instanceId, targetPort: 8080 }); routes.removeInstance(id);
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { Balancer } from './balancer.js';
import { SecureContexts } from './certificates.js';
import { ProxyError } from './errors.js';
import { InstanceGate, type GateConfig } from './gate.js';
import { ServiceParking } from './service-parking.js';
import { answerRaw, handleRequest, type ForwardContext } from './http-forward.js';
import { handleUpgrade } from './upgrade-forward.js';
import { isServiceRoute, type Route, type RouteChange, type RouteTable } from './routes.js';
import { snapshotStats, type InstanceProxyStats } from './stats.js';
import { TcpSession, type TcpContext } from './tcp-forward.js';
import type { Waker } from './waker.js';
import type { HopConfig } from './hop.js';
import { handleHopConnect } from './hop-connect.js';

export interface ProxyConfig {
  routes: RouteTable;
  waker: Waker;
  /** Where HTTP(S) is served; port 0 picks a free port (see `Proxy.address`). */
  listen: { host: string; port: number };
  /** Host names are `<name>.<domain>`. Default `localhost`. */
  domain?: string;
  /**
   * The default PEM certificate (chain) and key of the HTTPS listener, for
   * clients that name no routed host with a certificate of its own. Without
   * `tlsListen`, the main listener itself speaks TLS.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Serve HTTPS here too (port 0: a free port, see `Proxy.tlsAddress`); routes' certificates are picked by SNI. */
  tlsListen?: { host: string; port: number };
  /** Address TCP route listeners bind to. Default: `listen.host`. */
  tcpHost?: string;
  /** Parked requests per instance before 503. Default 1024. */
  maxParkedPerInstance?: number;
  /** How long a wake may take before its parked requests get 504. Default 30 000 ms. */
  wakeTimeoutMs?: number;
  /** Retry-After on a 503 for a full queue. Default 1 s. */
  retryAfterSeconds?: number;
  /** How long an idle client keep-alive connection stays open. Default 65 000 ms. */
  clientKeepAliveMs?: number;
  /** Upstream connections per instance (the pool's size). Default 256. */
  maxUpstreamSocketsPerInstance?: number;
  /** Idle pooled upstream connections are closed after this (below typical 5 s server timeouts). Default 4 000 ms. */
  upstreamIdleMs?: number;
  /** How long a client may take to send a request's head (then 408, as nginx's client_header_timeout). Default 30 000 ms. */
  clientHeadersTimeoutMs?: number;
  /** How long a request body may pause between bytes (then 408). Default 60 000 ms. */
  clientBodyIdleMs?: number;
  /** Client connections open at once on each HTTP(S) listener; more are closed at accept, so the proxy never runs out of file descriptors. Default: a quarter of the process's open-file limit. */
  maxClientConnections?: number;
  /** Quiet time that ends a raw TCP exchange (see tcp-forward.ts). Default 200 ms. */
  tcpQuietMs?: number;
  /** Keep and extend X-Forwarded-* sent by the client (only behind a trusted load balancer). Default false. */
  trustForwarded?: boolean;
  /** Add `Via: 1.1 <via>` both ways. Default: no Via. */
  via?: string;
  /** A listener for other hosts' proxies (a cluster's hops, hop.ts): the credential required, own instances only. */
  hopListen?: HopConfig;
  /** Failures that concern no single request (a TCP route's port cannot be bound). Default: stderr. */
  onError?: (err: Error) => void;
}

export interface Proxy {
  /** Where the HTTP(S) listener is bound. */
  readonly address: { host: string; port: number };
  /** Where the HTTPS listener of `tlsListen` is bound. */
  readonly tlsAddress: { host: string; port: number } | undefined;
  /** Where the hop listener of `hopListen` is bound. */
  readonly hopAddress: { host: string; port: number } | undefined;
  /** Counters per instance that has seen traffic (copies). */
  stats(): InstanceProxyStats[];
  /** Requests (upgrades, TCP exchanges) in flight for an instance now, parked ones included: a deploy drains an instance to 0 before removing it. */
  inFlight(instanceId: string): number;
  /** Resolves once every TCP listener opened or closed by route changes so far is bound or closed. */
  settled(): Promise<void>;
  /** Stop listening, refuse parked requests, close every connection. Safe to call twice. */
  close(): Promise<void>;
}

export async function createProxy(config: ProxyConfig): Promise<Proxy> {
  const gates = new Map<string, InstanceGate>();
  const gateConfig: GateConfig = {
    maxParked: config.maxParkedPerInstance ?? 1024,
    wakeTimeoutMs: config.wakeTimeoutMs ?? 30_000,
    retryAfterSeconds: config.retryAfterSeconds ?? 1,
    agent: {
      keepAlive: true,
      maxSockets: config.maxUpstreamSocketsPerInstance ?? 256,
      maxFreeSockets: config.maxUpstreamSocketsPerInstance ?? 256,
      timeout: config.upstreamIdleMs ?? 4_000,
      scheduling: 'lifo',
    },
  };
  const gate = (instanceId: string): InstanceGate => {
    let found = gates.get(instanceId);
    if (found === undefined) {
      found = new InstanceGate(instanceId, waker, gateConfig);
      gates.set(instanceId, found);
    }
    return found;
  };
  const onError = config.onError ?? ((err: Error) => console.error(`flick proxy: ${err.message}`));

  const upgraded = new Set<Duplex>();
  const domain = (config.domain ?? 'localhost').toLowerCase();
  // The balancer counts in flight per instance from the proxy's own calls to the waker.
  const balancer = new Balancer((id) => gates.get(id)?.current() !== undefined || config.waker.isAwake?.(id) === true);
  const parking = new ServiceParking({
    gate,
    balancer,
    service: (name) => config.routes.service(name),
    maxParked: gateConfig.maxParked,
    parkTimeoutMs: gateConfig.wakeTimeoutMs,
    retryAfterSeconds: gateConfig.retryAfterSeconds,
  });
  const waker: Waker = {
    ensureAwake: (id, signal) => config.waker.ensureAwake(id, signal),
    requestStarted: (id) => {
      balancer.started(id);
      config.waker.requestStarted(id);
    },
    requestFinished: (id) => {
      balancer.finished(id);
      config.waker.requestFinished(id);
      parking.finished(id);
    },
    ...(config.waker.connectionOpened ? { connectionOpened: (id: string) => config.waker.connectionOpened?.(id) } : {}),
    ...(config.waker.connectionClosed ? { connectionClosed: (id: string) => config.waker.connectionClosed?.(id) } : {}),
  };
  const forwardCtx = (proto: 'http' | 'https'): ForwardContext => ({
    routes: config.routes,
    domain,
    waker,
    balancer,
    parking,
    gate,
    forwarded: { proto, trustForwarded: config.trustForwarded ?? false, via: config.via },
    upgraded,
    bodyIdleMs: config.clientBodyIdleMs ?? 60_000,
  });
  const servers: Array<http.Server | https.Server> = [];
  const contexts = new SecureContexts();
  // A client naming a host with a certificate of its own gets it; others the default (none: the handshake fails).
  const sni = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    const route = config.routes.forHost(servername, domain);
    if (route?.certificate !== undefined) cb(null, contexts.get(route.certificate));
    else if (config.tls !== undefined) cb(null, undefined);
    else cb(new Error(`no certificate for ${servername}`));
  };
  const secureOptions: https.ServerOptions = { ...(config.tls ? { cert: config.tls.cert, key: config.tls.key } : {}), SNICallback: sni };
  const tlsOnMain = config.tls !== undefined && config.tlsListen === undefined;
  const mainCtx = forwardCtx(tlsOnMain ? 'https' : 'http');
  const main = serveHttp(mainCtx, tlsOnMain ? secureOptions : undefined, config);
  servers.push(main);
  const secure = config.tlsListen !== undefined ? serveHttp(forwardCtx('https'), secureOptions, config) : undefined;
  if (secure) servers.push(secure);
  // A hop's X-Forwarded-* were set by the sending proxy from its client: kept (and extended) here.
  const hopCtx: ForwardContext | undefined = config.hopListen ? { ...forwardCtx('http'), forwarded: { proto: 'http', trustForwarded: true, via: config.via }, hop: config.hopListen } : undefined;
  const tcpCtx: TcpContext = { waker, gate, quietMs: config.tcpQuietMs ?? 200, balancer };
  const hop = hopCtx ? serveHttp(hopCtx, undefined, config, tcpCtx) : undefined;
  if (hop) servers.push(hop);

  const tcp = new TcpListeners(config, tcpCtx, onError);
  const unsubscribe = config.routes.subscribe((change: RouteChange) => {
    if (change.kind === 'instance-removed') {
      gates.get(change.instanceId)?.close(`instance ${change.instanceId} is no longer routed: it was removed`);
      gates.delete(change.instanceId);
    } else {
      tcp.sync(change.port);
    }
  });

  try {
    await listen(main, config.listen.port, config.listen.host).catch((err: unknown) => {
      throw new ProxyError('listen_failed', `cannot serve the ingress proxy on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}; pick another --proxy-listen address`, { cause: err, kind: 'user' });
    });
    if (secure && config.tlsListen) {
      const at = config.tlsListen;
      await listen(secure, at.port, at.host).catch((err: unknown) => {
        throw new ProxyError('listen_failed', `cannot serve HTTPS on ${at.host}:${at.port}: ${(err as Error).message}; pick another --proxy-tls-listen address`, { cause: err, kind: 'user' });
      });
    }
    if (hop && config.hopListen) {
      const at = config.hopListen.listen;
      await listen(hop, at.port, at.host).catch((err: unknown) => {
        throw new ProxyError('listen_failed', `cannot serve the cluster hop listener on ${at.host}:${at.port}: ${(err as Error).message}; pick another --cluster-hop-listen address`, { cause: err, kind: 'user' });
      });
    }
  } catch (err) {
    unsubscribe();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
    throw err;
  }
  const bound = main.address() as net.AddressInfo;
  const tlsBound = secure ? { host: config.tlsListen!.host, port: (secure.address() as net.AddressInfo).port } : undefined;
  // Plain requests for routes that asked for HTTPS only are redirected to this listener.
  mainCtx.httpsPort = tlsOnMain ? undefined : (tlsBound?.port ?? null);
  for (const port of config.routes.tcpPorts()) tcp.sync(port);
  await tcp.settled();

  let closing: Promise<void> | undefined;
  return {
    address: { host: config.listen.host, port: bound.port },
    tlsAddress: tlsBound,
    hopAddress: hop && config.hopListen ? { host: config.hopListen.listen.host, port: (hop.address() as net.AddressInfo).port } : undefined,
    stats: () => [...gates.values()].map((g) => snapshotStats(g.stats)),
    inFlight: (id) => balancer.inFlight(id),
    settled: () => tcp.settled(),
    close: () =>
      (closing ??= (async () => {
        unsubscribe();
        for (const g of gates.values()) g.close('the ingress proxy is shutting down: retry shortly');
        const serversClosed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
        for (const s of servers) s.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
        await Promise.all([...serversClosed, tcp.close()]);
      })()),
  };
}

/** One listener per routed TCP host port; connections are looked up at accept time, so a route can be replaced live. */
class TcpListeners {
  readonly #config: ProxyConfig;
  readonly #ctx: TcpContext;
  readonly #onError: (err: Error) => void;
  readonly #servers = new Map<number, net.Server>();
  readonly #sockets = new Set<net.Socket>();
  #pending: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(config: ProxyConfig, ctx: TcpContext, onError: (err: Error) => void) {
    this.#config = config;
    this.#ctx = ctx;
    this.#onError = onError;
  }

  /** Make the listener of `port` match the route table. */
  sync(port: number): void {
    if (this.#closed) return;
    const wanted = this.#config.routes.tcp(port) !== undefined;
    const server = this.#servers.get(port);
    if (wanted && server === undefined) this.#open(port);
    if (!wanted && server !== undefined) {
      this.#servers.delete(port);
      this.#track(new Promise<void>((resolve) => server.close(() => resolve())));
    }
  }

  settled(): Promise<void> {
    return this.#pending;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const socket of this.#sockets) socket.destroy();
    const closing = [...this.#servers.values()].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    this.#servers.clear();
    await Promise.all([this.#pending, ...closing]);
  }

  #open(port: number): void {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const target = this.#config.routes.tcp(port);
      // A service's port is balanced per connection (a member not awake is woken at its gate).
      const service = target !== undefined && isServiceRoute(target) ? target : undefined;
      const route = service !== undefined ? this.#ctx.balancer.pick(service, socket)?.route : (target as Route | undefined);
      if (route === undefined || this.#closed) {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      new TcpSession(this.#ctx, route, socket, service).start();
    });
    this.#servers.set(port, server);
    const host = this.#config.tcpHost ?? this.#config.listen.host;
    this.#track(
      listen(server, port, host).catch((err: unknown) => {
        if (this.#servers.get(port) === server) this.#servers.delete(port);
        this.#onError(new ProxyError('listen_failed', `cannot open TCP route ${host}:${port}: ${(err as Error).message}; route another host port`, { cause: err }));
      }),
    );
  }

  #track(operation: Promise<void>): void {
    this.#pending = Promise.all([this.#pending, operation]).then(() => undefined);
  }
}

/** One HTTP or HTTPS listener of the proxy, forwarding with `ctx`. */
function serveHttp(ctx: ForwardContext, secure: https.ServerOptions | undefined, config: ProxyConfig, hopTcp?: TcpContext): http.Server | https.Server {
  const headersTimeout = config.clientHeadersTimeoutMs ?? 30_000;
  const serverOptions: http.ServerOptions = {
    keepAliveTimeout: config.clientKeepAliveMs ?? 65_000,
    // A parked request has not been read yet; the wake timeout, not this, bounds how long it waits.
    requestTimeout: 0,
    // A connection that never finishes its head (slowloris, or idle from the start) is cut with 408.
    headersTimeout,
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(headersTimeout / 4))),
    noDelay: true,
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => handleRequest(ctx, req, res);
  const server = secure ? https.createServer({ ...serverOptions, ...secure }, onRequest) : http.createServer(serverOptions, onRequest);
  server.maxConnections = config.maxClientConnections ?? defaultMaxConnections();
  server.on('upgrade', (req, socket, head) => handleUpgrade(ctx, req, socket, head));
  // The proxy is no forward proxy: CONNECT tunnels nowhere, but to a TCP route over a cluster hop (hop-connect.ts).
  server.on('connect', (req, socket: Duplex, head: Buffer) => {
    if (ctx.hop && hopTcp) return handleHopConnect(ctx, hopTcp, (t, sock) => (isServiceRoute(t) ? ctx.balancer.pick(t, sock)?.route : t), req, socket, head);
    socket.on('error', () => socket.destroy());
    answerRaw(socket, 405, 'CONNECT is not served here: this is a reverse proxy; send requests for <name>.<domain> directly\n');
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, message] = clientErrorAnswer(err);
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
  });
  return server;
}

/** The answer to a request node's parser refused (RFC 9110 §15.5: 400, 408, 431). */
function clientErrorAnswer(err: NodeJS.ErrnoException): [number, string, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'Request Header Fields Too Large', 'request header fields too large: send at most 16 KiB of request line and headers\n'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADERS_TIMEOUT':
      return [408, 'Request Timeout', 'the request head did not arrive in time: send the whole head at once\n'];
    default:
      // Framing the parser cannot read one way only (CL+TE, two lengths, obs-fold, bad chunk sizes, bare CR or LF).
      return [400, 'Bad Request', `malformed HTTP/1.1 request (${err.code ?? 'parse error'}): send one unambiguous request (RFC 9112)\n`];
  }
}

/** A quarter of the soft open-file limit (/proc/self/limits), so a flood of idle clients leaves descriptors for VMs and the store. */
function defaultMaxConnections(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m) return Math.max(256, Math.floor(Number(m[1]) / 4));
  } catch {
    // not Linux: fall through
  }
  return 4096;
}

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
