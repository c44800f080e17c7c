// The page's calls to flickd: the console's own routes and the REST API under
// /console/api/v1 (same validation, same messages as `flick`). The session is
// an HttpOnly cookie the page never sees; mutating calls carry the CSRF token.
import type { ConsoleImageView as ImageView, RecentWake } from '../../src/console/wire';

export type { ImageView, RecentWake };

export interface ApiErrorBody {
  code: string;
  message: string;
}

export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, e: ApiErrorBody) {
    super(e.message);
    this.code = e.code;
    this.status = status;
  }
}

let csrf: string | undefined;

export function setCsrf(token: string | undefined): void {
  csrf = token;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(`/console/api/${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json().catch(() => undefined)) as { status?: string; data?: T; error?: ApiErrorBody } | undefined;
  if (!res.ok || json?.status !== 'success') {
    throw new ApiError(res.status, json?.error ?? { code: 'HTTP_' + res.status, message: `flickd answered ${res.status} ${res.statusText}` });
  }
  return json.data as T;
}

/** The session's CSRF token, or undefined when not signed in. */
export async function currentSession(): Promise<string | undefined> {
  const s = await call<{ signed_in: boolean; csrf?: string }>('GET', 'session');
  return s.signed_in ? s.csrf : undefined;
}

export async function login(token: string): Promise<string> {
  return (await call<{ csrf: string }>('POST', 'login', { token })).csrf;
}

export async function logout(): Promise<void> {
  await call('POST', 'logout');
}

const ref = (name: string) => encodeURIComponent(name);

export const instances = {
  create: (body: Record<string, unknown>) => call<InstanceView>('POST', 'v1/instances', body),
  start: (name: string) => call<InstanceView>('PUT', `v1/instances/${ref(name)}/start`),
  stop: (name: string) => call<InstanceView>('PUT', `v1/instances/${ref(name)}/stop`),
  suspend: (name: string, tier: 'hot' | 'cold') => call<InstanceView>('PUT', `v1/instances/${ref(name)}/suspend?tier=${tier}`),
  remove: (name: string) => call<unknown>('DELETE', `v1/instances/${ref(name)}?force=true`),
  metrics: (name: string) => call<InstanceMetrics>('GET', `v1/instances/${ref(name)}/metrics`),
};

export const images = () => call<{ images: ImageView[] }>('GET', 'images');

/** Follows the console log: calls `onText` with each chunk until `signal` aborts. */
export async function followLog(name: string, onText: (text: string) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/console/api/v1/instances/${ref(name)}/log?follow=true`, { signal, credentials: 'same-origin' });
  if (!res.ok || !res.body) throw new ApiError(res.status, ((await res.json().catch(() => undefined)) as { error?: ApiErrorBody } | undefined)?.error ?? { code: 'HTTP', message: `log: ${res.status}` });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

export interface InstanceView {
  id: string;
  name: string;
  state: string;
  standby_tier: 'hot' | 'cold' | null;
  image: string;
  image_digest: string;
  args: string[] | null;
  env: Record<string, string>;
  memory_mb: number;
  vcpus: number;
  service: { http: { hostname: string; guest_port: number } | null; tcp: Array<{ port: number; guest_port: number }> };
  url: string | null;
  address: string | null;
  autostart: boolean;
  restart_policy: string;
  scale_to_zero: { policy: string; cooldown_time_ms: number; stateful: boolean };
  template: string | null;
  pid: number | null;
  boots: number;
  wakes: number;
  wakes_hot: number;
  wakes_cold: number;
  restarts: number;
  last_exit_code: number | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  stopped_at: string | null;
  rss_bytes?: number | null;
  /** The HEALTHCHECK's verdict and since when; null without a HEALTHCHECK. */
  health: { status: 'starting' | 'healthy' | 'unhealthy'; since: string } | null;
  volumes?: Array<{ name: string; path: string; read_only: boolean }>;
  service_name?: string | null;
}

export interface HistogramView {
  buckets_ms: number[];
  cumulative: number[];
  sum_ms: number;
  count: number;
}

export interface InstanceMetrics {
  boot_ms: number | null;
  wakes: { hot: number; cold: number; total: number };
  wake_latency_ms: { hot: HistogramView; cold: HistogramView };
  suspends: { hot: number; cold: number };
  page_outs: number;
  proxy: { requests: number; parked_now: number; wake_wait_ms: HistogramView } | null;
}

export interface VolumeView {
  id: string;
  name: string;
  size_bytes: number;
  allocated_bytes: number;
  state: string;
  attached_to: Array<{ instance: string; read_only: boolean }>;
  cloned_from: string | null;
  created_at: string;
}

/** GET /v1/hosts's host (src/cluster/hosts-api.ts HostViewJson; the page cannot compile that module: it needs node's types, which clash with the DOM's). */
export interface HostView {
  name: string;
  state: 'up' | 'down';
  self: boolean;
  api: string | null;
  proxy: string | null;
  capacity: { memory_bytes: number; vcpus: number };
  load: { memory_free_bytes: number; load_avg_1m: number; instances: number } | null;
  joined_at: string | null;
  last_seen: string | null;
}

export const volumes = () => call<{ volumes: VolumeView[] }>('GET', 'v1/volumes');
export const hosts = () => call<{ cluster: boolean; hosts: HostView[] }>('GET', 'v1/hosts');

export interface ServiceView {
  name: string;
  image: string;
  replicas: number;
  autoscale: { min: number; max: number } | null;
  url: string | null;
  instances: Array<{ id: string; name: string; state: string; image: string }>;
  created_at: string;
}

export const services = {
  list: () => call<{ services: ServiceView[] }>('GET', 'v1/services'),
  create: (body: Record<string, unknown>) => call<ServiceView>('POST', 'v1/services', body),
  remove: (name: string) => call<unknown>('DELETE', `v1/services/${ref(name)}`),
  scale: (name: string, replicas: number) => call<ServiceView>('PUT', `v1/services/${ref(name)}/scale`, { replicas }),
};
