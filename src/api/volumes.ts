// The REST API's volumes, /v1/volumes: each request one VolumeManager call
// (src/volumes), answered in the /v1 envelope.
//
//   POST   /v1/volumes                 {"name", "size"} create (size "1G", "512M" or bytes)
//   GET    /v1/volumes                 list
//   GET    /v1/volumes/{name}          one volume
//   DELETE /v1/volumes/{name}          remove (409 while an instance holds it)
//   POST   /v1/volumes/{name}/clone    {"name"} a copy-on-write clone
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { VolumeManager } from '../volumes/volume-manager.js';
import type { VolumeInfo } from '../volumes/volume-state.js';
import { parseVolumeSize } from '../volumes/names.js';
import { sendData, sendError } from './envelope.js';
import { readJson } from './handler.js';
import { ApiError, parseBody } from './schemas.js';

export interface VolumesApiOptions {
  volumes: Pick<VolumeManager, 'create' | 'list' | 'get' | 'rm' | 'clone'>;
  /** Whether the instance `id` has a VMM process now (running or paused): its volumes cannot be cloned then. */
  hasProcess: (id: string) => boolean;
}

const CreateVolumeSchema = z.strictObject(
  {
    name: z.string({ error: 'name must be a string, e.g. "pgdata"' }),
    size: z.union([z.string(), z.number()], { error: 'size must be a size such as "1G" or "512M"' }),
  },
  { error: 'the body must be an object like {"name": "pgdata", "size": "1G"}' },
);
const CloneVolumeSchema = z.strictObject({ name: z.string({ error: 'name must be a string: the new volume\'s name' }) }, { error: 'the body must be an object like {"name": "pgdata-copy"}' });

/** A volume as the API shows it (snake_case). */
export function volumeView(v: VolumeInfo): Record<string, unknown> {
  return {
    id: v.id,
    name: v.name,
    size_bytes: v.sizeBytes,
    allocated_bytes: v.allocatedBytes,
    state: v.state,
    attached_to: v.attachments.map((a) => ({ instance: a.holder, read_only: a.readOnly, since: a.since })),
    cloned_from: v.clonedFrom ?? null,
    created_at: v.createdAt,
  };
}

export function createVolumesHandler(opts: VolumesApiOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { volumes } = opts;
  return async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://flickd');
      if (!/^\/v1\/volumes(\/|$)/.test(url.pathname)) throw new ApiError('NOT_FOUND', `no API route ${url.pathname}: volumes are at /v1/volumes`, { kind: 'user' });
      const parts = url.pathname.replace(/^\/v1\/volumes\/?/, '').split('/').filter(Boolean);
      const [name, action, extra] = parts.map((p) => decodeURIComponent(p));
      const method = req.method ?? 'GET';
      if (extra !== undefined || (action !== undefined && action !== 'clone')) throw new ApiError('NOT_FOUND', `no API route ${url.pathname}: volumes are at /v1/volumes[/{name}[/clone]]`, { kind: 'user' });
      if (name === undefined) {
        if (method === 'GET') return sendData(res, 200, { volumes: volumes.list().map(volumeView) });
        allow(method, ['GET', 'POST']);
        const body = parseBody(CreateVolumeSchema, await readJson(req, 64 * 1024));
        return sendData(res, 201, volumeView(await volumes.create(body.name, parseVolumeSize(body.size))));
      }
      if (action === 'clone') {
        allow(method, ['POST']);
        const body = parseBody(CloneVolumeSchema, await readJson(req, 64 * 1024));
        return sendData(res, 201, volumeView(await volumes.clone(name, body.name, opts.hasProcess)));
      }
      if (method === 'GET') return sendData(res, 200, volumeView(volumes.get(name)));
      allow(method, ['GET', 'DELETE']);
      await volumes.rm(name);
      return sendData(res, 200, { name, state: 'removed' });
    } catch (err) {
      if (err instanceof URIError) return sendError(res, new ApiError('BAD_REQUEST', 'invalid request: a path segment is not valid percent-encoding', { kind: 'user' }));
      sendError(res, err);
    }
  };
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) throw new ApiError('METHOD_NOT_ALLOWED', `method ${method} is not allowed here: use ${methods.join(' or ')}`, { kind: 'user' });
}
