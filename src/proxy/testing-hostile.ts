// Test helpers for the proxy's hostile-input tests (the component test beside
// the proxy and the integration test against a real flickd): raw-socket
// requests, and the table of hostile request heads with the answer each must
// get. Not used by the product.
import net from 'node:net';

export interface RawAnswer {
  /** The status of the first response, if one came. */
  status?: number;
  /** Everything read (latin1), for messages. */
  text: string;
  /** Nothing came back and the connection stayed open until the deadline. */
  timedOut: boolean;
  /** The connection was closed (by the proxy) before the deadline, rather than a whole answer read. */
  closed: boolean;
}

/** Writes `data` on a fresh connection to 127.0.0.1:`port` and reads until it closes or `timeoutMs` passes. */
export function rawRequest(port: number, data: string | Buffer, timeoutMs = 5_000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    let settled = false;
    const done = (timedOut: boolean, closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve({ ...(m ? { status: Number(m[1]) } : {}), text: got, timedOut: timedOut && got === '', closed });
    };
    const timer = setTimeout(() => done(true, false), timeoutMs);
    s.on('connect', () => s.write(data));
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      // One whole answer (head and its Content-Length body) is all we judge; a kept-alive connection may stay open.
      const end = got.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(got.slice(0, end));
      if (end !== -1 && length && got.length >= end + 4 + Number(length[1])) done(false, false);
    });
    s.on('error', () => done(false, true));
    s.on('close', () => done(false, true));
  });
}

export interface HostileCase {
  what: string;
  /** The request, for a routed host `host` (e.g. `app.localhost`). */
  data(host: string): string;
  /** The status it must get. */
  status: number;
  /** Part of the answer's body: it says what was wrong. */
  says: RegExp;
}

/** The request smuggled inside the hostile shapes: the instance must never see it. */
export const SMUGGLED_PATH = '/smuggled-request';

const h = (host: string) => `Host: ${host}\r\n`;
const smuggled = (host: string) => `GET ${SMUGGLED_PATH} HTTP/1.1\r\n${h(host)}\r\n`;

export const HOSTILE_CASES: readonly HostileCase[] = [
  { what: 'a 20 KiB header', data: (host) => `GET / HTTP/1.1\r\n${h(host)}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431, says: /too large/ },
  { what: '3,000 headers', data: (host) => `GET / HTTP/1.1\r\n${h(host)}${Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`, status: 431, says: /too large/ },
  { what: 'Content-Length and Transfer-Encoding (CL.TE)', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'Transfer-Encoding and Content-Length (TE.CL)', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'two different Content-Lengths', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'two equal Content-Lengths', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, status: 400, says: /unambiguous/ },
  { what: 'a Content-Length list', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Content-Length: 3, 3\r\n\r\nabc`, status: 400, says: /unambiguous/ },
  { what: 'Transfer-Encoding: xchunked', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'a space before the colon of Transfer-Encoding', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'chunked, then identity', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${smuggled(host)}`, status: 400, says: /unambiguous/ },
  { what: 'a folded header (obs-fold)', data: (host) => `GET / HTTP/1.1\r\n${h(host)}X-Fold: a\r\n b\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'a folded Transfer-Encoding', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'a chunk size that is not hex', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, status: 400, says: /CHUNK_SIZE/ },
  { what: 'a chunk size beyond 64 bits', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n`, status: 400, says: /CHUNK_SIZE/ },
  { what: 'a negative chunk size', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n`, status: 400, says: /CHUNK_SIZE/ },
  { what: 'a 20 KiB chunk extension', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Transfer-Encoding: chunked\r\n\r\n3;${'x'.repeat(20_000)}\r\nabc\r\n0\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'bare LF line ends', data: (host) => `GET / HTTP/1.1\n${h(host).replace('\r', '')}\n`, status: 400, says: /unambiguous/ },
  { what: 'a bare CR in a header', data: (host) => `GET / HTTP/1.1\r\n${h(host).replace('\r\n', '\r')}X: y\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'two Host headers', data: (host) => `GET / HTTP/1.1\r\n${h(host)}Host: other.localhost\r\n\r\n`, status: 400, says: /more than one Host/ },
  { what: 'a Host with a space', data: () => `GET / HTTP/1.1\r\nHost: a b.localhost\r\n\r\n`, status: 400, says: /not a host name/ },
  { what: 'a Host with path traversal', data: () => `GET / HTTP/1.1\r\nHost: ../../etc/passwd\r\n\r\n`, status: 400, says: /not a host name/ },
  { what: 'a Host with userinfo', data: (host) => `GET / HTTP/1.1\r\nHost: ${host}@evil.example\r\n\r\n`, status: 400, says: /not a host name/ },
  { what: 'a Host with a NUL', data: () => `GET / HTTP/1.1\r\nHost: app\0.localhost\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'a Host of 300 characters', data: () => `GET / HTTP/1.1\r\nHost: ${'a'.repeat(300)}.localhost\r\n\r\n`, status: 400, says: /not a host name/ },
  { what: 'an unrouted Host', data: () => `GET / HTTP/1.1\r\nHost: nobody-here.localhost\r\n\r\n`, status: 404, says: /no instance is routed/ },
  { what: 'no Host at all', data: () => `GET / HTTP/1.1\r\n\r\n`, status: 400, says: /^/ },
  { what: 'an absolute-form target naming another host', data: (host) => `GET http://${host}/x HTTP/1.1\r\nHost: other.localhost\r\n\r\n`, status: 400, says: /not a path/ },
  { what: 'CONNECT', data: (host) => `CONNECT ${host}:80 HTTP/1.1\r\n${h(host)}\r\n`, status: 405, says: /reverse proxy/ },
  { what: 'an HTTP/2 preface', data: () => `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, status: 400, says: /unambiguous/ },
  { what: 'a websocket upgrade carrying a body', data: (host) => `POST / HTTP/1.1\r\n${h(host)}Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello`, status: 400, says: /must not carry a body/ },
  { what: 'a websocket upgrade without a Host', data: () => `GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, status: 400, says: /no Host header/ },
  { what: 'a websocket upgrade to an unrouted host', data: () => `GET / HTTP/1.1\r\nHost: nobody-here.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, status: 404, says: /no instance is routed/ },
  { what: 'a websocket upgrade with a Host that is no name', data: () => `GET / HTTP/1.1\r\nHost: <script>\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, status: 400, says: /not a host name/ },
];
