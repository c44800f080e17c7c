// Upgrade forwarding (websockets): an upgrade request is routed and parked like
// any request (http-forward.ts's helpers), then, after the instance's 101, the
// client's and the instance's sockets are piped both ways for the connection's life.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { forwardRequestHeaders, forwardResponseHeaders, malformedRequest, rawResponseHead, withoutFraming } from './headers.js';
import type { UpstreamPool, InstanceGate, Refusal, Ticket, Waiter } from './gate.js';
import { isServiceRoute, type Route, type ServiceRoute } from './routes.js';
import type { ParkedEntry, ServiceWaiter } from './service-parking.js';
import { HTTPS_ONLY, admit, answerRaw, moveInFlight, httpsLocation, noAnswer, noMembersMessage, notRoutedMessage, routeOf, upstreamRequest, type ForwardContext } from './http-forward.js';
import { HOP_REALM, hopRefusal, notHereMessage } from './hop.js';

/** Routes an `Upgrade` request (websockets); after the instance's 101 the two sockets are piped both ways. */
export function handleUpgrade(ctx: ForwardContext, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  ctx.upgraded.add(socket);
  socket.once('close', () => ctx.upgraded.delete(socket));
  const malformed = malformedRequest(req.method, req.url, req.rawHeaders, true);
  if (malformed !== undefined) {
    answerRaw(socket, 400, `${malformed}\n`);
    return;
  }
  const refused = ctx.hop && hopRefusal(req.rawHeaders, ctx.hop.credential);
  if (refused) {
    const headers = ['Proxy-Authenticate', `Bearer realm="${HOP_REALM}"`, 'Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(refused)), 'Connection', 'close'];
    socket.end(rawResponseHead(407, 'Proxy Authentication Required', headers) + refused);
    return;
  }
  const route = routeOf(ctx, req);
  if (typeof route === 'string') {
    answerRaw(socket, route === '' ? 400 : 404, notRoutedMessage(route, ctx.domain));
    return;
  }
  if (ctx.hop && !isServiceRoute(route) && !ctx.hop.serves(route.instanceId)) {
    answerRaw(socket, 421, notHereMessage(route.instanceId));
    return;
  }
  if (route.plain === 'redirect' && ctx.httpsPort !== undefined) {
    const to = httpsLocation(ctx.httpsPort, req);
    if (to === undefined) answerRaw(socket, 421, HTTPS_ONLY);
    else socket.end(rawResponseHead(308, 'Permanent Redirect', ['Location', to, 'Content-Length', '0', 'Connection', 'close']));
    return;
  }
  // An upgraded connection is balanced once, for its whole life.
  if (!isServiceRoute(route)) {
    new UpgradeExchange(ctx, route, req, socket, head).start();
    return;
  }
  const placed = ctx.balancer.pick(route, socket);
  if (placed === undefined) {
    answerRaw(socket, 503, noMembersMessage(route));
    return;
  }
  new UpgradeExchange(ctx, placed.route, req, socket, head).start(placed.park ? route : undefined);
}

class UpgradeExchange implements Waiter, ServiceWaiter {
  readonly #ctx: ForwardContext;
  #route: Route;
  #gate: InstanceGate;
  readonly #req: http.IncomingMessage;
  readonly #socket: Duplex;
  readonly #head: Buffer;
  #ticket: Ticket | undefined;
  #parked: ParkedEntry | undefined;
  #upstream: http.ClientRequest | undefined;
  #upSocket: Duplex | undefined;

  constructor(ctx: ForwardContext, route: Route, req: http.IncomingMessage, socket: Duplex, head: Buffer) {
    this.#ctx = ctx;
    this.#route = route;
    this.#gate = ctx.gate(route.instanceId);
    this.#req = req;
    this.#socket = socket;
    this.#head = head;
  }

  /** `parkIn`: wait in this service's parking for whichever member is awake with room first. */
  start(parkIn?: ServiceRoute): void {
    // An upgraded connection is one long request: the instance must not sleep under an open websocket.
    admit(this.#ctx, this.#gate, this.#route, this.#socket);
    this.#socket.once('close', () => {
      if (this.#ticket !== undefined) this.#gate.leave(this.#ticket);
      if (this.#parked !== undefined) this.#ctx.parking.leave(this.#parked);
      this.#upstream?.destroy();
      this.#upSocket?.destroy();
      this.#ctx.waker.requestFinished(this.#route.instanceId);
    });
    if (parkIn !== undefined) this.#parked = this.#ctx.parking.park(this, parkIn, this.#route.instanceId);
    else this.#dispatch();
  }

  /** From the service's parking: a member has room; the connection's in-flight count moves to it. */
  moveTo(member: Route): void {
    this.#parked = undefined;
    if (this.#socket.destroyed) return;
    if (member.instanceId !== this.#route.instanceId) {
      moveInFlight(this.#ctx, this.#socket, this.#route.instanceId, member.instanceId);
      this.#route = member;
      this.#gate = this.#ctx.gate(member.instanceId);
    }
    this.#dispatch();
  }

  #dispatch(): void {
    const target = this.#gate.current();
    if (target !== undefined) this.forward(target);
    else this.#ticket = this.#gate.park(this);
  }

  forward(target: UpstreamPool): void {
    const req = this.#req;
    const headers = forwardRequestHeaders(req.rawHeaders, req.headers.upgrade ?? 'websocket', this.#ctx.forwarded, req.socket.remoteAddress);
    const upstream = upstreamRequest(target, this.#route, req, target.headers ? [...headers, ...target.headers] : headers);
    this.#upstream = upstream;
    upstream.on('upgrade', (upRes, upSocket, upHead) => this.#onUpgrade(upRes, upSocket, upHead));
    upstream.on('response', (upRes) => this.#onRefused(upRes));
    upstream.on('error', (err: NodeJS.ErrnoException) => answerRaw(this.#socket, 502, noAnswer(this.#route, err)));
    upstream.end();
  }

  refuse(refusal: Refusal): void {
    answerRaw(this.#socket, refusal.status, `${refusal.message}\n`, refusal.retryAfterSeconds);
  }

  #onUpgrade(upRes: http.IncomingMessage, upSocket: Socket, upHead: Buffer): void {
    const socket = this.#socket;
    this.#upSocket = upSocket;
    upSocket.on('error', () => socket.destroy());
    upSocket.on('close', () => socket.destroy());
    socket.on('close', () => upSocket.destroy());
    if (socket.destroyed) {
      upSocket.destroy();
      return;
    }
    // The 101 keeps its Upgrade and Connection fields: they are this hop's handshake.
    socket.write(rawResponseHead(101, upRes.statusMessage || 'Switching Protocols', upRes.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    if (this.#head.length > 0) upSocket.write(this.#head);
    upSocket.setNoDelay(true);
    upSocket.pipe(socket);
    socket.pipe(upSocket);
  }

  /** The instance answered without switching protocols: relay that answer and close. */
  #onRefused(upRes: http.IncomingMessage): void {
    const socket = this.#socket;
    // The body is relayed decoded, so its framing becomes "until close".
    const headers = withoutFraming(forwardResponseHeaders(upRes.rawHeaders, this.#ctx.forwarded.via));
    headers.push('Connection', 'close');
    socket.write(rawResponseHead(upRes.statusCode ?? 502, upRes.statusMessage ?? '', headers));
    upRes.on('error', () => socket.destroy());
    upRes.pipe(socket);
  }
}
