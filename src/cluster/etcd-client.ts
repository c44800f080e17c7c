// A small etcd v3 client over etcd's JSON gateway (grpc-gateway: POST /v3/kv/range,
// /v3/kv/txn, /v3/lease/*, /v3/watch; https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/).
// Why the gateway and not the `etcd3` npm package (gRPC): it is plain HTTP+JSON, which
// flickd already speaks through undici, adds no dependency, and shows exactly what the
// server said (a watch cancelled for compaction carries `compact_revision`; a lapsed
// lease answers its keep-alive without a TTL), which the cluster code must act on.
// Keys and values are base64 on the wire, 64-bit numbers are decimal strings; here keys
// and values are UTF-8 strings and revisions plain numbers (safe below 2^53).
//
// Several endpoints: a call goes to the last endpoint that answered and moves on to the
// next on a connection error or a 5xx, so one member of three may die unnoticed.
import fs from 'node:fs';
import type { Agent, Dispatcher } from 'undici';

/**
 * undici is loaded on first use, not on import: loading it installs undici 7 as
 * the process's global fetch dispatcher, which refuses the hand-set
 * Content-Length that Node's own fetch accepts (`flick push` sends one), and
 * every CLI command imports this module through the daemon's constants.
 */
let undiciModule: Promise<typeof import('undici')> | undefined;
const loadUndici = () => (undiciModule ??= import('undici'));
import { FlickError } from '../errors.js';

export type EtcdErrorCode = 'ETCD_UNAVAILABLE' | 'ETCD_REQUEST_FAILED' | 'ETCD_COMPACTED' | 'ETCD_LEASE_NOT_FOUND' | 'ETCD_INVALID_ENDPOINT';
export class EtcdError extends FlickError<EtcdErrorCode> {}

export interface EtcdTls {
  /** PEM files: the CA that signed etcd's server certificates, and this host's client certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface EtcdClientConfig {
  /** Client URLs of the members, e.g. http://10.0.0.1:2379. */
  endpoints: string[];
  tls?: EtcdTls;
  /** Per unary request (a watch has none). Default 5 s. */
  timeoutMs?: number;
}

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease the key is attached to, '0' for none (64-bit ids stay strings). */
  lease: string;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store's revision when the range was read: watch from revision + 1. */
  revision: number;
}

/** A txn compare (etcd Compare): on the key's mod/create revision, version, value or lease. */
export type Compare =
  | { key: string; target: 'MOD' | 'CREATE' | 'VERSION'; result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'; value: number }
  | { key: string; target: 'VALUE'; result: 'EQUAL' | 'NOT_EQUAL'; value: string }
  | { key: string; target: 'LEASE'; result: 'EQUAL' | 'NOT_EQUAL'; value: string };

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { delete: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** The kvs of each range op, in order (empty lists for puts and deletes). */
  ranges: KeyValue[][];
}

export type WatchEvent = { type: 'put'; kv: KeyValue } | { type: 'delete'; key: string; modRevision: number };

export interface WatchHandle {
  /** Ends the watch; safe to call twice. */
  cancel(): void;
  /** Settles when the stream ends: resolves on cancel(), rejects with ETCD_COMPACTED or ETCD_UNAVAILABLE otherwise. */
  readonly done: Promise<void>;
}

const enc = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const dec = (s: string | undefined) => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));
/** One attempt at one member; the call as a whole has EtcdClientConfig.timeoutMs. */
const ATTEMPT_MS = 1500;
const num = (s: string | number | undefined) => (s === undefined ? 0 : Number(s));

/** The key just past every key that starts with `prefix`: etcd's range_end for a prefix. */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i]! += 1;
      return out.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64'); // all 0xff: to the end of the keyspace
}

interface RawKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

function toKv(raw: RawKv): KeyValue {
  return {
    key: dec(raw.key),
    value: dec(raw.value),
    createRevision: num(raw.create_revision),
    modRevision: num(raw.mod_revision),
    version: num(raw.version),
    lease: raw.lease ?? '0',
  };
}

function rangeBody(key: string, prefix?: boolean): Record<string, unknown> {
  return { key: enc(key), ...(prefix ? { range_end: prefixEnd(key) } : {}) };
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  #dispatcher: Dispatcher | undefined;
  readonly #connect: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
  readonly #timeoutMs: number;
  #current = 0;
  #closed = false;

  /** The endpoint calls go to first (the last one that answered). */
  get currentEndpoint(): string {
    return this.endpoints[this.#current]!;
  }

  constructor(config: EtcdClientConfig) {
    if (config.endpoints.length === 0) throw new EtcdError('ETCD_INVALID_ENDPOINT', 'no etcd endpoint given: pass --cluster-etcd http://HOST:2379[,…]', { kind: 'user' });
    for (const e of config.endpoints) {
      let u: URL | undefined;
      try {
        u = new URL(e);
      } catch {
        u = undefined;
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
        throw new EtcdError('ETCD_INVALID_ENDPOINT', `etcd endpoint "${e}" is not an http(s) URL: write e.g. http://127.0.0.1:2379`, { kind: 'user' });
      }
    }
    this.endpoints = config.endpoints.map((e) => e.replace(/\/+$/, ''));
    this.#timeoutMs = config.timeoutMs ?? 5000;
    const tls = config.tls;
    this.#connect =
      tls && (tls.caFile || tls.certFile)
        ? {
            ...(tls.caFile ? { ca: fs.readFileSync(tls.caFile) } : {}),
            ...(tls.certFile ? { cert: fs.readFileSync(tls.certFile) } : {}),
            ...(tls.keyFile ? { key: fs.readFileSync(tls.keyFile) } : {}),
          }
        : undefined;
  }

  /**
   * One POST to the gateway. Tries the endpoints in turn from the last good
   * one, each attempt bounded (a member that lost its leader holds a request
   * until a new one is elected, ~1-3 s), until the call's deadline.
   */
  async #call(path: string, body: unknown, timeoutMs = this.#timeoutMs): Promise<any> {
    let last: unknown;
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; ; i++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (i > 0 && i % this.endpoints.length === 0) await new Promise((r) => setTimeout(r, 100));
      const at = (this.#current + i) % this.endpoints.length;
      const res = await this.#post(this.endpoints[at]!, path, body, AbortSignal.timeout(Math.min(left, ATTEMPT_MS))).catch((err: unknown) => {
        last = err;
        return undefined;
      });
      if (res === undefined) continue;
      const text = await res.text().catch(() => '');
      let json: any;
      try {
        json = JSON.parse(text);
      } catch {
        last = new Error(`HTTP ${res.status}: not JSON`);
        continue;
      }
      if (json.error !== undefined || res.status >= 400) {
        const message = String(json.message ?? json.error ?? `HTTP ${res.status}`);
        // gRPC UNAVAILABLE (14: no leader, member stopping) or DEADLINE_EXCEEDED (4): another member may serve.
        if (json.code === 14 || json.code === 4) {
          last = new Error(message);
          continue;
        }
        this.#current = at;
        if (json.code === 5 && /lease/i.test(path)) throw new EtcdError('ETCD_LEASE_NOT_FOUND', `etcd: ${message}`);
        if (json.code === 11 && /compacted/.test(message)) throw new EtcdError('ETCD_COMPACTED', `etcd: ${message}`);
        throw new EtcdError('ETCD_REQUEST_FAILED', `etcd ${path}: ${message}`);
      }
      this.#current = at;
      return json;
    }
    throw new EtcdError('ETCD_UNAVAILABLE', `etcd is unreachable at ${this.endpoints.join(', ')} (${reason(last)}): check that the etcd members are up (and, over TLS, --cluster-etcd-ca/-cert/-key)`, { cause: last });
  }

  async #post(endpoint: string, path: string, body: unknown, signal: AbortSignal) {
    if (this.#closed) throw new EtcdError('ETCD_UNAVAILABLE', 'the etcd client is closed');
    const undici = await loadUndici();
    if (this.#connect && !this.#dispatcher) this.#dispatcher = new undici.Agent({ connect: this.#connect });
    return undici.fetch(`${endpoint}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
      signal,
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
    });
  }

  async range(key: string, opts: { prefix?: boolean; revision?: number; limit?: number } = {}): Promise<RangeResult> {
    const r = await this.#call('/v3/kv/range', { ...rangeBody(key, opts.prefix), ...(opts.revision ? { revision: String(opts.revision) } : {}), ...(opts.limit ? { limit: String(opts.limit) } : {}) });
    return { kvs: ((r.kvs ?? []) as RawKv[]).map(toKv), revision: num(r.header?.revision) };
  }

  /**
   * Whether etcd serves a linearizable read within `timeoutMs` (which needs a
   * leader and a quorum): the host-side fence asks this of its own etcd path.
   */
  async reachable(timeoutMs = 1000): Promise<boolean> {
    return this.#call('/v3/kv/range', { ...rangeBody('/', false), limit: '1', keys_only: true }, timeoutMs).then(
      () => true,
      () => false,
    );
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async put(key: string, value: string, opts: { lease?: string } = {}): Promise<number> {
    const r = await this.#call('/v3/kv/put', { key: enc(key), value: enc(value), ...(opts.lease ? { lease: opts.lease } : {}) });
    return num(r.header?.revision);
  }

  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const r = await this.#call('/v3/kv/deleterange', rangeBody(key, opts.prefix));
    return num(r.deleted);
  }

  /** A transaction: if every compare holds, `success` runs, else `failure`; atomically. */
  async txn(compare: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    const cmp = compare.map((c) => {
      const base = { key: enc(c.key), target: c.target, result: c.result };
      if (c.target === 'VALUE') return { ...base, value: enc(c.value) };
      if (c.target === 'LEASE') return { ...base, lease: c.value };
      const field = { MOD: 'mod_revision', CREATE: 'create_revision', VERSION: 'version' }[c.target];
      return { ...base, [field]: String(c.value) };
    });
    const op = (o: TxnOp) => {
      if ('put' in o) return { request_put: { key: enc(o.put.key), value: enc(o.put.value), ...(o.put.lease ? { lease: o.put.lease } : {}) } };
      if ('delete' in o) return { request_delete_range: rangeBody(o.delete.key, o.delete.prefix) };
      return { request_range: rangeBody(o.range.key, o.range.prefix) };
    };
    const r = await this.#call('/v3/kv/txn', { compare: cmp, success: success.map(op), failure: failure.map(op) });
    const ranges = ((r.responses ?? []) as any[]).map((x) => ((x.response_range?.kvs ?? []) as RawKv[]).map(toKv));
    return { succeeded: r.succeeded === true, revision: num(r.header?.revision), ranges };
  }

  /** A new lease; its id is a 64-bit number, kept as its decimal string. */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = await this.#call('/v3/lease/grant', { TTL: String(ttlSeconds) });
    return { id: String(r.ID), ttl: num(r.TTL) };
  }

  /** Renews a lease; its remaining TTL in seconds, 0 if it has lapsed. */
  async leaseKeepAlive(id: string): Promise<number> {
    // The gateway streams the bidirectional call; one request in, one result out, then the body ends.
    const r = await this.#call('/v3/lease/keepalive', { ID: id });
    return num(r.result?.TTL);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.#call('/v3/lease/revoke', { ID: id }).catch((err: unknown) => {
      if (!(err instanceof EtcdError && err.code === 'ETCD_LEASE_NOT_FOUND')) throw err;
    });
  }

  /** Member status of the endpoint that answers: version and database size. */
  async status(): Promise<{ version: string; dbSize: number; leader: number; revision: number }> {
    const r = await this.#call('/v3/maintenance/status', {});
    return { version: String(r.version), dbSize: num(r.dbSize), leader: num(r.leader), revision: num(r.header?.revision) };
  }

  async compact(revision: number): Promise<void> {
    await this.#call('/v3/kv/compaction', { revision: String(revision), physical: true });
  }

  /**
   * Watches every key under `prefix` from `fromRevision` (inclusive). Events
   * arrive in revision order, in batches; at-least-once across reconnects is
   * the caller's business (ReadModel re-lists). The stream ends with
   * ETCD_COMPACTED when `fromRevision` is no longer kept, ETCD_UNAVAILABLE
   * when the member goes away.
   */
  watch(prefix: string, fromRevision: number, onEvents: (events: WatchEvent[], revision: number) => void): WatchHandle {
    const abort = new AbortController();
    const done = (async () => {
      let lastErr: unknown;
      for (let i = 0; i < this.endpoints.length; i++) {
        const at = (this.#current + i) % this.endpoints.length;
        let res;
        try {
          res = await this.#post(this.endpoints[at]!, '/v3/watch', { create_request: { ...rangeBody(prefix, true), start_revision: String(fromRevision), progress_notify: true } }, abort.signal);
        } catch (err) {
          if (abort.signal.aborted) return;
          lastErr = err;
          continue;
        }
        if (res.status !== 200 || !res.body) {
          lastErr = new Error(`HTTP ${res.status}`);
          await res.body?.cancel().catch(() => {});
          continue;
        }
        this.#current = at;
        try {
          await readWatchStream(res.body, onEvents);
        } catch (err) {
          if (abort.signal.aborted) return;
          throw err;
        }
        if (abort.signal.aborted) return;
        throw new EtcdError('ETCD_UNAVAILABLE', `the etcd watch on ${this.endpoints[at]} ended: the member went away`);
      }
      if (abort.signal.aborted) return;
      throw new EtcdError('ETCD_UNAVAILABLE', `cannot watch etcd at ${this.endpoints.join(', ')}: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}`, { cause: lastErr });
    })();
    done.catch(() => {}); // the caller awaits it; an unobserved end is not a crash
    return { cancel: () => abort.abort(), done };
  }

  /** Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await (this.#dispatcher as Agent | undefined)?.close();
  }
}

/** An attempt's failure, with what the socket or TLS layer said (undici's fetch says only "fetch failed" and keeps that in its cause). */
function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause : undefined;
  return cause && cause.message !== err.message ? `${err.message}: ${cause.message}` : err.message;
}

/** Newline-delimited JSON results of one watch; throws ETCD_COMPACTED on a compaction cancel. */
async function readWatchStream(body: ReadableStream<Uint8Array>, onEvents: (events: WatchEvent[], revision: number) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      const msg = JSON.parse(line) as { result?: any; error?: any };
      if (msg.error) throw new EtcdError('ETCD_UNAVAILABLE', `etcd watch: ${msg.error.message ?? JSON.stringify(msg.error)}`);
      const r = msg.result ?? {};
      if (r.compact_revision !== undefined && num(r.compact_revision) > 0) {
        throw new EtcdError('ETCD_COMPACTED', `etcd watch: revision compacted (oldest kept ${r.compact_revision}): re-list`, { details: { compactRevision: num(r.compact_revision) } });
      }
      if (r.canceled) throw new EtcdError('ETCD_UNAVAILABLE', `etcd watch cancelled: ${r.cancel_reason ?? 'no reason given'}`);
      const events: WatchEvent[] = ((r.events ?? []) as any[]).map((e) =>
        e.type === 'DELETE' ? { type: 'delete', key: dec(e.kv?.key), modRevision: num(e.kv?.mod_revision) } : { type: 'put', kv: toKv(e.kv) },
      );
      onEvents(events, num(r.header?.revision));
    }
  }
}
