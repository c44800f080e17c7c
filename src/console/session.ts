// The console's sessions: a browser signs in with the host token (POST) or with
// a one-time code that `flick console` asked for with the token; either way it
// gets a random session id in an HttpOnly, SameSite=Strict cookie (RFC 6265bis)
// and a CSRF token that its page sends as X-CSRF-Token on every mutating
// request. The token itself never reaches the browser's storage or a URL.
// In memory: flickd's restart signs every browser out.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'flick_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface ConsoleSession {
  id: string;
  csrf: string;
  expiresAt: number;
}

export interface SessionStoreOptions {
  /** How long a session lives without use. Default 12 h. */
  idleMs?: number;
  /** How long a one-time code may wait to be exchanged. Default 60 s. */
  codeTtlMs?: number;
  now?: () => number;
}

const digest = (s: string) => createHash('sha256').update(s).digest();
/** Equal strings, in a time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

export class SessionStore {
  readonly #sessions = new Map<string, ConsoleSession>();
  readonly #codes = new Map<string, number>(); // code digest (hex) -> expiry
  readonly #idleMs: number;
  readonly #codeTtlMs: number;
  readonly #now: () => number;

  constructor(opts: SessionStoreOptions = {}) {
    this.#idleMs = opts.idleMs ?? 12 * 3600_000;
    this.#codeTtlMs = opts.codeTtlMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  get codeTtlMs(): number {
    return this.#codeTtlMs;
  }

  /** A new session (after the token or a code was checked). */
  open(): ConsoleSession {
    this.#sweep();
    const s = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), expiresAt: this.#now() + this.#idleMs };
    this.#sessions.set(s.id, s);
    return s;
  }

  /** The session a request's cookie names, refreshed; undefined if none or expired. */
  fromRequest(req: IncomingMessage): ConsoleSession | undefined {
    const id = parseCookies(req.headers.cookie)[SESSION_COOKIE];
    if (id === undefined) return undefined;
    const s = this.#sessions.get(id);
    if (s === undefined) return undefined;
    if (s.expiresAt <= this.#now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    s.expiresAt = this.#now() + this.#idleMs;
    return s;
  }

  close(id: string): void {
    this.#sessions.delete(id);
  }

  /** A one-time code (for `flick console`'s URL); only its digest is kept. */
  issueCode(): { code: string; expiresAt: number } {
    this.#sweep();
    const code = randomBytes(24).toString('base64url');
    const expiresAt = this.#now() + this.#codeTtlMs;
    this.#codes.set(digest(code).toString('hex'), expiresAt);
    return { code, expiresAt };
  }

  /** Exchanges a code for a session, once; undefined if unknown, used or expired. */
  redeem(code: string): ConsoleSession | undefined {
    const key = digest(code).toString('hex');
    const expiry = this.#codes.get(key);
    this.#codes.delete(key);
    if (expiry === undefined || expiry <= this.#now()) return undefined;
    return this.open();
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(k);
    for (const [k, e] of this.#codes) if (e <= now) this.#codes.delete(k);
  }
}

/** The Set-Cookie value for a session (or, with none, one that clears it). */
export function sessionCookie(session: ConsoleSession | undefined, maxAgeS = 12 * 3600): string {
  const value = session ? session.id : '';
  return `${SESSION_COOKIE}=${value}; Path=/console/; HttpOnly; SameSite=Strict; Max-Age=${session ? maxAgeS : 0}`;
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}
