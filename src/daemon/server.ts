// flickd's one HTTP server. It authenticates each request once, then hands it to
// the route whose path prefix matches: /v2/ (the OCI registry), /v1/ (the REST
// API), /metrics, /console/ (the web console, src/console). A route says who may call it; everything else about the
// request (parsing, errors, bodies) is the route's own business.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError } from '../errors.js';
import { AUTH_CHALLENGE, type Identity, type TokenAuth } from './auth.js';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface DaemonRoute {
  /** Path prefix, e.g. '/v2/' or '/v1/'; '/v2/' also takes the bare '/v2'. Longest prefix wins. */
  prefix: string;
  handler: RouteHandler;
  /** Who may call. Default: only the holder of the host token. */
  access?: (req: IncomingMessage, identity: Identity) => boolean;
}

export interface DaemonServerConfig {
  routes: DaemonRoute[];
  auth: TokenAuth;
  log?: (line: string) => void;
}

export interface DaemonServer {
  readonly server: http.Server;
  /** Binds and resolves with the bound address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then cuts the rest. Safe to call twice. */
  close(graceMs?: number): Promise<void>;
}

export const tokenOnly = (_req: IncomingMessage, id: Identity): boolean => id.kind === 'token';

/** The route for `pathname`: the longest prefix that matches ('/v2/' also takes '/v2'). */
export function findRoute(routes: readonly DaemonRoute[], pathname: string): DaemonRoute | undefined {
  let best: DaemonRoute | undefined;
  for (const r of routes) if ((pathname.startsWith(r.prefix) || `${pathname}/` === r.prefix) && r.prefix.length > (best?.prefix.length ?? -1)) best = r;
  return best;
}

export function createDaemonServer(config: DaemonServerConfig): DaemonServer {
  const routes = config.routes;
  const log = config.log ?? (() => undefined);
  const server = http.createServer((req, res) => {
    const pathname = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const route = findRoute(routes, pathname);
    if (!route) return sendError(res, 404, 'NOT_FOUND', `nothing at ${pathname}: flickd serves /v1/ (API), /v2/ (OCI registry) and /console/ (web console)`);
    const identity = config.auth.identify(req);
    if (!(route.access ?? tokenOnly)(req, identity)) {
      res.setHeader('WWW-Authenticate', AUTH_CHALLENGE);
      res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
      const message =
        identity.kind === 'invalid'
          ? 'authentication failed: the token is wrong: use the one in <data-dir>/token on the host (FLICK_TOKEN)'
          : 'authentication required: send the host token (Authorization: Bearer <token>, or Basic with the token as password)';
      req.resume();
      return sendError(res, 401, 'UNAUTHORIZED', message);
    }
    route.handler(req, res).catch((err: unknown) => {
      log(`${req.method} ${pathname}: ${describeError(err)}`);
      if (!res.headersSent) sendError(res, 500, 'UNKNOWN', `internal error: ${describeError(err)}`);
      else res.destroy();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    server,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ errors: [{ code, message }] });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
