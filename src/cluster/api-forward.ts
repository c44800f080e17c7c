// Any host's /v1/instances acts on the whole cluster (mounted in front of the
// API handler on a cluster host):
//   POST /v1/instances[?host=NAME]   placed: on NAME, else on the best host (fewest
//                                    instances, then most free memory; this host on a tie)
//   /v1/instances/{name}[/…]         an instance another host holds: the call goes there
// A call for another host is forwarded to its API, one hop, with the cluster's
// token (pinned there with ?host=, so it is never placed again); the answer comes
// back as that host gave it. Everything else goes to this host's own handler.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { sendError } from '../api/envelope.js';
import { FlickError } from '../errors.js';
import type { HostDirectory } from './membership.js';

export interface ForwardConfig {
  self: string;
  token: string;
  directory: () => HostDirectory | undefined;
  /** The host that holds instance `ref` (a name), per the catalog; undefined if none. */
  ownerOf: (ref: string) => string | undefined;
  /** Whether this host holds `ref` (a name or an id). */
  holds: (ref: string) => boolean;
  local: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** The host a create without ?host= goes to: fewest instances, then most free memory; `self` wins a tie. */
export function placeCreate(dir: Pick<HostDirectory, 'list'>, self: string, pending: ReadonlyMap<string, number> = new Map()): string {
  let best: { name: string; instances: number; free: number } | undefined;
  for (const h of dir.list()) {
    if (!h.load) continue;
    const c = { name: h.record.name, instances: h.load.instances + (pending.get(h.record.name) ?? 0), free: h.load.memoryFreeBytes };
    const better = !best || c.instances < best.instances || (c.instances === best.instances && (c.free > best.free * 1.1 || (c.free * 1.1 >= best.free && c.name === self)));
    if (better) best = c;
  }
  return best?.name ?? self;
}

export function createForwarder(c: ForwardConfig): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  // Creates sent elsewhere that the target's load does not show yet (it refreshes every 2 s).
  const pending = new Map<string, number>();
  return async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://flickd');
      const parts = url.pathname.replace(/^\/v1\/instances\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
      let target: string | undefined;
      if (parts.length === 0 && req.method === 'POST') {
        const asked = url.searchParams.get('host');
        const dir = c.directory();
        target = asked ?? (dir ? placeCreate(dir, c.self, pending) : c.self);
        if (asked && dir && !dir.get(asked)?.load) {
          req.resume();
          throw new FlickError('HOST_UNKNOWN', `host "${asked}" is not an up host of this cluster: pick one 'flick hosts' lists as up`, { kind: 'user' });
        }
      } else if (parts[0] !== undefined && !c.holds(parts[0])) {
        target = c.ownerOf(parts[0]);
      }
      if (target === undefined || target === c.self) return await c.local(req, res);
      const api = c.directory()?.get(target)?.record.api;
      if (!api || !c.directory()?.get(target)?.load) {
        req.resume();
        throw new FlickError('HOST_DOWN', `host ${target}, which holds this instance, is down: a stateless instance moves to another host within seconds, a stateful one is back with its host`);
      }
      if (parts.length === 0) pending.set(target, (pending.get(target) ?? 0) + 1);
      let body: Buffer | undefined;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
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
        if (parts.length === 0) setTimeout(() => pending.set(target!, Math.max(0, (pending.get(target!) ?? 1) - 1)), 3000).unref();
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
