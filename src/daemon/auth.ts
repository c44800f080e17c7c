// flickd's one credential: a random bearer token made at first start and kept in
// <data-dir>/token (mode 0600, the data dir 0700). The CLI sends it as
// `Authorization: Bearer <token>`. OCI clients without a token server
// (skopeo/buildah/podman `--creds user:<token>`) answer a `Basic` challenge
// (RFC 7617) with any user name and the token as password; containers/image
// picks the first challenge scheme it knows from the /v2/ ping, so flickd only
// ever offers Basic.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';

export const TOKEN_FILE = 'token';
export const AUTH_CHALLENGE = 'Basic realm="flick"';

/** Who sent a request: the token holder, nobody (no or empty credentials), or someone with a wrong credential. */
export type Identity =
  | { kind: 'token' }
  | { kind: 'anonymous'; loopback: boolean }
  | { kind: 'invalid'; loopback: boolean };

/** Reads the host token, creating it (and a private data dir) on first start. */
export function ensureToken(dataDir: string): string {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700);
  const file = path.join(dataDir, TOKEN_FILE);
  try {
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token.length >= 32) {
      fs.chmodSync(file, 0o600);
      return token;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  storeToken(dataDir, token);
  return token;
}

/** Replaces the host token (a host joining a cluster takes the cluster's); atomic, mode 0600. */
export function storeToken(dataDir: string, token: string): void {
  const file = path.join(dataDir, TOKEN_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export class TokenAuth {
  #digest: Buffer;

  constructor(token: string) {
    this.#digest = createHash('sha256').update(token).digest();
  }

  /** Whether `candidate` is the host token (the console's login form). */
  verify(candidate: string): boolean {
    return this.#matches(candidate);
  }

  #matches(candidate: string): boolean {
    // Compare digests, so the comparison takes the same time whatever the candidate's length.
    return timingSafeEqual(createHash('sha256').update(candidate).digest(), this.#digest);
  }

  identify(req: IncomingMessage): Identity {
    const loopback = isLoopback(req.socket.remoteAddress);
    const header = req.headers.authorization?.trim();
    if (!header) return { kind: 'anonymous', loopback };
    const space = header.indexOf(' ');
    const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
    const value = space < 0 ? '' : header.slice(space + 1).trim();
    if (scheme === 'bearer') return this.#matches(value) ? { kind: 'token' } : { kind: 'invalid', loopback };
    if (scheme === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const password = colon < 0 ? '' : decoded.slice(colon + 1);
      // containers/image sends empty Basic credentials when it has none: that is anonymous, not wrong.
      if (password === '' && (colon <= 0)) return { kind: 'anonymous', loopback };
      return this.#matches(password) ? { kind: 'token' } : { kind: 'invalid', loopback };
    }
    return { kind: 'invalid', loopback };
  }
}
