// HTTP/1.1 forwarding: one exchange object per request, which finds its
// instance by Host, waits at the instance's gate if it is asleep, then streams
// the request to the instance over the gate's keep-alive pool and the response
// back (node's parser and serializer handle chunked and Content-Length framing
// on each side, so bodies are never buffered whole; `pipe` applies backpressure).
// Upgrades (websockets) are upgrade-forward.ts, on the helpers exported here.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fieldOf, forwardRequestHeaders, forwardResponseHeaders, hostOf, malformedRequest, rawResponseHead, requestHasBody, type ForwardedFor } from './headers.js';
import type { UpstreamPool, InstanceGate, Refusal, Ticket, Waiter } from './gate.js';
import type { Balancer, Placement } from './balancer.js';
import type { ParkedEntry, ServiceParking, ServiceWaiter } from './service-parking.js';
import type { WakeProbe } from './wake-probe.js';
import { isServiceRoute, type HttpTarget, type Route, type RouteTable, type ServiceRoute } from './routes.js';
import type { Waker } from './waker.js';
import { HOP_REALM, ROUTE_HEADER, hopRefusal, notHereMessage, type HopConfig } from './hop.js';

export interface ForwardContext {
  routes: RouteTable;
  /** Lower case, e.g. `localhost`. */
  domain: string;
  waker: Waker;
  gate(instanceId: string): InstanceGate;
  forwarded: ForwardedFor;
  /** Sockets node handed over for upgrades: the HTTP server no longer closes them, the proxy does. */
  upgraded: Set<Duplex>;
  /**
   * On the plain listener: where routes with `plain: 'redirect'` send clients
   * (the HTTPS listener's port), or null when there is no HTTPS listener.
   * Undefined on the HTTPS listener itself.
   */
  httpsPort?: number | null;
  /** Picks a service's member per request (balancer.ts). */
  balancer: Balancer;
  /** Where a service's requests wait for a member to wake (service-parking.ts). */
  parking: ServiceParking;
  /** A request body that sends nothing for this long (while the instance would read) is cut with 408 (nginx's client_body_timeout). */
  bodyIdleMs: number;
  /** On the hop listener (hop.ts): the credential every request must carry and which instances it serves. */
  hop?: HopConfig;
}

/** Routes a request to its instance, or answers 400/404 itself. */
export function handleRequest(ctx: ForwardContext, req: http.IncomingMessage, res: http.ServerResponse): void {
  const malformed = malformedRequest(req.method, req.url, req.rawHeaders, false);
  if (malformed !== undefined) {
    res.shouldKeepAlive = false;
    answer(res, 400, `${malformed}\n`);
    return;
  }
  const refused = ctx.hop && hopRefusal(req.rawHeaders, ctx.hop.credential);
  if (refused) {
    req.resume();
    res.writeHead(407, ['Proxy-Authenticate', `Bearer realm="${HOP_REALM}"`, 'Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(refused))]);
    res.end(refused);
    return;
  }
  const route = routeOf(ctx, req);
  if (typeof route === 'string') {
    answer(res, route === '' ? 400 : 404, notRoutedMessage(route, ctx.domain));
    return;
  }
  if (ctx.hop && !isServiceRoute(route) && !ctx.hop.serves(route.instanceId)) {
    req.resume();
    answer(res, 421, notHereMessage(route.instanceId));
    return;
  }
  if (route.plain === 'redirect' && ctx.httpsPort !== undefined) {
    redirectToHttps(ctx.httpsPort, req, res);
    return;
  }
  if (isServiceRoute(route)) {
    const placed = ctx.balancer.pick(route, req.socket);
    if (placed === undefined) answer(res, 503, noMembersMessage(route));
    else new HttpExchange(ctx, placed.route, req, res, route).start(placed.park);
    return;
  }
  new HttpExchange(ctx, route, req, res).start();
}

export function noMembersMessage(service: ServiceRoute): string {
  return `service ${service.service} has no instances to serve this: see 'flick service get ${service.service}'\n`;
}

/** The route, or the host that matched none ('' when there was no Host header). */
export function routeOf(ctx: ForwardContext, req: http.IncomingMessage): HttpTarget | string {
  // A hop (authenticated before this) may name its instance: a member of a service balanced elsewhere.
  const named = ctx.hop ? fieldOf(req.rawHeaders, ROUTE_HEADER) : undefined;
  if (named !== undefined) return ctx.routes.forHost(named, 'localhost') ?? named;
  const host = hostOf(req.rawHeaders);
  if (host === undefined) return '';
  return ctx.routes.forHost(host, ctx.domain) ?? host;
}

export const HTTPS_ONLY = "this host is served over HTTPS only, and this proxy has no HTTPS listener: start flickd with --proxy-tls-listen (and a certificate)\n";

/** `https://<host>[:port]<path>` for a plain request, or undefined without an HTTPS listener. */
export function httpsLocation(httpsPort: number | null, req: http.IncomingMessage): string | undefined {
  if (httpsPort === null) return undefined;
  const host = hostOf(req.rawHeaders) ?? '';
  // The Host without its port (an IPv6 literal keeps its brackets); the route matched it, so it is a valid name.
  const bare = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
  const url = req.url !== undefined && req.url.startsWith('/') ? req.url : '/';
  return `https://${bare}${httpsPort === 443 ? '' : `:${httpsPort}`}${url}`;
}

/** A route that asked for HTTPS only (`-p 80:443/http+redirect`): 308 keeps the method and body (RFC 9110 §15.4.9). */
function redirectToHttps(httpsPort: number | null, req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume();
  const to = httpsLocation(httpsPort, req);
  if (to === undefined) {
    answer(res, 421, HTTPS_ONLY);
    return;
  }
  res.writeHead(308, ['Location', to, 'Content-Length', '0']);
  res.end();
}

export function notRoutedMessage(host: string, domain: string): string {
  if (host === '') return `no Host header: address an instance as <name>.${domain}\n`;
  return `no instance is routed at host "${host}": instances answer at <name>.${domain}; list them with 'flick ls'\n`;
}

const kInstances = Symbol('flick.proxy.instances');
type TrackedSocket = (Socket | Duplex) & { [kInstances]?: Set<string> };

/** Tell the waker once per client connection and instance that the connection carries its traffic, and when it closes. */
export function trackConnection(waker: Waker, socket: TrackedSocket, instanceId: string): void {
  if (waker.connectionOpened === undefined) return;
  let ids = socket[kInstances];
  if (ids === undefined) {
    ids = new Set();
    socket[kInstances] = ids;
    const seen = ids;
    socket.once('close', () => {
      for (const id of seen) waker.connectionClosed?.(id);
    });
  }
  if (ids.has(instanceId)) return;
  ids.add(instanceId);
  waker.connectionOpened(instanceId);
}

/** A request (or upgrade) for `route` arrives: counted at its gate, in flight for the waker, its client connection tracked. */
export function admit(ctx: ForwardContext, gate: InstanceGate, route: Route, socket: Socket | Duplex): void {
  gate.stats.requests += 1;
  ctx.waker.requestStarted(route.instanceId);
  trackConnection(ctx.waker, socket, route.instanceId);
}

/** A parked or refused request goes to another member: its in-flight count and its client connection move with it. */
export function moveInFlight(ctx: ForwardContext, socket: Socket | Duplex, from: string, to: string): void {
  ctx.waker.requestFinished(from);
  ctx.waker.requestStarted(to);
  trackConnection(ctx.waker, socket, to);
}

/** The request to the instance at `target`, over `agent` (the gate's pool) or, for upgrades, a socket of its own. */
export function upstreamRequest(target: UpstreamPool, route: Route, req: http.IncomingMessage, headers: string[], agent?: http.Agent): http.ClientRequest {
  return http.request({
    host: target.host,
    port: target.port ?? route.targetPort,
    method: req.method,
    path: req.url,
    headers,
    agent, // undefined: node's global agent, as for any request without one
    setHost: false,
    noDelay: true,
  } as http.RequestOptions);
}

/** The 502 text for an instance that did not answer. */
export function noAnswer(route: Route, err: NodeJS.ErrnoException): string {
  return `instance ${route.instanceId} did not answer on port ${route.targetPort}: ${err.code ?? err.message}\n`;
}

class HttpExchange implements Waiter, ServiceWaiter {
  readonly #ctx: ForwardContext;
  #route: Route;
  #gate: InstanceGate;
  /** The service the route was picked from: a refused connection is tried on another member. */
  readonly #service: ServiceRoute | undefined;
  readonly #tried = new Set<string>();
  #bodyStarted = false;
  readonly #req: http.IncomingMessage;
  readonly #res: http.ServerResponse;
  #ticket: Ticket | undefined;
  #parked: ParkedEntry | undefined;
  #upstream: http.ClientRequest | undefined;
  #headers: string[] | undefined;
  #retried = false;
  #finished = false;
  #bodyTimer: NodeJS.Timeout | undefined;
  /** Set when this is the first request after a wake: its first bytes end the wake's breakdown. */
  #probe: WakeProbe | undefined;

  constructor(ctx: ForwardContext, route: Route, req: http.IncomingMessage, res: http.ServerResponse, service?: ServiceRoute) {
    this.#ctx = ctx;
    this.#route = route;
    this.#gate = ctx.gate(route.instanceId);
    this.#req = req;
    this.#res = res;
    this.#service = service;
  }

  /** `park`: wait in the service's parking for whichever member is awake with room first. */
  start(park = false): void {
    admit(this.#ctx, this.#gate, this.#route, this.#req.socket);
    // 'close' comes once on every path: answered, refused, or the client went away.
    this.#res.once('close', () => this.#onClose());
    if (park && this.#service !== undefined) this.#parked = this.#ctx.parking.park(this, this.#service, this.#route.instanceId);
    else this.#dispatch();
  }

  /** From the service's parking: a member has room. The request's in-flight count moves to it. */
  moveTo(member: Route): void {
    this.#parked = undefined;
    if (this.#finished) return;
    if (member.instanceId !== this.#route.instanceId) this.#switchTo(member);
    this.#dispatch();
  }

  #switchTo(member: Route): void {
    moveInFlight(this.#ctx, this.#req.socket, this.#route.instanceId, member.instanceId);
    this.#route = member;
    this.#gate = this.#ctx.gate(member.instanceId);
  }

  #dispatch(): void {
    const target = this.#gate.current();
    if (target !== undefined) this.forward(target);
    else this.#ticket = this.#gate.park(this);
  }

  forward(target: UpstreamPool, probe?: WakeProbe): void {
    if (probe !== undefined) this.#probe = probe;
    const req = this.#req;
    this.#headers ??= forwardRequestHeaders(req.rawHeaders, undefined, this.#ctx.forwarded, req.socket.remoteAddress);
    const upstream = upstreamRequest(target, this.#route, req, target.headers ? [...this.#headers, ...target.headers] : this.#headers, target.agent);
    this.#upstream = upstream;
    upstream.on('response', (upRes) => this.#onResponse(upRes));
    upstream.on('error', (err) => this.#onUpstreamError(err));
    if (!requestHasBody(req.rawHeaders)) upstream.end();
    else {
      req.once('data', () => (this.#bodyStarted = true));
      req.pipe(upstream);
      this.#watchBody();
    }
    this.#probe?.forwarded();
  }

  /**
   * A service member refused the connection: the request provably never reached it (no byte was
   * written; a body is tried elsewhere only if none of it was read yet). Moves it to another member.
   */
  #tryAnotherMember(): Placement | undefined {
    if (this.#service === undefined || this.#bodyStarted) return undefined;
    this.#tried.add(this.#route.instanceId);
    const next = this.#ctx.balancer.pick(this.#service, this.#req.socket, this.#tried);
    if (next === undefined) return undefined;
    if (this.#upstream !== undefined) this.#req.unpipe(this.#upstream);
    this.#switchTo(next.route);
    this.#gate.stats.requests += 1;
    return next;
  }

  /** A slow body (slowloris on the body) holds an upstream connection of the instance: it gets bodyIdleMs between bytes. */
  #watchBody(): void {
    const req = this.#req;
    if (this.#bodyTimer !== undefined || req.readableEnded) return;
    const timer = setTimeout(() => {
      // Paused by backpressure (the instance reads slowly): not the client's stall.
      if (req.readableEnded || this.#finished) return;
      if (req.readableFlowing !== true) {
        timer.refresh();
        return;
      }
      this.#upstream?.destroy();
      this.#res.shouldKeepAlive = false;
      answer(this.#res, 408, `the request body stalled: no byte for ${this.#ctx.bodyIdleMs} ms; send it without pauses\n`);
      req.socket.destroySoon();
    }, this.#ctx.bodyIdleMs);
    this.#bodyTimer = timer;
    req.on('data', () => timer.refresh());
    req.once('end', () => clearTimeout(timer));
  }

  refuse(refusal: Refusal): void {
    answer(this.#res, refusal.status, `${refusal.message}\n`, refusal.retryAfterSeconds);
  }

  #onResponse(upRes: http.IncomingMessage): void {
    const res = this.#res;
    upRes.on('error', () => res.destroy());
    upRes.on('close', () => {
      // The instance's connection broke mid-body: the client must see a broken response, not a short one.
      if (!upRes.complete) res.destroy();
    });
    const probe = this.#probe;
    probe?.upstreamByte();
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, forwardResponseHeaders(upRes.rawHeaders, this.#ctx.forwarded.via));
    // By hand rather than pipe(): the same backpressure with fewer listeners per response.
    upRes.on('data', (chunk: Buffer) => {
      if (!res.write(chunk)) upRes.pause();
      probe?.clientByte(); // node sends the head with the first chunk
    });
    upRes.on('end', () => {
      res.end();
      probe?.clientByte();
    });
    res.on('drain', () => upRes.resume());
  }

  #onUpstreamError(err: NodeJS.ErrnoException): void {
    const upstream = this.#upstream;
    if (this.#res.headersSent || this.#finished) {
      this.#res.destroy();
      return;
    }
    // A pooled socket the instance closed just as we reused it (the keep-alive race, RFC 9112 §9.3.1):
    // retry once when the request had no body to replay.
    if (upstream?.reusedSocket && !this.#retried && !requestHasBody(this.#req.rawHeaders) && err.code === 'ECONNRESET') {
      this.#retried = true;
      this.#dispatch();
      return;
    }
    const next = err.code === 'ECONNREFUSED' ? this.#tryAnotherMember() : undefined;
    if (next !== undefined) {
      if (next.park) this.#parked = this.#ctx.parking.park(this, this.#service!, next.route.instanceId);
      else this.#dispatch();
      return;
    }
    answer(this.#res, 502, noAnswer(this.#route, err));
  }

  #onClose(): void {
    this.#finished = true;
    clearTimeout(this.#bodyTimer);
    if (this.#ticket !== undefined) this.#gate.leave(this.#ticket);
    if (this.#parked !== undefined) this.#ctx.parking.leave(this.#parked);
    // The client left before its answer was complete: stop the upstream side too (its socket is not reused).
    if (!this.#res.writableFinished) this.#upstream?.destroy();
    this.#ctx.waker.requestFinished(this.#route.instanceId);
  }
}

/** A plain-text answer from the proxy itself. */
export function answer(res: http.ServerResponse, status: number, body: string, retryAfterSeconds?: number): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const headers: string[] = ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(body))];
  if (retryAfterSeconds !== undefined) headers.push('Retry-After', String(retryAfterSeconds));
  res.writeHead(status, headers);
  res.end(body);
}

/** The same on a socket node has handed over (upgrades), which is then closed. */
export function answerRaw(socket: Duplex, status: number, body: string, retryAfterSeconds?: number): void {
  if (socket.destroyed) return;
  const headers: string[] = ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(body)), 'Connection', 'close'];
  if (retryAfterSeconds !== undefined) headers.push('Retry-After', String(retryAfterSeconds));
  socket.end(rawResponseHead(status, http.STATUS_CODES[status] ?? '', headers) + body);
}
