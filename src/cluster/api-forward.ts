// Any host's /v1/instances acts on the whole cluster (mounted in front of the
// API handler on a cluster host):
//   POST /v1/instances[?host=NAME]   placed: on NAME, else on the best host
//                                    (placement.ts: free RAM and CPU, the image or
//                                    its template there, replicas spread; this
//                                    host on a tie)
//   /v1/instances/{name}[/…]         an instance another host holds: the call goes there
// A call for another host is forwarded to its API, one hop, with the cluster's
// token (pinned there with ?host=, so it is never placed again); the answer comes
// back as that host gave it. Everything else goes to this host's own handler.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { sendError } from '../api/envelope.js';
import { readBody } from '../api/handler.js';
import { DEFAULT_MEMORY_MB } from '../controller/spec.js';
import { FlickError } from '../errors.js';
import type { HostDirectory } from './membership.js';
import { groupOf, type PendingCreates, type PlacementRequest } from './placement.js';

export interface ForwardConfig {
  self: string;
  token: string;
  directory: () => HostDirectory | undefined;
  /** The host a create without ?host= goes to (placement.ts), counting `pending` as placed. */
  place: (req: PlacementRequest, pending: PendingCreates) => string;
  /** The host that holds instance `ref` (a name), per the catalog; undefined if none. */
  ownerOf: (ref: string) => string | undefined;
  /** Whether this host holds `ref` (a name or an id). */
  holds: (ref: string) => boolean;
  local: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** A create's body is read to place it (the API's own limit is far below this). */
const MAX_PLACED_BODY = 1 << 20;

/**
 * The request again, its body already read: for this host's own handler after placing it here (which
 * reads method, url, headers and the body as a stream). Not a second IncomingMessage on the socket:
 * one that ends without its parser marks itself aborted and destroys the socket.
 */
function replay(req: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = Object.assign(Readable.from([body]), { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, httpVersion: req.httpVersion, socket: req.socket });
  return copy as unknown as IncomingMessage;
}

/** What placement needs from a create's body; undefined when it is no create (this host's handler then says why). */
export function placementRequest(body: Buffer): PlacementRequest | undefined {
  try {
    const b = JSON.parse(body.toString('utf8')) as { image?: unknown; memory_mb?: unknown };
    if (typeof b.image !== 'string') return undefined;
    return { image: b.image, memoryMb: typeof b.memory_mb === 'number' ? b.memory_mb : DEFAULT_MEMORY_MB };
  } catch {
    return undefined;
  }
}

export function createForwarder(c: ForwardConfig): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  // Creates sent elsewhere that the target's load and the catalog do not show yet (the load refreshes every 2 s).
  const pending = new Map<string, string[]>();
  return async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://flickd');
      const parts = url.pathname.replace(/^\/v1\/instances\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
      let target: string | undefined;
      let body: Buffer | undefined;
      let group: string | undefined;
      if (parts.length === 0 && req.method === 'POST') {
        const asked = url.searchParams.get('host');
        const dir = c.directory();
        if (asked && dir && !dir.get(asked)?.load) {
          req.resume();
          throw new FlickError('HOST_UNKNOWN', `host "${asked}" is not an up host of this cluster: pick one 'flick hosts' lists as up`, { kind: 'user' });
        }
        body = await readBody(req, MAX_PLACED_BODY);
        const placing = placementRequest(body);
        group = placing && groupOf(placing.image);
        target = asked ?? (placing && dir ? c.place(placing, pending) : c.self);
        if (target === c.self) return await c.local(replay(req, body), res);
      } else if (parts[0] !== undefined && !c.holds(parts[0])) {
        target = c.ownerOf(parts[0]);
      }
      if (target === undefined || target === c.self) return await c.local(req, res);
      const api = c.directory()?.get(target)?.record.api;
      if (!api || !c.directory()?.get(target)?.load) {
        req.resume();
        throw new FlickError('HOST_DOWN', `host ${target}, which holds this instance, is down: a stateless instance moves to another host within seconds, a stateful one is back with its host`);
      }
      const sentTo = target;
      if (group !== undefined) pending.set(sentTo, [...(pending.get(sentTo) ?? []), group]);
      if (body === undefined && req.method !== 'GET' && req.method !== 'HEAD') {
        const chunks: Buffer[] = [];
        for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
        body = Buffer.concat(chunks);
      }
      const forwarded = new URL(`${api}${url.pathname}`);
      url.searchParams.forEach((v, k) => forwarded.searchParams.set(k, v));
      forwarded.searchParams.set('host', target);
      const answer = await fetch(forwarded, {
        method: req.method ?? 'GET',
        headers: { authorization: `Bearer ${c.token}`, ...(req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : {}) },
        ...(body ? { body } : {}),
      }).finally(() => {
        // By then the catalog holds the create (or it failed): it no longer needs counting here.
        if (group !== undefined) setTimeout(() => pending.set(sentTo, (pending.get(sentTo) ?? []).filter((g, i, all) => i !== all.indexOf(group!))), 3000).unref();
      });
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json', 'x-flick-host': target });
      if (answer.body) Readable.fromWeb(answer.body as Parameters<typeof Readable.fromWeb>[0]).pipe(res);
      else res.end();
    } catch (err) {
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    }
  };
}
