// The /v2/ HTTP surface of the registry: parses each request into one call on
// Registry and writes the answer the OCI distribution spec v1.1 asks for
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#endpoints):
// statuses, Location, Range, Docker-Content-Digest, Content-Length, OCI-Subject,
// and the spec's JSON error bodies. Authentication happens before this, in the daemon.
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { describeError } from '../errors.js';
import type { ContentRange } from './blob-store.js';
import { MAX_MANIFEST_BYTES } from './manifest-schema.js';
import { isDigest, isRepositoryName } from './names.js';
import { RegistryError } from './registry-error.js';
import type { Registry } from './registry.js';

export type RegistryHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

type Route =
  | { op: 'base' }
  | { op: 'catalog' }
  | { op: 'manifest'; name: string; reference: string }
  | { op: 'tags'; name: string }
  | { op: 'referrers'; name: string; digest: string }
  | { op: 'uploads'; name: string }
  | { op: 'upload'; name: string; id: string }
  | { op: 'blob'; name: string; digest: string };

/** Matches the raw (not normalized, not percent-decoded) path, so ".." and "%2e" can only fail name validation. */
export function parseRoute(pathname: string): Route | undefined {
  if (!pathname.startsWith('/v2/')) return undefined;
  const rest = pathname.slice('/v2/'.length);
  if (rest === '') return { op: 'base' };
  if (rest === '_catalog') return { op: 'catalog' };
  let m: RegExpMatchArray | null;
  if ((m = rest.match(/^(.+)\/manifests\/([^/]+)$/))) return { op: 'manifest', name: m[1]!, reference: m[2]! };
  if ((m = rest.match(/^(.+)\/tags\/list$/))) return { op: 'tags', name: m[1]! };
  if ((m = rest.match(/^(.+)\/referrers\/([^/]+)$/))) return { op: 'referrers', name: m[1]!, digest: m[2]! };
  if ((m = rest.match(/^(.+)\/blobs\/uploads\/?$/))) return { op: 'uploads', name: m[1]! };
  if ((m = rest.match(/^(.+)\/blobs\/uploads\/([^/]+)$/))) return { op: 'upload', name: m[1]!, id: m[2]! };
  if ((m = rest.match(/^(.+)\/blobs\/([^/]+)$/))) return { op: 'blob', name: m[1]!, digest: m[2]! };
  return undefined;
}

export function createRegistryHandler(registry: Registry, log: (line: string) => void = () => undefined): RegistryHandler {
  return async (req, res) => {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    const [pathname = '/', search = ''] = (req.url ?? '/').split('?', 2);
    const query = new URLSearchParams(search);
    try {
      const route = parseRoute(pathname);
      if (!route) throw new RegistryError('UNSUPPORTED', `unsupported: no registry endpoint at ${pathname}`, { status: 404 });
      if ('name' in route && !isRepositoryName(route.name)) {
        throw new RegistryError('NAME_INVALID', `invalid repository name "${route.name}": use lowercase letters, digits and . _ - / separators`);
      }
      await dispatch(registry, route, req, res, query);
    } catch (err) {
      if (!(err instanceof RegistryError)) log(`registry: ${req.method} ${pathname}: ${describeError(err)}`);
      sendError(req, res, err);
    }
  };
}

async function dispatch(registry: Registry, route: Route, req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
  const method = req.method ?? 'GET';
  const allow = (...methods: string[]) => {
    if (!methods.includes(method)) throw new RegistryError('UNSUPPORTED', `unsupported: ${method} is not allowed here`, { status: 405 });
  };
  switch (route.op) {
    case 'base':
      allow('GET', 'HEAD');
      return sendJson(req, res, 200, {});
    case 'catalog': {
      allow('GET');
      return sendJson(req, res, 200, { repositories: await registry.repos.listRepositories() });
    }
    case 'blob': {
      requireDigest(route.digest);
      if (method === 'DELETE') {
        await registry.deleteBlob(route.name, route.digest);
        return sendEmpty(res, 202);
      }
      allow('GET', 'HEAD');
      const size = await registry.statBlob(route.name, route.digest);
      return sendBlob(req, res, registry.blobPath(route.digest), size, route.digest);
    }
    case 'uploads': {
      allow('POST');
      const mount = query.get('mount');
      if (mount !== null) {
        requireDigest(mount);
        const from = query.get('from') ?? undefined;
        if (from !== undefined && !isRepositoryName(from)) throw new RegistryError('NAME_INVALID', `invalid repository name "${from}" in from=`);
        if (await registry.mountBlob(route.name, from, mount)) return sendCreatedBlob(res, route.name, mount);
      }
      const digest = query.get('digest');
      const id = await registry.startUpload(route.name);
      if (digest !== null && mount === null) {
        requireDigest(digest);
        // Single POST: the whole blob is in this request's body.
        await registry.completeUpload(route.name, id, digest, req);
        return sendCreatedBlob(res, route.name, digest);
      }
      req.resume();
      return sendUploadStatus(res, route.name, id, 0, 202);
    }
    case 'upload': {
      const { name, id } = route;
      if (method === 'GET') return sendUploadStatus(res, name, id, await registry.uploadOffset(name, id), 204);
      if (method === 'DELETE') {
        await registry.cancelUpload(name, id);
        return sendEmpty(res, 204);
      }
      if (method === 'PATCH') {
        const offset = await registry.appendUpload(name, id, req, contentRange(req));
        return sendUploadStatus(res, name, id, offset, 202);
      }
      allow('PUT');
      const digest = query.get('digest');
      if (digest === null) throw new RegistryError('DIGEST_INVALID', 'digest invalid: the closing PUT needs ?digest=<digest of the whole blob>');
      requireDigest(digest);
      await registry.completeUpload(name, id, digest, hasBody(req) ? req : undefined, contentRange(req));
      if (!hasBody(req)) req.resume();
      return sendCreatedBlob(res, name, digest);
    }
    case 'manifest': {
      if (method === 'PUT') {
        const bytes = await readLimited(req, MAX_MANIFEST_BYTES);
        const r = await registry.putManifest(route.name, route.reference, bytes, req.headers['content-type']);
        res.setHeader('Location', `/v2/${route.name}/manifests/${r.digest}`);
        res.setHeader('Docker-Content-Digest', r.digest);
        if (r.subject) res.setHeader('OCI-Subject', r.subject);
        return sendEmpty(res, 201);
      }
      if (method === 'DELETE') {
        await registry.deleteManifest(route.name, route.reference);
        return sendEmpty(res, 202);
      }
      allow('GET', 'HEAD');
      const m = await registry.getManifest(route.name, route.reference);
      res.setHeader('Docker-Content-Digest', m.digest);
      res.setHeader('Content-Type', m.mediaType);
      res.setHeader('Content-Length', m.size);
      res.writeHead(200);
      if (method === 'HEAD') return void res.end();
      return pipeline(fs.createReadStream(m.path), res);
    }
    case 'tags': {
      allow('GET');
      const all = await registry.listTags(route.name);
      const last = query.get('last');
      const nParam = query.get('n');
      const n = nParam !== null && /^\d+$/.test(nParam) ? Number(nParam) : undefined;
      let tags = last !== null ? all.filter((t) => t > last) : all;
      if (n !== undefined) {
        const more = tags.length > n;
        tags = tags.slice(0, n);
        const lastTag = tags[tags.length - 1];
        if (more && n > 0 && lastTag !== undefined) {
          res.setHeader('Link', `</v2/${route.name}/tags/list?n=${n}&last=${encodeURIComponent(lastTag)}>; rel="next"`);
        }
      }
      return sendJson(req, res, 200, { name: route.name, tags });
    }
    case 'referrers': {
      allow('GET');
      if (!isDigest(route.digest)) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${route.digest}"`);
      const artifactType = query.get('artifactType') ?? undefined;
      const index = await registry.referrers(route.name, route.digest, artifactType);
      if (artifactType !== undefined) res.setHeader('OCI-Filters-Applied', 'artifactType');
      res.setHeader('Content-Type', index.mediaType);
      return sendJson(req, res, 200, index, index.mediaType);
    }
  }
}

function requireDigest(digest: string): void {
  if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `digest invalid: "${digest}" is not a sha256 or sha512 digest`);
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Content-Range of a chunk: the spec's `<start>-<end>`, also taking the RFC form `bytes <start>-<end>/<total>`. */
function contentRange(req: IncomingMessage): ContentRange | undefined {
  const h = req.headers['content-range'];
  if (h === undefined) return undefined;
  const m = h.trim().match(/^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/);
  if (!m || Number(m[2]) < Number(m[1])) {
    throw new RegistryError('BLOB_UPLOAD_INVALID', `blob upload invalid: Content-Range "${h}" is not <start>-<end>`, { status: 416 });
  }
  return { start: Number(m[1]), end: Number(m[2]) };
}

async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    req.resume();
    throw new RegistryError('MANIFEST_INVALID', `manifest invalid: ${declared} bytes is over the ${limit}-byte limit`, { status: 413 });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      req.resume();
      throw new RegistryError('MANIFEST_INVALID', `manifest invalid: over the ${limit}-byte limit`, { status: 413 });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function sendUploadStatus(res: ServerResponse, name: string, id: string, offset: number, status: number): void {
  res.setHeader('Location', `/v2/${name}/blobs/uploads/${id}`);
  // "0-<last byte>"; with nothing received, registries answer 0-0 (distribution does the same).
  res.setHeader('Range', `0-${Math.max(offset - 1, 0)}`);
  res.setHeader('Docker-Upload-UUID', id);
  sendEmpty(res, status);
}

function sendCreatedBlob(res: ServerResponse, name: string, digest: string): void {
  res.setHeader('Location', `/v2/${name}/blobs/${digest}`);
  res.setHeader('Docker-Content-Digest', digest);
  sendEmpty(res, 201);
}

/** A blob, or the byte range the client asked for (RFC 9110 section 14; one range only). */
async function sendBlob(req: IncomingMessage, res: ServerResponse, file: string, size: number, digest: string): Promise<void> {
  res.setHeader('Docker-Content-Digest', digest);
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('ETag', `"${digest}"`);
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = req.headers.range?.match(/^bytes=(\d*)-(\d*)$/);
  if (range && (range[1] !== '' || range[2] !== '')) {
    if (range[1] === '') {
      start = Math.max(size - Number(range[2]), 0);
    } else {
      start = Number(range[1]);
      if (range[2] !== '') end = Math.min(Number(range[2]), size - 1);
    }
    if (start >= size || start > end) {
      res.setHeader('Content-Range', `bytes */${size}`);
      return sendEmpty(res, 416);
    }
    status = 206;
    res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
  }
  res.setHeader('Content-Length', size === 0 ? 0 : end - start + 1);
  res.writeHead(status);
  if (req.method === 'HEAD' || size === 0) return void res.end();
  await pipeline(fs.createReadStream(file, { start, end }), res);
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.setHeader('Content-Length', 0);
  res.writeHead(status);
  res.end();
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(status);
  res.end(req.method === 'HEAD' ? undefined : text);
}

function sendError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const e = err instanceof RegistryError ? err : undefined;
  const body = e ? e.toBody() : { errors: [{ code: 'UNKNOWN', message: `internal error: ${describeError(err)}` }] };
  // A request body we did not read would otherwise stall the connection.
  if (!req.readableEnded) res.setHeader('Connection', 'close');
  sendJson(req, res, e ? e.status : 500, body);
}
