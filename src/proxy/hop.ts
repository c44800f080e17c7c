// The hop listener: where other hosts' proxies send requests for this host's
// instances (a cluster's proxy-to-proxy hop), apart from the public ingress.
// Every request and upgrade on it must carry the cluster's credential as
// `Proxy-Authorization: Bearer <credential>` (RFC 9110 §11.7.4: credentials for
// the next inbound proxy, consumed by it: the proxy never passes the field on to
// an instance). Without it, or with another, it is refused with 407 before it is
// routed. X-Forwarded-* from an authenticated hop are kept (the sending proxy
// set them from its own client), and only this host's own instances are served
// there: a hop is never forwarded again, so two hosts whose catalogs disagree
// for a moment cannot bounce a request between them.
import crypto from 'node:crypto';

export interface HopConfig {
  /** Where the hop listener is bound; port 0 picks a free port (see `Proxy.hopAddress`). */
  listen: { host: string; port: number };
  /** The credential every hop carries (a cluster's token). */
  credential: string;
  /** Whether an instance id is one of this host's own (a hop's route must be). */
  serves: (instanceId: string) => boolean;
}

export const HOP_REALM = 'flick-cluster';

/**
 * On a hop, the host name of the instance it is for, as the instance's record holds it
 * (`<name>.localhost`, or its own): a service balanced on another host sends its member
 * requests whose Host is the service's. Read only on the hop listener, dropped everywhere.
 */
export const ROUTE_HEADER = 'flick-route';

/** The raw header pair a sending proxy adds to a hop. */
export function hopHeaders(credential: string): readonly string[] {
  return ['Proxy-Authorization', `Bearer ${credential}`];
}

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();

/**
 * Why a request on the hop listener is refused (the 407 text), or undefined when it
 * carries the credential, once. Compared in constant time (over digests, so the
 * length leaks nothing either).
 */
export function hopRefusal(raw: readonly string[], credential: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 19 || name.toLowerCase() !== 'proxy-authorization') continue;
    if (value !== undefined) return 'more than one Proxy-Authorization field: a hop carries exactly one\n';
    value = raw[i + 1]!;
  }
  if (value === undefined) return 'this is the cluster hop listener: a request here carries the cluster\'s credential (Proxy-Authorization: Bearer <token>); clients use the public ingress\n';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  if (!m || !crypto.timingSafeEqual(digest(m[1]!), digest(credential))) return 'the cluster credential in Proxy-Authorization is not this cluster\'s: a hop is refused without it\n';
  return undefined;
}

export function notHereMessage(instanceId: string): string {
  return `instance ${instanceId} is not on this host: a cluster hop is never forwarded again (the sender's catalog is behind; it catches up within a moment)\n`;
}

/** The CONNECT request a sending proxy writes first on a raw TCP hop to `hostPort`'s route (hop-connect.ts). */
export function tunnelRequest(hostPort: number, headers: readonly string[]): string {
  let head = `CONNECT flick-tcp:${hostPort} HTTP/1.1\r\nHost: flick-tcp:${hostPort}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}
