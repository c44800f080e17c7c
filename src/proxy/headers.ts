// Header rewriting between the client and the instance, on raw header arrays
// (`[name, value, name, value, ...]`, as node's `rawHeaders`) so no header
// object is built per request.
//
// Hop-by-hop fields (RFC 9110 §7.6.1, https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1):
// a proxy removes `Connection` and every field it nominates, and should also
// remove the connection-specific `Proxy-Connection`, `Keep-Alive`, `TE`,
// `Transfer-Encoding` and `Upgrade`. Two are handled on purpose:
// - `Transfer-Encoding` (RFC 9112 §6.1, §7): node decodes the chunked coding on
//   the way in; keeping the header makes node re-apply it on the next hop
//   (any other codings in the value stay in the bytes, so the value still fits).
//   Content-Length passes through untouched, so bodies stream in both framings.
// - `Upgrade` + `Connection: upgrade` are re-sent on an upgrade request, which
//   is a hop-by-hop handshake the proxy itself relays (RFC 9110 §7.8).
// `Expect` is dropped: node already answered `100 Continue` (RFC 9110 §10.1.1).
// `Proxy-Authorization` is credentials for this proxy (RFC 9110 §11.7.4), never the
// instance's: it is dropped, and a cluster hop adds its own (hop.ts). So is
// `Flick-Route`, which names the instance a hop is for (hop.ts: ROUTE_HEADER).

export interface ForwardedFor {
  proto: 'http' | 'https';
  /** Keep X-Forwarded-* from the client and append to them (only behind a trusted load balancer). */
  trustForwarded: boolean;
  /** `Via` pseudonym (RFC 9110 §7.6.3), or undefined to send none. */
  via: string | undefined;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'expect', 'proxy-authorization', 'flick-route']);
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/** The value of the first field `name` (lower case), without building a header object. */
export function fieldOf(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === name.length && n.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}

/** The value of the first `Host` field, without building a header object. */
export function hostOf(raw: readonly string[]): string | undefined {
  return fieldOf(raw, 'host');
}

/** Whether a request has a body: it has one only with Content-Length > 0 or Transfer-Encoding (RFC 9112 §6.3). */
export function requestHasBody(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true;
    if (name.length === 14 && name.toLowerCase() === 'content-length' && raw[i + 1] !== '0') return true;
  }
  return false;
}

/** Response fields without their framing (for a body relayed decoded and ended by closing the connection). */
export function withoutFraming(headers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase();
    if (lower === 'transfer-encoding' || lower === 'content-length') continue;
    out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/** Lower-case field names a `Connection` header nominates (RFC 9110 §7.6.1), or undefined if none. */
function nominated(raw: readonly string[]): Set<string> | undefined {
  let names: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const t = token.trim().toLowerCase();
      // `close` and `keep-alive` are connection options, not field names (but `keep-alive` is removed anyway).
      if (t !== '' && t !== 'close') (names ??= new Set()).add(t);
    }
  }
  return names;
}

/** Whether `name` must not be forwarded. */
function isHopByHop(lower: string, extra: Set<string> | undefined): boolean {
  return HOP_BY_HOP.has(lower) || (extra !== undefined && extra.has(lower));
}

/** Request headers for the instance: hop-by-hop fields removed, X-Forwarded-* and Via set. */
export function forwardRequestHeaders(
  raw: readonly string[],
  upgrade: string | undefined,
  forwarded: ForwardedFor,
  clientAddress: string | undefined,
): string[] {
  const extra = nominated(raw);
  const out: string[] = [];
  let host: string | undefined;
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  let priorHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (isHopByHop(lower, extra)) continue;
    if (FORWARDED.has(lower)) {
      if (!forwarded.trustForwarded) continue;
      if (lower === 'x-forwarded-for') priorFor = priorFor === undefined ? value : `${priorFor}, ${value}`;
      else if (lower === 'x-forwarded-proto') priorProto ??= value;
      else priorHost ??= value;
      continue;
    }
    if (lower === 'host') host ??= value;
    out.push(name, value);
  }
  const client = clientAddress === undefined ? 'unknown' : stripMappedV4(clientAddress);
  out.push('X-Forwarded-For', priorFor === undefined ? client : `${priorFor}, ${client}`);
  out.push('X-Forwarded-Proto', priorProto ?? forwarded.proto);
  if (host !== undefined) out.push('X-Forwarded-Host', priorHost ?? host);
  if (forwarded.via !== undefined) out.push('Via', `1.1 ${forwarded.via}`);
  if (upgrade !== undefined) out.push('Connection', 'Upgrade', 'Upgrade', upgrade);
  return out;
}

/** Response headers for the client: hop-by-hop fields removed (node sets its own `Connection`), Via added. */
export function forwardResponseHeaders(raw: readonly string[], via: string | undefined): string[] {
  const extra = nominated(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (isHopByHop(name.toLowerCase(), extra)) continue;
    out.push(name, raw[i + 1]!);
  }
  if (via !== undefined) out.push('Via', `1.1 ${via}`);
  return out;
}

/** A response head written by hand on a raw socket (upgrades that were refused or not accepted). */
export function rawResponseHead(status: number, reason: string, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

function stripMappedV4(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

// A Host value (RFC 9110 §7.2 / RFC 3986 §3.2.2): a reg-name of unreserved characters (letters,
// digits, '-', '.', '_', '~'), or an IP literal in brackets, and an optional port.
const HOST_VALUE = /^(?:[A-Za-z0-9._~-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{0,5})?$/;

/**
 * Why a request head must be refused before it is routed (a 400 message), or
 * undefined if it may go on. Node's parser already refuses the framing attacks
 * (CL+TE, duplicate or malformed lengths, obs-fold, bad chunk sizes, bare CR/LF);
 * these are the ambiguities it lets through, where the proxy and the app could
 * read one request two ways: more than one Host (RFC 9112 §3.2: 400), a Host that
 * is no host name, a target that is not a path (absolute-form would override Host,
 * RFC 9112 §3.2.2), and an Upgrade that carries a body (its bytes would reach the
 * app as the first bytes of the new protocol).
 */
export function malformedRequest(method: string | undefined, url: string | undefined, raw: readonly string[], upgrade: boolean): string | undefined {
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (host !== undefined) return 'more than one Host header: send exactly one';
    host = raw[i + 1]!;
  }
  if (host !== undefined && !HOST_VALUE.test(host)) return `the Host header "${printable(host)}" is not a host name: send <name>.<domain>[:port]`;
  if (url === undefined || !(url.startsWith('/') || (url === '*' && method === 'OPTIONS'))) return `the request target "${printable(url ?? '')}" is not a path: send the path (e.g. GET /index.html) and the host in Host`;
  if (upgrade && requestHasBody(raw)) return 'an Upgrade request must not carry a body: send the handshake as a GET without Content-Length or Transfer-Encoding';
  return undefined;
}

/** At most 100 characters, control characters escaped, for quoting client input in an answer. */
function printable(text: string): string {
  const cut = text.length > 100 ? `${text.slice(0, 100)}…` : text;
  return cut.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
