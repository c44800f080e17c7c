// The CLI's view of flickd's /v1 API: typed calls over HostClient (http-client.ts),
// unwrapping the `{"status":"success","data":…}` envelope. Error bodies
// (`{"status":"error","error":{code,message}}`) become FlickErrors in HostClient.
import { z } from 'zod';
import { HostClient } from './http-client.js';
import { resolveHostConfig } from './host-config.js';

/** An instance as /v1 shows it (loose: fields the CLI does not print pass through). */
export const InstanceViewSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    state: z.string(),
    image: z.string(),
    memory_mb: z.number(),
    vcpus: z.number(),
    url: z.string().nullable().optional(),
    address: z.string().nullable().optional(),
    service: z.object({
      http: z.object({ hostname: z.string(), guest_port: z.number() }).nullable(),
      tcp: z.array(z.object({ port: z.number(), guest_port: z.number() })),
    }),
    scale_to_zero: z.object({ policy: z.string(), cooldown_time_ms: z.number(), stateful: z.boolean() }),
    healthcheck: z.object({ command: z.array(z.string()), interval_ms: z.number() }).passthrough().nullable().optional(),
    health: z.object({ status: z.string(), since: z.string() }).nullable().optional(),
    wakes: z.number().optional(),
    boots: z.number().optional(),
    restarts: z.number().optional(),
    last_wake: z.object({ tier: z.string(), duration_ms: z.number(), at: z.string(), phases_ms: z.record(z.string(), z.number()) }).nullable().optional(),
    error: z.string().nullable().optional(),
    created_at: z.string(),
  })
  .passthrough();
export type InstanceView = z.infer<typeof InstanceViewSchema>;

/** GET /v1/hosts (src/cluster/hosts-api.ts). */
export const HostListSchema = z.object({
  cluster: z.boolean(),
  hosts: z.array(
    z
      .object({
        name: z.string(),
        state: z.string(),
        self: z.boolean(),
        api: z.string().nullable(),
        proxy: z.string().nullable(),
        capacity: z.object({ memory_bytes: z.number(), vcpus: z.number() }),
        load: z.object({ memory_free_bytes: z.number(), load_avg_1m: z.number(), instances: z.number() }).nullable(),
        last_seen: z.string().nullable(),
      })
      .passthrough(),
  ),
});
export type HostListView = z.infer<typeof HostListSchema>;

/** A service as /v1/services shows it (src/api/services.ts). */
export const ServiceViewSchema = z
  .object({
    name: z.string(),
    image: z.string(),
    replicas: z.number(),
    url: z.string().nullable(),
    instances: z.array(z.object({ id: z.string(), name: z.string(), state: z.string(), image: z.string() }).passthrough()),
    created_at: z.string(),
  })
  .passthrough();
export type ServiceView = z.infer<typeof ServiceViewSchema>;

const envelope = <T extends z.ZodType>(data: T) => z.object({ status: z.literal('success'), data });

export class FlickApi {
  readonly host: HostClient;

  constructor(host: HostClient) {
    this.host = host;
  }

  static fromEnvironment(hostOverride?: string): FlickApi {
    return new FlickApi(new HostClient(resolveHostConfig(hostOverride)));
  }

  /** `host`: in a cluster, the host to place it on (default: the best one). */
  async create(body: Record<string, unknown>, host?: string): Promise<InstanceView> {
    return (await this.host.json('POST', `/v1/instances${host ? `?host=${encodeURIComponent(host)}` : ''}`, envelope(InstanceViewSchema), body)).data;
  }

  async createService(body: Record<string, unknown>): Promise<ServiceView> {
    return (await this.host.json('POST', '/v1/services', envelope(ServiceViewSchema), body)).data;
  }

  async services(): Promise<ServiceView[]> {
    return (await this.host.json('GET', '/v1/services', envelope(z.object({ services: z.array(ServiceViewSchema) })))).data.services;
  }

  async service(name: string): Promise<ServiceView> {
    return (await this.host.json('GET', `/v1/services/${encodeURIComponent(name)}`, envelope(ServiceViewSchema))).data;
  }

  async deploy(name: string, body: Record<string, unknown>): Promise<ServiceView> {
    return (await this.host.json('POST', `/v1/services/${encodeURIComponent(name)}/deploy`, envelope(ServiceViewSchema), body)).data;
  }

  async scaleService(name: string, replicas: number): Promise<ServiceView> {
    return (await this.host.json('PUT', `/v1/services/${encodeURIComponent(name)}/scale`, envelope(ServiceViewSchema), { replicas })).data;
  }

  async rmService(name: string): Promise<void> {
    await this.host.json('DELETE', `/v1/services/${encodeURIComponent(name)}`, envelope(z.unknown()));
  }

  async list(): Promise<InstanceView[]> {
    return (await this.host.json('GET', '/v1/instances', envelope(z.object({ instances: z.array(InstanceViewSchema) })))).data.instances;
  }

  /** One page of the list (GET /v1/instances?limit=…): `next` is the cursor of the page after it, or null. */
  async listPage(q: { limit: number; state?: string; after?: string }): Promise<{ instances: InstanceView[]; next: string | null }> {
    const params = new URLSearchParams({ limit: String(q.limit), ...(q.state ? { state: q.state } : {}), ...(q.after ? { after: q.after } : {}) });
    const schema = envelope(z.object({ instances: z.array(InstanceViewSchema), next: z.string().nullable() }));
    return (await this.host.json('GET', `/v1/instances?${params}`, schema)).data;
  }

  async get(ref: string): Promise<InstanceView> {
    return (await this.host.json('GET', `/v1/instances/${encodeURIComponent(ref)}`, envelope(InstanceViewSchema))).data;
  }

  async start(ref: string): Promise<InstanceView> {
    return (await this.host.json('PUT', `/v1/instances/${encodeURIComponent(ref)}/start`, envelope(InstanceViewSchema))).data;
  }

  async stop(ref: string): Promise<InstanceView> {
    return (await this.host.json('PUT', `/v1/instances/${encodeURIComponent(ref)}/stop`, envelope(InstanceViewSchema))).data;
  }

  async rm(ref: string, force: boolean): Promise<void> {
    await this.host.json('DELETE', `/v1/instances/${encodeURIComponent(ref)}${force ? '?force=true' : ''}`, envelope(z.unknown()));
  }

  async wait(ref: string, state: string, timeoutMs: number): Promise<InstanceView> {
    const path = `/v1/instances/${encodeURIComponent(ref)}/wait?state=${encodeURIComponent(state)}&timeout_ms=${timeoutMs}`;
    return (await this.host.json('GET', path, envelope(InstanceViewSchema))).data;
  }

  /** The console log as a byte stream (ends at the end of the log unless `follow`). */
  async log(ref: string, follow: boolean, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const path = `/v1/instances/${encodeURIComponent(ref)}/log${follow ? '?follow=true' : ''}`;
    const res = await this.host.check(await this.host.request('GET', path, signal ? { signal } : {}), `logs of ${ref}`);
    return res.body ?? new ReadableStream({ start: (c) => c.close() });
  }

  async hosts(): Promise<HostListView> {
    return (await this.host.json('GET', '/v1/hosts', envelope(HostListSchema))).data;
  }

  async images(): Promise<Array<{ ref: string; digest: string }>> {
    const schema = envelope(z.object({ images: z.array(z.object({ ref: z.string(), digest: z.string() }).passthrough()) }));
    return (await this.host.json('GET', '/v1/images', schema)).data.images;
  }
}

/** Where a user reaches an instance: the proxy URL flickd reports, else its address and port directly. */
export function instanceUrl(i: InstanceView): string | undefined {
  if (i.url) return i.url;
  const port = i.service.http?.guest_port ?? i.service.tcp[0]?.guest_port;
  if (i.address && port !== undefined) return `${i.service.http ? 'http://' : ''}${i.address}:${port}`;
  return undefined;
}
