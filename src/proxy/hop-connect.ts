// Raw TCP over the cluster hop: another host's proxy opens `CONNECT
// flick-tcp:<host port> HTTP/1.1` on this host's hop listener, with the cluster's
// credential (hop.ts), for the TCP route this host serves on that host port; once
// answered 200 the connection is that route's raw byte stream (tcp-forward.ts:
// woken on connect, parked while it wakes, counted as it is here). RFC 9110 §9.3.6
// CONNECT, with a target that names a route rather than a host.
import type net from 'node:net';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { HOP_REALM, hopRefusal, notHereMessage } from './hop.js';
import { answerRaw, type ForwardContext } from './http-forward.js';
import { rawResponseHead } from './headers.js';
import { TcpSession, type TcpContext } from './tcp-forward.js';
import { isServiceRoute, type Route, type TcpTarget } from './routes.js';

const TARGET = /^flick-tcp:(\d{1,5})$/;

/** A CONNECT on the hop listener: refused without the credential, else piped to the route's instance. */
export function handleHopConnect(ctx: ForwardContext, tcp: TcpContext, pick: (target: TcpTarget, socket: net.Socket) => Route | undefined, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  ctx.upgraded.add(socket);
  socket.once('close', () => ctx.upgraded.delete(socket));
  const hop = ctx.hop!;
  const refused = hopRefusal(req.rawHeaders, hop.credential);
  if (refused) {
    const headers = ['Proxy-Authenticate', `Bearer realm="${HOP_REALM}"`, 'Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(refused)), 'Connection', 'close'];
    socket.end(rawResponseHead(407, 'Proxy Authentication Required', headers) + refused);
    return;
  }
  const m = TARGET.exec(req.url ?? '');
  const target = m ? ctx.routes.tcp(Number(m[1])) : undefined;
  if (!m) return answerRaw(socket, 400, 'a cluster hop CONNECTs to flick-tcp:<host port>\n');
  if (!target) return answerRaw(socket, 404, `no TCP route on host port ${m[1]} here\n`);
  // A service's members are this host's own; a plain route must be too.
  if (!isServiceRoute(target) && !hop.serves(target.instanceId)) return answerRaw(socket, 421, notHereMessage(target.instanceId));
  const route = pick(target, socket as net.Socket);
  if (!route) return answerRaw(socket, 503, `the service on host port ${m[1]} has no instances to serve this\n`);
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) socket.unshift(head);
  // With its service, so a member that refuses the connection is skipped for another (tcp-forward.ts).
  new TcpSession(tcp, route, socket as net.Socket, isServiceRoute(target) ? target : undefined).start();
}
