// The REST API's services, /v1/services: each request one call on the
// services library (src/services), answered in the /v1 envelope. A service's
// members are instances: their own views are under /v1/instances.
//
//   POST   /v1/services            {"name", "replicas" | "autoscale": {min, max, target_inflight, cooldown_time_ms},
//                                    ...the fields of POST /v1/instances}
//   GET    /v1/services            list
//   GET    /v1/services/{name}     one service, with its members
//   DELETE /v1/services/{name}     remove it and its members
//   POST   /v1/services/{name}/deploy  {"image", "max_surge", "max_unavailable"}: a rolling deploy;
//                                    answers when every instance runs the image, or 409 after rolling back
//   PUT    /v1/services/{name}/scale   {"replicas": N}: create or remove instances (not for an autoscaled service)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import type { Services } from '../services/services.js';
import { MAX_REPLICAS } from '../services/services.js';
import type { ServiceRecord } from '../services/service-store.js';
import type { ScaleEvent } from '../services/autoscale.js';
import type { RemoteMember } from '../services/member-placement.js';
import { sendData, sendError } from './envelope.js';
import { readJson } from './handler.js';
import { ApiError, CreateInstanceSchema, parseBody, toInstanceConfig } from './schemas.js';

export interface ServicesApiOptions {
  services: Pick<Services, 'create' | 'list' | 'get' | 'rm' | 'members' | 'remoteMembers' | 'scaleEvents' | 'deploy' | 'scale'>;
  /** The URL the service answers at (the proxy knows it). */
  urlFor?: (name: string) => string | undefined;
}

export const CreateServiceSchema = CreateInstanceSchema.extend({
  name: z.string({ error: 'name must be a string: the service\'s name, e.g. "web"' }),
  replicas: z
    .number({ error: `replicas must be a whole number from 1 to ${MAX_REPLICAS}, e.g. 3` })
    .int({ error: `replicas must be a whole number from 1 to ${MAX_REPLICAS}, e.g. 3` })
    .min(1, { error: 'replicas must be at least 1' })
    .max(MAX_REPLICAS, { error: `replicas must be at most ${MAX_REPLICAS}` })
    .optional(),
  autoscale: z
    .strictObject(
      {
        min: z.number({ error: 'autoscale.min must be a whole number, e.g. 0' }).optional(),
        max: z.number({ error: 'autoscale.max must be a whole number, e.g. 8' }).optional(),
        target_inflight: z.number({ error: 'autoscale.target_inflight must be a whole number, e.g. 10' }).optional(),
        cooldown_time_ms: z.number({ error: 'autoscale.cooldown_time_ms must be a whole number of milliseconds, e.g. 2000' }).optional(),
      },
      { error: 'autoscale must be an object like {"min": 0, "max": 8, "target_inflight": 10, "cooldown_time_ms": 2000}' },
    )
    .optional(),
});

const count = (field: string) => z.number({ error: `${field} must be a whole number, e.g. 1` }).int({ error: `${field} must be a whole number, e.g. 1` }).min(0, { error: `${field} must not be negative` });
const DeploySchema = z.strictObject(
  { image: z.string({ error: 'image must name an image pushed to this host, e.g. "app:2"' }).min(1, { error: 'image must not be empty' }), max_surge: count('max_surge').optional(), max_unavailable: count('max_unavailable').optional() },
  { error: 'the body must be an object like {"image": "app:2", "max_surge": 1}' },
);

export const ScaleSchema = z.strictObject(
  {
    replicas: z
      .number({ error: `replicas must be a whole number from 0 to ${MAX_REPLICAS}, e.g. {"replicas": 3}` })
      .int({ error: `replicas must be a whole number from 0 to ${MAX_REPLICAS}, e.g. {"replicas": 3}` })
      .min(0, { error: 'replicas must not be negative' })
      .max(MAX_REPLICAS, { error: `replicas must be at most ${MAX_REPLICAS}` }),
  },
  { error: 'the body must be an object like {"replicas": 3}' },
);

/** A service as the API shows it (snake_case). */
export function serviceView(s: ServiceRecord, members: InstanceRecord[], url: string | undefined, scale?: { recent: ScaleEvent[]; totals: { up: number; down: number } }, remote: RemoteMember[] = []): Record<string, unknown> {
  const a = s.autoscale;
  return {
    name: s.name,
    image: s.template.image,
    replicas: s.replicas,
    autoscale: a ? { min: a.min, max: a.max, target_inflight: a.targetInFlight, cooldown_time_ms: a.cooldownTimeMs } : null,
    awake: members.filter((m) => m.status.state === 'running').length,
    scale_events: scale ? { up: scale.totals.up, down: scale.totals.down, recent: scale.recent } : null,
    url: url ?? null,
    // In a cluster, members on other hosts too (host: null for this host's), in the service's order.
    instances: s.members.flatMap((id): Array<{ id: string; name: string; state: string; image: string; host: string | null }> => {
      const here = members.find((m) => m.id === id);
      if (here) return [{ id: here.id, name: here.name, state: here.status.state, image: here.spec.image.ref, host: null }];
      const there = remote.find((r) => r.id === id);
      return there ? [{ id: there.id, name: there.name, state: there.state, image: there.image, host: there.host }] : [];
    }),
    deploying: s.deploy ? { image: s.deploy.image, started_at: s.deploy.startedAt, ...(s.deploy.rollingBack !== undefined ? { rolling_back: s.deploy.rollingBack } : {}) } : null,
    last_deploy: s.lastDeploy
      ? { image: s.lastDeploy.image, outcome: s.lastDeploy.outcome, reason: s.lastDeploy.reason ?? null, recreated: s.lastDeploy.recreated ?? 0, ended_at: s.lastDeploy.endedAt }
      : null,
    created_at: s.createdAt,
    updated_at: s.updatedAt,
  };
}

export function createServicesHandler(opts: ServicesApiOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { services } = opts;
  const view = (s: ServiceRecord) => serviceView(s, services.members(s.name), opts.urlFor?.(s.name), s.autoscale ? services.scaleEvents(s.name) : undefined, services.remoteMembers(s.name));
  return async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://flickd');
      const parts = url.pathname.replace(/^\/v1\/services\/?/, '').split('/').filter(Boolean);
      if (parts.length === 2 && parts[1] === 'deploy') {
        allow(req.method ?? 'GET', ['POST']);
        const body = parseBody(DeploySchema, await readJson(req, 64 * 1024));
        const done = await services.deploy(decodeName(parts[0]!), {
          image: body.image,
          ...(body.max_surge !== undefined ? { maxSurge: body.max_surge } : {}),
          ...(body.max_unavailable !== undefined ? { maxUnavailable: body.max_unavailable } : {}),
        });
        return sendData(res, 200, view(done));
      }
      if (parts.length === 2 && parts[1] === 'scale') {
        allow(req.method ?? 'GET', ['PUT']);
        const name = decodeName(parts[0]!);
        services.get(name); // 404 before the body's 400
        const body = parseBody(ScaleSchema, await readJson(req, 64 * 1024));
        return sendData(res, 200, view(await services.scale(name, body.replicas)));
      }
      if (!/^\/v1\/services(\/|$)/.test(url.pathname) || parts.length > 1) throw new ApiError('NOT_FOUND', `no API route ${url.pathname}: services are at /v1/services[/{name}]`, { kind: 'user' });
      const method = req.method ?? 'GET';
      const name = parts[0] === undefined ? undefined : decodeName(parts[0]);
      if (name === undefined) {
        if (method === 'GET') return sendData(res, 200, { services: services.list().map(view) });
        allow(method, ['GET', 'POST']);
        const body = parseBody(CreateServiceSchema, await readJson(req, 1024 * 1024));
        const { replicas, autoscale, ...instanceBody } = body;
        if (replicas === undefined && autoscale === undefined) throw new ApiError('BAD_REQUEST', 'invalid request: a service needs replicas (e.g. 3) or autoscale (e.g. {"min": 0, "max": 8})', { kind: 'user' });
        if (replicas !== undefined && autoscale !== undefined) throw new ApiError('BAD_REQUEST', 'invalid request: give replicas or autoscale, not both (autoscale keeps max instances)', { kind: 'user' });
        const { name: _name, ...instance } = toInstanceConfig(instanceBody);
        const policy = autoscale
          ? {
              autoscale: {
                ...(autoscale.min !== undefined ? { min: autoscale.min } : {}),
                ...(autoscale.max !== undefined ? { max: autoscale.max } : {}),
                ...(autoscale.target_inflight !== undefined ? { targetInFlight: autoscale.target_inflight } : {}),
                ...(autoscale.cooldown_time_ms !== undefined ? { cooldownTimeMs: autoscale.cooldown_time_ms } : {}),
              },
            }
          : {};
        return sendData(res, 201, view(await services.create({ name: body.name, replicas: replicas ?? 1, instance, ...policy })));
      }
      if (method === 'GET') return sendData(res, 200, view(services.get(name)));
      allow(method, ['GET', 'DELETE']);
      const removed = await services.rm(name);
      return sendData(res, 200, { name: removed.name, state: 'removed' });
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, err);
    }
  };
}

function decodeName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError('BAD_REQUEST', `invalid request: the path segment "${segment}" is not valid percent-encoding`, { kind: 'user' });
  }
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) throw new ApiError('METHOD_NOT_ALLOWED', `method ${method} is not allowed here: use ${methods.join(' or ')}`, { kind: 'user' });
}
