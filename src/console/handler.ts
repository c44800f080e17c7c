// The web console's HTTP surface, mounted by flickd at /console/ on the API's
// own listener. It authenticates for itself (the daemon's route lets every
// request through to it): a session cookie (session.ts) or the host token.
//   GET  /console/                     the page (built front end, assets.ts)
//   GET  /console/login?code=C         a one-time code from `flick console` -> session cookie, back to /console/
//   POST /console/api/login            {"token": T} -> session cookie
//   POST /console/api/codes            with the token: a one-time code and the URL that redeems it
//   GET  /console/api/session          whether signed in, and the page's CSRF token
//   POST /console/api/logout
//   GET  /console/api/events           the live feed (feed.ts)
//   GET  /console/api/images           images with their sizes (images.ts)
//   *    /console/api/v1/...           the REST API itself (its validation and messages), for the page
// Every mutating request needs the session's CSRF token in X-CSRF-Token (or the
// host token), and a same-origin Origin when the browser sends one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../daemon/auth.js';
import { ConsoleAssets, securityHeaders } from './assets.js';
import type { ConsoleFeed } from './feed.js';
import { consoleImages, type ConsoleImageSources } from './images.js';
import { CSRF_HEADER, sameSecret, sessionCookie, type ConsoleSession, type SessionStore } from './session.js';

export interface ConsoleHandlerOptions {
  sessions: SessionStore;
  feed: ConsoleFeed;
  assets: ConsoleAssets;
  images: ConsoleImageSources;
  /** The /v1 handler (it sees the request with its path rewritten to /v1/...). */
  api: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Who the daemon says sent the request (the host token or not). */
  identify(req: IncomingMessage): Identity;
  /** Checks a token typed into the login form. */
  verifyToken(token: string): boolean;
}

type Caller = { kind: 'token' } | { kind: 'session'; session: ConsoleSession };

const MAX_LOGIN_BYTES = 4096;

export function createConsoleHandler(opts: ConsoleHandlerOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { sessions, assets } = opts;
  return async (req, res) => {
    securityHeaders(res);
    const url = new URL(req.url ?? '/', 'http://flickd');
    const p = url.pathname;
    const method = req.method ?? 'GET';
    if (p === '/console') return redirect(res, '/console/');

    if (!p.startsWith('/console/api/')) {
      req.resume();
      if (p === '/console/login') {
        const session = sessions.redeem(url.searchParams.get('code') ?? '');
        if (session) res.setHeader('Set-Cookie', sessionCookie(session));
        // Back to the page either way; the code leaves the address bar (and the history).
        return redirect(res, session ? '/console/' : '/console/#/login?error=code');
      }
      if (method !== 'GET' && method !== 'HEAD') return fail(res, 405, 'METHOD_NOT_ALLOWED', `method ${method} is not allowed here: use GET`);
      if (!assets.built) return fail(res, 503, 'CONSOLE_NOT_BUILT', `the console's front end is not built (${assets.dir} is empty): run 'bash scripts/setup.sh' (or 'npm run build:console')`);
      if (!assets.serve(p.slice('/console/'.length), req, res)) return fail(res, 404, 'NOT_FOUND', `nothing at ${p}: the console is at /console/`);
      return;
    }

    const route = p.slice('/console/api/'.length);
    const mutating = method !== 'GET' && method !== 'HEAD';
    if (mutating && !sameOrigin(req)) {
      req.resume();
      return fail(res, 403, 'CSRF_REJECTED', 'cross-origin request refused: the console only takes mutating requests from its own pages');
    }
    if (route === 'login') {
      if (method !== 'POST') return fail(res, 405, 'METHOD_NOT_ALLOWED', 'use POST with {"token": "..."}');
      // A JSON body: a cross-site <form> cannot send one without a CORS preflight, which flickd never answers.
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
        req.resume();
        return fail(res, 415, 'BAD_REQUEST', 'send the token as JSON: {"token": "..."} with Content-Type: application/json');
      }
      const token = await readToken(req);
      if (token === undefined || !opts.verifyToken(token)) return fail(res, 401, 'UNAUTHORIZED', 'wrong token: use the one in <data-dir>/token on the host, or run `flick console` for a sign-in link');
      const session = sessions.open();
      res.setHeader('Set-Cookie', sessionCookie(session));
      return json(res, 200, { csrf: session.csrf });
    }

    const caller = callerOf(req);
    // The page asks first whether it is signed in: an answer, not an error (a 401 would be a console error in the browser).
    if (route === 'session' && method === 'GET' && caller?.kind !== 'token') {
      req.resume();
      return json(res, 200, caller ? { signed_in: true, csrf: caller.session.csrf } : { signed_in: false });
    }
    if (caller === undefined) {
      req.resume();
      return fail(res, 401, 'UNAUTHORIZED', 'not signed in: sign in with the host token, or open the link `flick console` prints');
    }
    if (route === 'codes') {
      req.resume();
      if (caller.kind !== 'token') return fail(res, 403, 'FORBIDDEN', 'sign-in codes are for the token holder: run `flick console` on a machine that has the token');
      if (method !== 'POST') return fail(res, 405, 'METHOD_NOT_ALLOWED', 'use POST');
      const { code, expiresAt } = sessions.issueCode();
      return json(res, 201, { code, path: `/console/login?code=${encodeURIComponent(code)}`, expires_at: new Date(expiresAt).toISOString() });
    }
    if (mutating && caller.kind === 'session' && !csrfOk(req, caller.session)) {
      req.resume();
      return fail(res, 403, 'CSRF_REJECTED', `missing or wrong CSRF token: the console sends it as ${CSRF_HEADER}; reload the page`);
    }
    switch (route) {
      case 'session':
        req.resume();
        return fail(res, 400, 'BAD_REQUEST', 'no console session: this request carried the token, not a session cookie');
      case 'logout':
        req.resume();
        if (!mutating) return fail(res, 405, 'METHOD_NOT_ALLOWED', 'use POST');
        if (caller.kind === 'session') sessions.close(caller.session.id);
        res.setHeader('Set-Cookie', sessionCookie(undefined));
        return json(res, 200, { signed_out: true });
      case 'events':
        req.resume();
        return opts.feed.attach(req, res);
      case 'images':
        req.resume();
        return json(res, 200, { images: await consoleImages(opts.images) });
      default:
        if (route === 'v1' || route.startsWith('v1/')) {
          req.url = `/${route}${url.search}`;
          return opts.api(req, res);
        }
        req.resume();
        return fail(res, 404, 'NOT_FOUND', `no console route ${p}`);
    }
  };

  function callerOf(req: IncomingMessage): Caller | undefined {
    if (opts.identify(req).kind === 'token') return { kind: 'token' };
    const session = sessions.fromRequest(req);
    return session ? { kind: 'session', session } : undefined;
  }
}

function csrfOk(req: IncomingMessage, session: ConsoleSession): boolean {
  const sent = req.headers[CSRF_HEADER];
  return typeof sent === 'string' && sameSecret(sent, session.csrf);
}

/** No Origin (curl, the CLI) or one naming this very host. */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return origin === `http://${req.headers.host}` || origin === `https://${req.headers.host}`;
}

async function readToken(req: IncomingMessage): Promise<string | undefined> {
  let text = '';
  for await (const chunk of req as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length > MAX_LOGIN_BYTES) return undefined;
  }
  try {
    const body = JSON.parse(text) as { token?: unknown };
    return typeof body.token === 'string' ? body.token.trim() : undefined;
  } catch {
    return undefined;
  }
}

function redirect(res: ServerResponse, to: string): void {
  res.writeHead(303, { Location: to, 'Cache-Control': 'no-store' });
  res.end();
}

function json(res: ServerResponse, status: number, data: unknown): void {
  const body = `${JSON.stringify({ status: 'success', data })}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

/** The API's error envelope, so the page reads every answer one way. */
function fail(res: ServerResponse, status: number, code: string, message: string): void {
  const body = `${JSON.stringify({ status: 'error', error: { code, message } })}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}
