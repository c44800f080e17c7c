// The REST API /v1: turns each request into one controller call and its answer
// into the envelope (envelope.ts). No logic of its own beyond parsing; flickd
// mounts it under /v1/ behind its token check.
//
//   POST   /v1/instances                      create (and start unless autostart=false)
//   GET    /v1/instances[?limit=N&state=S&after=ID]   list (a page with `next` when limit is given: list-page.ts)
//   GET    /v1/instances/{id|name}            one instance
//   DELETE /v1/instances/{id|name}[?force=true][&drain_ms=N]   (N: wait up to N ms, at most 60000, for its requests in flight through the proxy)
//   PUT    /v1/instances/{id|name}/start|stop
//   PUT    /v1/instances/{id|name}/suspend[?tier=hot|cold]   standby now (cold on a hot one demotes it)
//   POST   /v1/instances/{id|name}/fork      {"name", "ports"?, "hostname"?, "volumes"?, "shared"?} a fork with
//                                             the source's memory and volumes at one instant (201, in standby)
//   GET    /v1/instances/{id|name}/metrics   wakes by tier, wake latency, parked requests (JSON)
//   GET    /v1/metrics                       the same for every instance, plus the hot standby tier
//   GET    /v1/instances/{id|name}/log[?follow=true]   text/plain, streamed with follow
//   GET    /v1/instances/{id|name}/wait?state=S[&timeout_ms=N]
//   GET    /v1/images
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Controller } from '../controller/controller.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { sendData, sendError } from './envelope.js';
import { listPage } from './list-page.js';
import { hostMetrics, oneInstanceMetrics, type MetricsController } from './metrics.js';
import type { InstanceProxyStats } from '../proxy/stats.js';
import { ApiError, CreateInstanceSchema, ForkInstanceSchema, WaitQuerySchema, instanceView, parseBody, toForkConfig, toInstanceConfig } from './schemas.js';

/** What the API needs from the controller (consumer-owned, so tests pass a small fake). */
export type ApiController = Pick<Controller, 'create' | 'list' | 'get' | 'start' | 'stop' | 'rm' | 'logs' | 'wait' | 'suspend' | 'fork'> & Partial<MetricsController> & Partial<Pick<Controller, 'lastWake'>>;

export interface ApiImages {
  list(): Promise<ReadonlyArray<{ ref: string; name: string; tag: string; digest: string; ready?: boolean }>>;
}

export interface ApiHandlerOptions {
  controller: ApiController;
  images: ApiImages;
  /** If set, requests must carry `Authorization: Bearer <token>` (flickd checks before mounting, so it passes none). */
  token?: string;
  /** The URL a user reaches an instance at (the proxy knows it); shown in instance views. */
  urlFor?: (rec: InstanceRecord) => string | undefined;
  /** The service an instance is a member of (src/services), shown in its view. */
  serviceOf?: (instanceId: string) => string | undefined;
  /** Largest request body accepted. */
  maxBodyBytes?: number;
  /** The ingress proxy's per-instance counters, for the metrics routes. */
  proxyStats?: () => InstanceProxyStats[];
  /** Requests in flight through the proxy (its hop listener's too) for an instance: what a DELETE with drain_ms waits for. */
  inFlight?: (instanceId: string) => number;
}

export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export function createApiHandler(opts: ApiHandlerOptions): ApiHandler {
  const { controller, images } = opts;
  const view = (rec: InstanceRecord) => instanceView(rec, opts.urlFor?.(rec), opts.serviceOf?.(rec.id), controller.lastWake?.(rec.id));
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;

  return async (req, res) => {
    try {
      if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
        req.resume();
        throw new ApiError('UNAUTHORIZED', 'authentication required: send the host token as "Authorization: Bearer <token>"', { kind: 'user' });
      }
      const url = new URL(req.url ?? '/', 'http://flickd');
      const parts = url.pathname.replace(/^\/v1\/?/, '').split('/').filter(Boolean).map(decodeSegment);
      const method = req.method ?? 'GET';
      const [collection, ref, action, extra] = parts;

      if (collection === 'images' && parts.length === 1) {
        allow(method, ['GET']);
        const list = await images.list();
        return sendData(res, 200, { images: list.map((i) => ({ ref: i.ref, name: i.name, tag: i.tag, digest: i.digest, ready: i.ready ?? true })) });
      }
      if (collection === 'metrics' && parts.length === 1) {
        allow(method, ['GET']);
        return sendData(res, 200, hostMetrics(metricsSources(opts)));
      }
      if (collection !== 'instances' || extra !== undefined) throw notFound(url.pathname);

      if (ref === undefined) {
        if (method === 'GET') {
          const page = listPage(controller.list(), url.searchParams);
          return sendData(res, 200, { instances: page.records.map(view), ...(page.next !== undefined ? { next: page.next } : {}) });
        }
        allow(method, ['GET', 'POST']);
        const body = parseBody(CreateInstanceSchema, await readJson(req, maxBody));
        const rec = await controller.create(toInstanceConfig(body));
        return sendData(res, 201, view(rec));
      }
      if (action === undefined) {
        if (method === 'GET') return sendData(res, 200, view(controller.get(ref)));
        allow(method, ['GET', 'DELETE']);
        const rec = controller.get(ref);
        const drain = url.searchParams.get('drain_ms');
        if (drain !== null && !/^\d{1,5}$/.test(drain)) throw new ApiError('BAD_REQUEST', `drain_ms must be a whole number of milliseconds up to 60000, not "${drain}"`, { kind: 'user' });
        const deadline = Date.now() + Math.min(Number(drain ?? 0), 60_000);
        while (opts.inFlight !== undefined && opts.inFlight(rec.id) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        await controller.rm(ref, { force: url.searchParams.get('force') === 'true' });
        return sendData(res, 200, { id: rec.id, name: rec.name, state: 'removed' });
      }
      switch (action) {
        case 'start':
          allow(method, ['PUT']);
          return sendData(res, 200, view(await controller.start(ref)));
        case 'stop':
          allow(method, ['PUT']);
          return sendData(res, 200, view(await controller.stop(ref)));
        case 'suspend': {
          allow(method, ['PUT']);
          const tier = url.searchParams.get('tier');
          if (tier !== null && tier !== 'hot' && tier !== 'cold') throw new ApiError('BAD_REQUEST', `tier must be "hot" or "cold", not "${tier}"`, { kind: 'user' });
          return sendData(res, 200, view(await controller.suspend(ref, tier ? { tier } : {})));
        }
        case 'fork': {
          allow(method, ['POST']);
          const body = parseBody(ForkInstanceSchema, await readJson(req, maxBody));
          const forked = await controller.fork(ref, toForkConfig(body));
          return sendData(res, 201, { ...view(forked.record), fork: { source: controller.get(ref).name, mode: forked.mode, duration_ms: Math.round(forked.durationMs) } });
        }
        case 'metrics':
          allow(method, ['GET']);
          return sendData(res, 200, oneInstanceMetrics(metricsSources(opts), ref));
        case 'wait': {
          allow(method, ['GET']);
          const q = parseBody(WaitQuerySchema, Object.fromEntries(url.searchParams));
          const ac = abortOnClose(req, res);
          const rec = await controller.wait(ref, q.state, { ...(q.timeout_ms !== undefined ? { timeoutMs: q.timeout_ms } : {}), signal: ac.signal });
          return sendData(res, 200, view(rec));
        }
        case 'log':
        case 'logs':
          allow(method, ['GET']);
          return await streamLog(controller, ref, url.searchParams.get('follow') === 'true', req, res);
        default:
          throw notFound(url.pathname);
      }
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, err);
    }
  };
}

/** A percent-decoded path segment; a malformed escape ("%", "%zz") is the client's mistake, not a server error. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError('BAD_REQUEST', `invalid request: the path segment "${segment}" is not valid percent-encoding`, { kind: 'user' });
  }
}

function metricsSources(opts: ApiHandlerOptions) {
  const c = opts.controller;
  if (c.metrics === undefined || c.hotStandby === undefined) throw new ApiError('NOT_FOUND', 'metrics are not available from this API', { kind: 'user' });
  return { controller: c as MetricsController, ...(opts.proxyStats ? { proxyStats: opts.proxyStats } : {}) };
}

async function streamLog(controller: ApiController, ref: string, follow: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const ac = abortOnClose(req, res);
  const chunks = controller.logs(ref, { follow, signal: ac.signal }); // throws INSTANCE_NOT_FOUND before any byte
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  for await (const chunk of chunks) {
    if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
  }
  res.end();
}

/** Aborts when the client goes away (a follower or waiter that hangs up). */
function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortController {
  const ac = new AbortController();
  res.once('close', () => ac.abort());
  req.once('aborted', () => ac.abort());
  return ac;
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) {
    throw new ApiError('METHOD_NOT_ALLOWED', `method ${method} is not allowed here: use ${methods.join(' or ')}`, { kind: 'user' });
  }
}

function notFound(pathname: string): ApiError {
  return new ApiError('NOT_FOUND', `no API route ${pathname}: see the routes in 'flick --help' (e.g. /v1/instances, /v1/images)`, { kind: 'user' });
}

/** The whole request body, refused past `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new ApiError('BAD_REQUEST', `request body is larger than ${maxBytes} bytes: send a smaller JSON document`, { kind: 'user' });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const text = (await readBody(req, maxBytes)).toString('utf8');
  if (text.trim() === '') throw new ApiError('INVALID_JSON', 'request body is empty: send a JSON object, e.g. {"image": "hello:latest"}', { kind: 'user' });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError('INVALID_JSON', `request body is not valid JSON (${(err as Error).message}): send a JSON object, e.g. {"image": "hello:latest"}`, { kind: 'user' });
  }
}
