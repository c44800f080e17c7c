// The hosts of a cluster, as etcd holds them (keys under the cluster prefix, "/flick/"):
//   hosts/<name>   the host's record: its addresses and capacity (stays while it is down)
//   alive/<name>   attached to the host's lease: its load, renewed every few seconds;
//                  gone within one TTL of the host dying, which is what "down" means
// A host name is held by one live flickd at a time: registering over another
// live lease waits for it to lapse (a flickd restarted after kill -9), then
// gives up with HOST_NAME_TAKEN.
import fs from 'node:fs';
import os from 'node:os';
import { z } from 'zod';
import { FlickError } from '../errors.js';
import type { EtcdClient, KeyValue } from './etcd-client.js';
import type { HostLease } from './host-lease.js';
import { ReadModel } from './read-model.js';

export type MembershipErrorCode = 'HOST_NAME_TAKEN' | 'HOST_NAME_INVALID';
export class MembershipError extends FlickError<MembershipErrorCode> {}

export const DEFAULT_CLUSTER_PREFIX = '/flick/';

export const HostRecordSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  /** Base URL of the host's API and registry, as peers reach it. */
  api: z.string(),
  /** Base URL of the host's ingress proxy, if it has one. */
  proxy: z.string().nullable(),
  /** Base URL of the proxy's hop listener: other hosts' proxies send requests there, with the cluster's token. Absent from a host of an earlier version. */
  hop: z.string().nullable().optional(),
  capacity: z.object({ memoryBytes: z.number(), vcpus: z.number() }),
  joinedAt: z.string(),
});
export type HostRecord = z.infer<typeof HostRecordSchema>;

export const HostLoadSchema = z.object({
  version: z.literal(1),
  lease: z.string(),
  memoryFreeBytes: z.number(),
  loadAvg1m: z.number(),
  instances: z.number(),
  /** Image references and digests the host holds, for placement (at most INVENTORY_MAX; absent from an earlier version). */
  images: z.array(z.string()).optional(),
  /** Image digests the host has a template snapshot of (its instances' templates). */
  templates: z.array(z.string()).optional(),
  startedAt: z.string(),
  updatedAt: z.string(),
});
export type HostLoad = z.infer<typeof HostLoadSchema>;

export interface HostView {
  record: HostRecord;
  /** Absent while the host is down (its lease lapsed). */
  load: HostLoad | undefined;
}

export const hostKey = (prefix: string, name: string) => `${prefix}hosts/${name}`;
export const aliveKey = (prefix: string, name: string) => `${prefix}alive/${name}`;

/** Host names are DNS labels: they appear in URLs, logs and namespace names. */
export function checkHostName(name: string): string {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    throw new MembershipError('HOST_NAME_INVALID', `host name "${name}" is not a lower-case DNS label (a-z, 0-9, '-', at most 63): pass e.g. --host-name h1`, { kind: 'user' });
  }
  return name;
}

/** This machine's free memory: MemAvailable, which counts reclaimable page cache (os.freemem does not). */
export function memoryAvailableBytes(meminfo = () => fs.readFileSync('/proc/meminfo', 'utf8')): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(meminfo());
  return m ? Number(m[1]) * 1024 : os.freemem();
}

/** What placement prefers a host for: the image there already, or better its template. */
export interface HostInventory {
  images: string[];
  templates: string[];
}

/** Entries of each inventory list a host advertises (its load is rewritten every 2 s). */
export const INVENTORY_MAX = 256;

export interface RegistrationConfig {
  etcd: EtcdClient;
  prefix: string;
  lease: HostLease;
  record: Omit<HostRecord, 'version' | 'joinedAt'>;
  /** How many instances the host holds now (for its load). */
  instances: () => number;
  /** The images and templates the host holds now (for placement); none: not advertised. */
  inventory?: () => Promise<HostInventory>;
  /** How long to wait for another flickd's lease on this name to lapse. */
  waitForNameMs: number;
  /** Load refresh period. Default 2000 ms. */
  refreshMs?: number;
  log?: (line: string) => void;
}

/** This host's entry in the cluster: registered, kept fresh, withdrawn at close. */
export class Registration {
  readonly #c: RegistrationConfig;
  readonly #startedAt = new Date().toISOString();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(c: RegistrationConfig) {
    this.#c = c;
  }

  static async register(c: RegistrationConfig): Promise<Registration> {
    const r = new Registration(c);
    const prior = await c.etcd.get(hostKey(c.prefix, c.record.name));
    const joinedAt = prior ? (HostRecordSchema.safeParse(JSON.parse(prior.value)).data?.joinedAt ?? new Date().toISOString()) : new Date().toISOString();
    await c.etcd.put(hostKey(c.prefix, c.record.name), JSON.stringify({ version: 1, ...c.record, joinedAt } satisfies HostRecord));
    const deadline = Date.now() + c.waitForNameMs;
    let logged = false;
    while (!(await r.refresh())) {
      if (Date.now() > deadline) {
        throw new MembershipError('HOST_NAME_TAKEN', `host name "${c.record.name}" is held by another live flickd: pick another --host-name, or stop that flickd`, { kind: 'user' });
      }
      if (!logged) c.log?.(`cluster: host name "${c.record.name}" is still held by an earlier lease; waiting for it to lapse`);
      logged = true;
      await new Promise((res) => setTimeout(res, 250));
    }
    r.#schedule();
    return r;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.refresh()
        .catch((err: unknown) => this.#c.log?.(`cluster: refreshing this host's load: ${(err as Error).message}`))
        .finally(() => this.#schedule());
    }, this.#c.refreshMs ?? 2000);
    this.#timer.unref();
  }

  /** Writes the load under the current lease, unless another lease holds the name; whether it was written. */
  async refresh(): Promise<boolean> {
    const { etcd, prefix, lease, record } = this.#c;
    const key = aliveKey(prefix, record.name);
    const load: HostLoad = {
      version: 1,
      lease: lease.id,
      memoryFreeBytes: memoryAvailableBytes(),
      loadAvg1m: os.loadavg()[0] ?? 0,
      instances: this.#c.instances(),
      ...(await this.#inventory()),
      startedAt: this.#startedAt,
      updatedAt: new Date().toISOString(),
    };
    const put = { put: { key, value: JSON.stringify(load), lease: lease.id } };
    // Absent, or already ours: write. Held under another live lease: not ours to touch.
    const r = await etcd.txn([{ key, target: 'CREATE', result: 'EQUAL', value: 0 }], [put], [{ range: { key } }]);
    if (r.succeeded) return true;
    const held = r.ranges[0]?.[0];
    if (held && held.lease !== lease.id) return false;
    await etcd.txn([{ key, target: 'LEASE', result: 'EQUAL', value: lease.id }], [put]);
    return true;
  }

  async #inventory(): Promise<Partial<HostInventory>> {
    const inv = await this.#c.inventory?.().catch((err: unknown) => {
      this.#c.log?.(`cluster: listing this host's images for placement: ${(err as Error).message}`);
      return undefined;
    });
    return inv ? { images: inv.images.slice(0, INVENTORY_MAX), templates: inv.templates.slice(0, INVENTORY_MAX) } : {};
  }

  /** Stops refreshing; the liveness key goes with the lease. Safe twice. */
  stop(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}

/** Every host of the cluster, followed by list-then-watch. */
export class HostDirectory {
  readonly #hosts: ReadModel;
  readonly #alive: ReadModel;
  readonly #prefix: string;
  readonly ready: Promise<void>;

  constructor(etcd: EtcdClient, prefix: string, onGap?: (err: unknown) => void) {
    this.#prefix = prefix;
    this.#hosts = new ReadModel(etcd, `${prefix}hosts/`, onGap ? { onGap } : {});
    this.#alive = new ReadModel(etcd, `${prefix}alive/`, onGap ? { onGap } : {});
    this.ready = Promise.all([this.#hosts.ready, this.#alive.ready]).then(() => undefined);
  }

  list(): HostView[] {
    const out: HostView[] = [];
    for (const kv of this.#hosts.values()) {
      const record = this.#parse(HostRecordSchema, kv);
      if (record) out.push({ record, load: this.#load(record.name) });
    }
    return out.sort((a, b) => (a.record.name < b.record.name ? -1 : 1));
  }

  get(name: string): HostView | undefined {
    const kv = this.#hosts.get(hostKey(this.#prefix, name));
    const record = kv && this.#parse(HostRecordSchema, kv);
    return record ? { record, load: this.#load(name) } : undefined;
  }

  #load(name: string): HostLoad | undefined {
    const alive = this.#alive.get(aliveKey(this.#prefix, name));
    return alive && this.#parse(HostLoadSchema, alive);
  }

  /** Parsed once per stored version: the proxy asks on every request it forwards to a peer. */
  readonly #parsed = new WeakMap<KeyValue, unknown>();
  #parse<T>(schema: z.ZodType<T>, kv: KeyValue): T | undefined {
    if (!this.#parsed.has(kv)) this.#parsed.set(kv, parse(schema, kv.value));
    return this.#parsed.get(kv) as T | undefined;
  }

  /** Hosts up now, other than `self`. */
  peers(self: string): HostRecord[] {
    return this.list().filter((h) => h.load && h.record.name !== self).map((h) => h.record);
  }

  stop(): void {
    this.#hosts.stop();
    this.#alive.stop();
  }
}

function parse<T>(schema: z.ZodType<T>, text: string): T | undefined {
  try {
    return schema.safeParse(JSON.parse(text)).data;
  } catch {
    return undefined;
  }
}
