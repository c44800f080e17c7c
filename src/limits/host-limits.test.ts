// The limits as an API client meets them: a real /v1 handler on port 0 over a
// fake controller wrapped by withLimits, and the registry write guard in front
// of a stand-in registry.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { createApiHandler, type ApiController } from '../api/handler.js';
import type { InstanceConfig } from '../controller/spec.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { testRecord } from '../controller/state/testing.js';
import { refuseWritesWhenDiskFull, withLimits, type RequestHandler } from './host-limits.js';
import type { DiskSpace } from './limits.js';

const GiB = 2 ** 30;

function record(name: string, memoryMb: number, networkIndex: number | null): InstanceRecord {
  return testRecord(name, {
    spec: { image: { ref: 'hello:latest', digest: 'sha256:ab' }, memoryMb, service: { http: { hostname: `${name}.localhost`, guestPort: 8080 }, tcp: [] } },
    status: { networkIndex, dir: '/x' },
  });
}

/** Instances in a map; counts what it was asked to do, so a test sees that a refused request made nothing. */
class FakeController implements ApiController {
  readonly instances = new Map<string, InstanceRecord>();
  created = 0;
  started = 0;
  #private = 'needs the real this'; // like the real Controller: members must not run on a proxy's `this`
  list() {
    void this.#private;
    return [...this.instances.values()];
  }
  get(ref: string) {
    return this.instances.get(ref)!;
  }
  async create(spec: InstanceConfig) {
    this.created++;
    const base = record(spec.name ?? `gen-${this.created}`, spec.memoryMb ?? 128, this.instances.size);
    const r = { ...base, status: { ...base.status, pid: spec.autostart === false ? null : 1 } };
    this.instances.set(r.name, r);
    return r;
  }
  async start(ref: string) {
    this.started++;
    return this.get(ref);
  }
  async stop(ref: string) {
    return this.get(ref);
  }
  async suspend(ref: string) {
    return this.get(ref);
  }
  async rm(ref: string) {
    this.instances.delete(ref);
  }
  async wait(ref: string) {
    return this.get(ref);
  }
  async fork(ref: string): Promise<never> {
    throw new Error(`fork of ${ref} is not used here`);
  }
  logs(): AsyncIterable<Buffer> {
    return (async function* () {})();
  }
}

const servers: http.Server[] = [];
after(() => servers.forEach((s) => s.close()));

async function serve(handler: RequestHandler): Promise<string> {
  const server = http.createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Host {
  base: string;
  fake: FakeController;
  probes: { free: number; available: number };
}

async function host(limits: { maxInstances?: number; poolSize?: number }): Promise<Host> {
  const fake = new FakeController();
  const probes = { free: 100 * GiB, available: 16 * GiB };
  const controller = withLimits(fake, {
    dataDir: '/var/lib/flick',
    poolSize: limits.poolSize ?? 16384,
    ...(limits.maxInstances !== undefined ? { maxInstances: limits.maxInstances } : {}),
    memAvailable: () => probes.available,
    diskSpace: (): DiskSpace => ({ freeBytes: probes.free, totalBytes: 200 * GiB }),
  });
  return { base: await serve(createApiHandler({ controller, images: { list: async () => [] } })), fake, probes };
}

async function post(base: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}/v1/instances`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, json: await res.json() };
}

test('--max-instances: creates up to the quota, then 403 QUOTA_EXCEEDED with a message, and nothing made; rm makes room again', async () => {
  const h = await host({ maxInstances: 2 });
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'a' })).status, 201);
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'b' })).status, 201);
  const refused = await post(h.base, { image: 'hello:latest', name: 'c' });
  assert.equal(refused.status, 403);
  assert.equal(refused.json.error.code, 'QUOTA_EXCEEDED');
  assert.match(refused.json.error.message, /cannot create instance "c": this host allows at most 2 instances \(flickd --max-instances\)/);
  assert.equal(h.fake.created, 2);
  assert.equal((await fetch(`${h.base}/v1/instances/a`, { method: 'DELETE' })).status, 200);
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'c' })).status, 201);
});

test('concurrent creates cannot pass the quota together', async () => {
  const h = await host({ maxInstances: 3 });
  const all = await Promise.all(Array.from({ length: 8 }, (_, i) => post(h.base, { image: 'hello:latest', name: `p${i}` })));
  assert.equal(all.filter((r) => r.status === 201).length, 3);
  assert.equal(all.filter((r) => r.status === 403).length, 5);
});

test('out of addresses: while every address is held by a running VM, 503 NO_ADDRESS for an instance that would start; one that does not start is created', async () => {
  const h = await host({ poolSize: 1 });
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'a' })).status, 201); // the fake "runs" it: pid 1
  const refused = await post(h.base, { image: 'hello:latest', name: 'b' });
  assert.equal(refused.status, 503);
  assert.equal(refused.json.error.code, 'NO_ADDRESS');
  assert.match(refused.json.error.message, /all 1 addresses of its pool are held by running VMs/);
  assert.equal(h.fake.created, 1);
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'idle', autostart: false })).status, 201);
});

test('RAM exhausted: 507 RAM_EXHAUSTED for create and start; an instance that does not start now is still created', async () => {
  const h = await host({});
  h.probes.available = 600 * 2 ** 20;
  const refused = await post(h.base, { image: 'hello:latest', name: 'big', memory_mb: 1024 });
  assert.equal(refused.status, 507);
  assert.equal(refused.json.error.code, 'RAM_EXHAUSTED');
  assert.match(refused.json.error.message, /cannot start instance "big" with 1024 MiB/);
  assert.equal((await post(h.base, { image: 'hello:latest', name: 'later', memory_mb: 1024, autostart: false })).status, 201);
  const start = await fetch(`${h.base}/v1/instances/later/start`, { method: 'PUT' });
  assert.equal(start.status, 507);
  assert.equal(h.fake.started, 0);
});

test('disk full: 507 DISK_FULL for create', async () => {
  const h = await host({});
  h.probes.free = 100 * 2 ** 20;
  const refused = await post(h.base, { image: 'hello:latest', name: 'a' });
  assert.equal(refused.status, 507);
  assert.equal(refused.json.error.code, 'DISK_FULL');
  assert.match(refused.json.error.message, /not enough disk space for instance "a": 100 MiB free under \/var\/lib\/flick/);
});

test('the registry guard: writes get 507 with an OCI error body while the disk is full, reads pass; room again, writes pass', async () => {
  let free = 100 * 2 ** 20;
  let reached = 0;
  const registry: RequestHandler = async (req, res) => {
    reached++;
    req.resume();
    res.writeHead(req.method === 'GET' ? 200 : 202);
    res.end();
  };
  const base = await serve(refuseWritesWhenDiskFull(registry, '/var/lib/flick', { diskSpace: () => ({ freeBytes: free, totalBytes: 10 * GiB }) }));
  const upload = await fetch(`${base}/v2/app/blobs/uploads/`, { method: 'POST', body: 'x'.repeat(1000) });
  assert.equal(upload.status, 507);
  const body = (await upload.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]?.code, 'DISK_FULL');
  assert.match(body.errors[0]!.message, /^not enough disk space for this upload: 100 MiB free under \/var\/lib\/flick/);
  assert.equal((await fetch(`${base}/v2/app/manifests/latest`)).status, 200);
  assert.equal(reached, 1, 'only the read reached the registry');
  free = 5 * GiB;
  assert.equal((await fetch(`${base}/v2/app/blobs/uploads/`, { method: 'POST', body: 'x' })).status, 202);
});
