// Raw TCP services: each client connection on a routed host port is piped to
// the instance's port, waking the instance on connect.
//
// Standby under an open connection (policy `idle`): when the instance goes to
// standby the proxy closes its upstream connection but keeps the client's. The
// client's next bytes are held (up to 64 KiB, then the client socket is paused
// and the kernel holds the rest) while the instance wakes, then sent on a NEW upstream
// connection. The app therefore sees a fresh connection after every wake: a
// guest-side connection does not survive a stateless wake (the guest starts
// from its template), and even with a stateful wake this proxy does not try to
// keep it, so protocols whose exchanges do not depend on connection state keep
// working across sleeps and others see the server close and reconnect.
//
// Raw TCP has no request boundaries, so an "exchange" (what the waker counts as
// a request in flight) starts with any byte and ends once the connection has
// been quiet for `quietMs` after the instance last spoke. Bytes from the client
// that the instance has not answered keep it in flight, so a slow answer is
// never cut by a suspend; a client that only ever sends keeps the instance awake.
//
// A service's port (routes.ts: setTcpService) is balanced once per connection;
// a member that refuses the connection is skipped for another one: no client
// byte reaches an instance before its connection is up, so it provably got none.
import net from 'node:net';
import type { Balancer } from './balancer.js';
import type { UpstreamPool, DropReason, InstanceGate, Refusal, Ticket, Waiter } from './gate.js';
import type { Route, ServiceRoute } from './routes.js';
import type { Waker } from './waker.js';
import { tunnelRequest } from './hop.js';

/** Client bytes read ahead while waking; beyond this the socket is paused and the kernel holds the rest. */
const MAX_PENDING_BYTES = 64 * 1024;

export interface TcpContext {
  waker: Waker;
  gate(instanceId: string): InstanceGate;
  quietMs: number;
  /** Picks a service's member per connection. */
  balancer: Balancer;
}

export class TcpSession implements Waiter {
  readonly #ctx: TcpContext;
  #route: Route;
  #gate: InstanceGate;
  /** The service the route was picked from, and the members that refused this connection. */
  readonly #service: ServiceRoute | undefined;
  readonly #tried = new Set<string>();
  readonly #client: net.Socket;
  #upstream: net.Socket | undefined;
  #connected = false;
  /** Client bytes waiting for an upstream connection. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #clientEnded = false;
  #ticket: Ticket | undefined;
  #stopDropListener: (() => void) | undefined;
  #closed = false;
  // Exchange accounting (see the module comment).
  #inFlight = false;
  #lastByteAt = 0;
  #awaitingAnswer = false;
  #quietTimer: NodeJS.Timeout | undefined;

  constructor(ctx: TcpContext, route: Route, client: net.Socket, service?: ServiceRoute) {
    this.#ctx = ctx;
    this.#route = route;
    this.#gate = ctx.gate(route.instanceId);
    this.#client = client;
    this.#service = service;
  }

  start(): void {
    const client = this.#client;
    const id = this.#route.instanceId;
    this.#gate.stats.requests += 1;
    this.#ctx.waker.connectionOpened?.(id);
    client.setNoDelay(true);
    client.on('error', () => client.destroy());
    client.on('close', () => this.#onClientClose());
    client.on('data', (chunk: Buffer) => this.#onClientData(chunk));
    client.on('end', () => {
      this.#clientEnded = true;
      if (this.#connected) this.#upstream?.end();
      // Gone while waiting, with nothing to deliver: leave the queue (a half-close after bytes still gets its answer).
      else if (this.#pendingBytes === 0) client.destroy();
    });
    client.on('drain', () => this.#upstream?.resume());
    // Waking on connect serves protocols where the server speaks first.
    this.#activity(false);
    this.#acquire();
  }

  forward(target: UpstreamPool): void {
    this.#ticket = undefined;
    if (this.#closed) return;
    const tunnel = target.tunnel;
    const upstream = net.connect({ host: target.host, port: tunnel?.port ?? this.#route.targetPort, noDelay: true, allowHalfOpen: true });
    this.#upstream = upstream;
    this.#connected = false;
    this.#stopDropListener = this.#gate.onDrop((reason) => this.#onDrop(reason));
    upstream.on('connect', () => {
      if (tunnel === undefined) this.#ready(upstream);
      else this.#openTunnel(upstream, tunnelRequest(this.#route.targetPort, tunnel.headers));
    });
    upstream.on('drain', () => this.#client.resume());
    upstream.on('end', () => this.#client.end());
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.#connected && err.code === 'ECONNREFUSED' && this.#tryAnotherMember()) return;
      upstream.destroy();
    });
    upstream.on('close', () => {
      if (this.#upstream !== upstream) return; // dropped on purpose at standby
      this.#client.destroy();
    });
  }

  /** The upstream carries the instance's bytes from now on. */
  #ready(upstream: net.Socket, early?: Buffer): void {
    this.#connected = true;
    const onData = (chunk: Buffer): void => {
      this.#activity(false);
      if (!this.#client.write(chunk)) upstream.pause();
    };
    upstream.on('data', onData);
    if (early !== undefined && early.length > 0) onData(early);
    for (const chunk of this.#pending) upstream.write(chunk);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#clientEnded) upstream.end();
    else this.#client.resume();
  }

  /** A cluster hop: CONNECT first (hop-connect.ts), then the bytes once the peer answered 200; anything else closes the client. */
  #openTunnel(upstream: net.Socket, request: string): void {
    upstream.write(request);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 8192) upstream.destroy();
        return;
      }
      upstream.off('data', onData);
      if (!/^HTTP\/1\.[01] 200 /.test(head.subarray(0, end).toString('latin1'))) {
        upstream.destroy();
        return;
      }
      this.#ready(upstream, head.subarray(end + 4));
    };
    upstream.on('data', onData);
  }

  refuse(_refusal: Refusal): void {
    // A raw byte stream has no way to say why: the client sees the connection close.
    this.#ticket = undefined;
    this.#client.destroy();
  }

  #acquire(): void {
    const target = this.#gate.current();
    if (target !== undefined) this.forward(target);
    else this.#ticket = this.#gate.park(this);
  }

  /** A service member refused the connection: the same client connection goes to another member, if one is left. */
  #tryAnotherMember(): boolean {
    if (this.#service === undefined || this.#closed) return false;
    this.#tried.add(this.#route.instanceId);
    const next = this.#ctx.balancer.pick(this.#service, this.#client, this.#tried)?.route;
    if (next === undefined) return false;
    this.#detachUpstream();
    const from = this.#route.instanceId;
    if (this.#inFlight) this.#ctx.waker.requestFinished(from);
    this.#ctx.waker.connectionClosed?.(from);
    this.#route = next;
    this.#gate = this.#ctx.gate(next.instanceId);
    this.#gate.stats.requests += 1;
    this.#ctx.waker.connectionOpened?.(next.instanceId);
    if (this.#inFlight) this.#ctx.waker.requestStarted(next.instanceId);
    this.#acquire();
    return true;
  }

  #onClientData(chunk: Buffer): void {
    this.#activity(true);
    const upstream = this.#upstream;
    if (upstream !== undefined && this.#connected) {
      if (!upstream.write(chunk)) this.#client.pause();
      return;
    }
    // Held while the instance wakes. Reading on (up to a bound) lets a client that leaves be noticed.
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= MAX_PENDING_BYTES) this.#client.pause();
    if (upstream === undefined && this.#ticket === undefined) this.#acquire();
  }

  #onDrop(reason: DropReason): void {
    const upstream = this.#upstream;
    this.#detachUpstream();
    upstream?.destroy();
    // Removed; or the VM ended under a client still waiting for its answer (it crashed, was stopped,
    // or its host disk filled: scale to zero never suspends with an answer owed), and that answer
    // went with the upstream connection: the client is told by a close rather than left hanging.
    if (reason === 'removed' || this.#awaitingAnswer) {
      this.#client.destroy();
      return;
    }
    // Keep the client; its next byte wakes the instance again (bytes already read wait in #pending).
    if (this.#pending.length > 0) this.#acquire();
    else this.#client.resume();
  }

  #detachUpstream(): void {
    this.#upstream = undefined;
    this.#connected = false;
    this.#stopDropListener?.();
    this.#stopDropListener = undefined;
  }

  #onClientClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const id = this.#route.instanceId;
    if (this.#ticket !== undefined) this.#gate.leave(this.#ticket);
    this.#ticket = undefined;
    const upstream = this.#upstream;
    this.#detachUpstream();
    upstream?.destroy();
    clearTimeout(this.#quietTimer);
    if (this.#inFlight) {
      this.#inFlight = false;
      this.#ctx.waker.requestFinished(id);
    }
    this.#ctx.waker.connectionClosed?.(id);
  }

  #activity(fromClient: boolean): void {
    if (this.#closed) return;
    this.#lastByteAt = performance.now();
    this.#awaitingAnswer = fromClient;
    if (!this.#inFlight) {
      this.#inFlight = true;
      this.#ctx.waker.requestStarted(this.#route.instanceId);
    }
    if (!fromClient && this.#quietTimer === undefined) this.#armQuietTimer(this.#ctx.quietMs);
  }

  #armQuietTimer(ms: number): void {
    this.#quietTimer = setTimeout(() => {
      this.#quietTimer = undefined;
      if (!this.#inFlight || this.#awaitingAnswer) return; // re-armed by the instance's next byte
      const quietFor = performance.now() - this.#lastByteAt;
      if (quietFor < this.#ctx.quietMs) {
        this.#armQuietTimer(this.#ctx.quietMs - quietFor);
        return;
      }
      this.#inFlight = false;
      this.#ctx.waker.requestFinished(this.#route.instanceId);
    }, ms);
  }
}
