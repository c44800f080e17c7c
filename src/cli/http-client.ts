// The CLI's client for flickd: one place that knows the host's URL and token,
// turns "connection refused" into an error that says what to do, and turns the
// host's JSON error bodies (the registry's `{"errors":[{code,message}]}`, or
// `{"error":{code,message}}`) into FlickErrors whose code decides the exit code.
import type { Readable } from 'node:stream';
import { Readable as NodeReadable } from 'node:stream';
import type { z } from 'zod';
import { FlickError, describeError } from '../errors.js';
import type { HostConfig } from './host-config.js';
import { CliError } from './cli-error.js';

export type HostClientErrorCode = 'UNAVAILABLE' | 'UNAUTHORIZED' | 'NOT_FOUND' | 'HOST_ERROR' | 'BAD_RESPONSE' | (string & {});

export interface HostRequestInit {
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
  signal?: AbortSignal;
}

export class HostClient {
  readonly url: string;
  #token: string | undefined;

  constructor(config: HostConfig) {
    this.url = config.url.replace(/\/+$/, '');
    this.#token = config.token;
  }

  /** `path` is host-relative ("/v1/…") or an absolute URL on the same host (registry Location headers). */
  resolve(path: string): string {
    return new URL(path, `${this.url}/`).toString();
  }

  /** Sends a request; any status comes back as a Response (use `check` or `json` to turn failures into errors). */
  async request(method: string, path: string, init: HostRequestInit = {}): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    type Body = NonNullable<RequestInit['body']>;
    let body: Body | undefined;
    if (init.body instanceof NodeReadable) body = NodeReadable.toWeb(init.body) as unknown as Body;
    else body = init.body;
    try {
      return await fetch(this.resolve(path), {
        method,
        headers,
        body,
        signal: init.signal,
        redirect: 'follow',
        // Node's fetch needs this for a streamed request body.
        ...(init.body instanceof NodeReadable ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new CliError('UNAVAILABLE', `cannot reach flickd at ${this.url}: ${describeError((err as { cause?: unknown }).cause ?? err)}: start it with 'flick host up' or set FLICK_HOST`, {
        cause: err,
      });
    }
  }

  /** Throws a FlickError for a non-2xx response (consuming its body); returns the response otherwise. */
  async check(res: Response, what: string): Promise<Response> {
    if (res.ok) return res;
    throw await this.errorFrom(res, what);
  }

  /** Sends JSON (when `body` is given) and parses the answer with `schema`. */
  async json<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    const res = await this.request(method, path, {
      headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    await this.check(res, `${method} ${path}`);
    const parsed = schema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) throw new CliError('BAD_RESPONSE', `${method} ${path}: flickd answered something unexpected: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  async errorFrom(res: Response, what: string): Promise<FlickError> {
    let code: string | undefined;
    let message: string | undefined;
    try {
      const body = (await res.json()) as { errors?: Array<{ code?: string; message?: string }>; error?: { code?: string; message?: string } };
      const e = body.errors?.[0] ?? body.error;
      code = typeof e?.code === 'string' ? e.code : undefined;
      message = typeof e?.message === 'string' ? e.message : undefined;
    } catch {
      // Not JSON: the status alone has to do.
    }
    if (res.status === 401) {
      return new CliError('UNAUTHORIZED', `${what}: flickd refused the token: set FLICK_TOKEN to the host's token (in <data-dir>/token on the host)`, { kind: 'user' });
    }
    const kind = res.status >= 400 && res.status < 500 ? 'user' : 'system';
    return new FlickError(code ?? (res.status === 404 ? 'NOT_FOUND' : 'HOST_ERROR'), `${what}: ${message ?? `flickd answered ${res.status} ${res.statusText}`}`, {
      kind,
      details: { status: res.status },
    });
  }
}
