import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { ControllerError, assertTransition } from '../controller/states.js';
import type { InstanceConfig } from '../controller/spec.js';
import { FlickError } from '../errors.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { testRecord } from '../controller/state/testing.js';
import { createApiHandler, type ApiController } from './handler.js';
import type { ForkConfig } from '../controller/fork.js';
import { readAnswer } from '../daemon/testing.js';

function record(name: string, spec: Partial<InstanceConfig> = {}): InstanceRecord {
  const now = new Date().toISOString();
  return testRecord(name, {
    spec: {
      image: { ref: spec.image ?? 'hello:latest', digest: 'sha256:ab' },
      env: spec.env ?? {},
      memoryMb: spec.memoryMb ?? 128,
      service: { http: { hostname: `${name}.localhost`, guestPort: 8080 }, tcp: [] },
    },
    status: {
      state: 'running',
      networkIndex: 0,
      pid: 1,
      dir: '/x',
      counters: { boots: 1, wakes: 0, restarts: 0 },
      startedAt: now,
    },
  });
}

/** A fake controller: instances in a map, the same error codes as the real one. */
class FakeController implements ApiController {
  readonly instances = new Map<string, InstanceRecord>();
  lastSpec: InstanceConfig | undefined;
  list() {
    return [...this.instances.values()];
  }
  get(ref: string) {
    const r = this.instances.get(ref) ?? [...this.instances.values()].find((i) => i.id === ref);
    if (!r) throw new ControllerError('INSTANCE_NOT_FOUND', `instance "${ref}" not found: list instances with 'flick ls'`, { kind: 'user' });
    return r;
  }
  async create(spec: InstanceConfig) {
    this.lastSpec = spec;
    if (!spec.image.startsWith('hello')) throw new FlickError('IMAGE_NOT_FOUND', `image "${spec.image}" not found in the host registry: push it with 'flick push ${spec.image}'`, { kind: 'user' });
    const name = spec.name ?? 'gen';
    if (this.instances.has(name)) throw new FlickError('NAME_TAKEN', `an instance named "${name}" already exists`, { kind: 'user' });
    const base = record(name, spec);
    const r = { ...base, status: { ...base.status, state: 'starting' as const } };
    this.instances.set(name, r);
    return r;
  }
  async start(ref: string) {
    const r = this.get(ref);
    assertTransition(r.name, r.status.state, 'starting', 'start');
    return Object.assign(r, { status: { ...r.status, state: 'starting' as const } });
  }
  async stop(ref: string) {
    const r = this.get(ref);
    assertTransition(r.name, r.status.state, 'stopping', 'stop');
    return Object.assign(r, { status: { ...r.status, state: 'stopped' as const } });
  }
  async rm(ref: string) {
    this.instances.delete(this.get(ref).name);
  }
  logs(ref: string, opts: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<Buffer> {
    this.get(ref);
    return (async function* () {
      yield Buffer.from('hello from the guest\n');
      if (opts.follow) {
        yield Buffer.from('more\n');
      }
    })();
  }
  async suspend(ref: string) {
    const r = this.get(ref);
    assertTransition(r.name, r.status.state, 'draining', 'suspend');
    return Object.assign(r, { status: { ...r.status, state: 'standby' as const } });
  }
  lastFork: ForkConfig | undefined;
  /** Not stored: the list test sees only what create made. */
  async fork(ref: string, cfg: ForkConfig) {
    this.get(ref);
    this.lastFork = cfg;
    const base = record(cfg.name, { image: 'hello:latest' });
    return { record: { ...base, status: { ...base.status, state: 'standby' as const, pid: null } }, mode: 'cold' as const, durationMs: 12.3 };
  }
  async wait(ref: string, state: InstanceRecord['status']['state'], opts: { timeoutMs?: number } = {}) {
    const r = this.get(ref);
    if (r.status.state === state) return r;
    throw new ControllerError('WAIT_TIMEOUT', `instance "${ref}" did not become ${state} within ${opts.timeoutMs} ms`, { kind: 'user' });
  }
}

const controller = new FakeController();
let base = '';
const server = http.createServer(
  createApiHandler({
    controller,
    images: { list: async () => [{ ref: 'hello:latest', name: 'hello', tag: 'latest', digest: 'sha256:ab' }] },
    urlFor: (r) => `http://${r.name}.localhost:8000`,
  }),
);
before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

async function call(method: string, path: string, body?: string): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${base}${path}`, { method, ...(body !== undefined ? { body, headers: { 'content-type': 'application/json' } } : {}) });
  return readAnswer(res);
}

test('create answers 201 with the instance in the success envelope, converting the wire form', async () => {
  const r = await call(
    'POST',
    '/v1/instances',
    JSON.stringify({ image: 'hello:latest', name: 'web', memory_mb: 256, env: { A: 'b' }, ports: [{ port: 8080, protocol: 'http' }, { port: 5432, protocol: 'tcp' }], scale_to_zero: { policy: 'on', cooldown_time_ms: 500 } }),
  );
  assert.equal(r.status, 201);
  assert.equal(r.json.status, 'success');
  assert.equal(r.json.data.name, 'web');
  assert.equal(r.json.data.memory_mb, 256);
  assert.equal(r.json.data.url, 'http://web.localhost:8000');
  assert.deepEqual(controller.lastSpec?.service, { tcp: [{ hostPort: 5432, guestPort: 5432 }], http: { guestPort: 8080 } });
  assert.deepEqual(controller.lastSpec?.scaleToZero, { policy: 'on', cooldownTimeMs: 500 });
});

test('fork answers 201 with the new instance in standby and how it was taken; TCP host ports and volume names pass through', async () => {
  const r = await call('POST', '/v1/instances/web/fork', JSON.stringify({ name: 'web2', ports: [{ port: 5433, guest_port: 5432, protocol: 'tcp' }], volumes: { pgdata: 'pgdata2' } }));
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.data.name, 'web2');
  assert.equal(r.json.data.state, 'standby');
  assert.deepEqual(r.json.data.fork, { source: 'web', mode: 'cold', duration_ms: 12 });
  assert.deepEqual(controller.lastFork, { name: 'web2', tcp: [{ hostPort: 5433, guestPort: 5432 }], volumeNames: { pgdata: 'pgdata2' } });
});

const BAD: Array<[string, string, string, string | undefined, number, string, RegExp]> = [
  ['malformed JSON', 'POST', '/v1/instances', '{"image": ', 400, 'INVALID_JSON', /not valid JSON/],
  ['empty body', 'POST', '/v1/instances', '', 400, 'INVALID_JSON', /empty/],
  ['unknown image', 'POST', '/v1/instances', '{"image":"nope:1"}', 404, 'IMAGE_NOT_FOUND', /flick push nope:1/],
  ['memory "lots"', 'POST', '/v1/instances', '{"image":"hello:1","memory_mb":"lots"}', 400, 'BAD_REQUEST', /memory_mb must be a whole number of MiB, e\.g\. 256/],
  ['memory 1.5', 'POST', '/v1/instances', '{"image":"hello:1","memory_mb":1.5}', 400, 'BAD_REQUEST', /memory_mb must be a whole number/],
  ['misspelt field', 'POST', '/v1/instances', '{"image":"hello:1","memroy_mb":1}', 400, 'BAD_REQUEST', /unknown field "memroy_mb"/],
  ['missing image', 'POST', '/v1/instances', '{}', 400, 'BAD_REQUEST', /image must be a string/],
  ['bad scale_to_zero policy', 'POST', '/v1/instances', '{"image":"hello:1","scale_to_zero":{"policy":"sometimes"}}', 400, 'BAD_REQUEST', /scale_to_zero\.policy must be "on", "idle" or "off"/],
  ['two http ports', 'POST', '/v1/instances', '{"image":"hello:1","ports":[{"port":1},{"port":2}]}', 400, 'BAD_REQUEST', /at most one "http" port/],
  ['redirect without https', 'POST', '/v1/instances', '{"image":"hello:1","ports":[{"port":80,"guest_port":443,"protocol":"http+redirect"}]}', 400, 'BAD_REQUEST', /add an "http\+tls" port too/],
  ['http and https to two guest ports', 'POST', '/v1/instances', '{"image":"hello:1","ports":[{"port":80,"guest_port":81},{"port":443,"guest_port":8080,"protocol":"http+tls"}]}', 400, 'BAD_REQUEST', /give both guest port 8080/],
  ['a certificate without its key', 'POST', '/v1/instances', '{"image":"hello:1","ports":[{"port":443,"protocol":"http+tls"}],"tls_cert":"x"}', 400, 'BAD_REQUEST', /tls_cert and tls_key go together/],
  ['a certificate without https', 'POST', '/v1/instances', '{"image":"hello:1","tls_cert":"x","tls_key":"y"}', 400, 'BAD_REQUEST', /add an "http\+tls" port/],
  ['a certificate that is no PEM', 'POST', '/v1/instances', '{"image":"hello:1","ports":[{"port":443,"protocol":"http+tls"}],"tls_cert":"x","tls_key":"y"}', 400, 'invalid_certificate', /tls_cert is not a PEM certificate/],
  ['duplicate name', 'POST', '/v1/instances', '{"image":"hello:1","name":"web"}', 409, 'NAME_TAKEN', /already exists/],
  ['fork without a name', 'POST', '/v1/instances/web/fork', '{}', 400, 'BAD_REQUEST', /name must be a string: the fork's name/],
  ['fork with an http port', 'POST', '/v1/instances/web/fork', '{"name":"w3","ports":[{"port":81}]}', 400, 'BAD_REQUEST', /give only "tcp" ports/],
  ['fork of an unknown instance', 'POST', '/v1/instances/ghost/fork', '{"name":"w3"}', 404, 'INSTANCE_NOT_FOUND', /not found/],
  ['fork with GET', 'GET', '/v1/instances/web/fork', undefined, 405, 'METHOD_NOT_ALLOWED', /use POST/],
  ['log of an unknown id', 'GET', '/v1/instances/ghost/log', undefined, 404, 'INSTANCE_NOT_FOUND', /flick ls/],
  ['get of an unknown id', 'GET', '/v1/instances/ghost', undefined, 404, 'INSTANCE_NOT_FOUND', /not found/],
  ['wait for a bogus state', 'GET', '/v1/instances/web/wait?state=asleep', undefined, 400, 'BAD_REQUEST', /state must be one of/],
  ['unknown route', 'GET', '/v1/nothing', undefined, 404, 'NOT_FOUND', /no API route/],
  ['wrong method', 'PATCH', '/v1/instances/web', undefined, 405, 'METHOD_NOT_ALLOWED', /use GET or DELETE/],
];

for (const [what, method, path, body, status, code, message] of BAD) {
  test(`${what} → ${status} ${code} with a clear message`, async () => {
    const r = await call(method, path, body);
    assert.equal(r.status, status, r.text);
    assert.equal(r.json.status, 'error');
    assert.equal(r.json.error.code, code);
    assert.match(r.json.error.message, message);
  });
}

test('stop of a stopped instance → 409 ILLEGAL_TRANSITION; start again works', async () => {
  assert.equal((await call('PUT', '/v1/instances/web/stop')).status, 200);
  const r = await call('PUT', '/v1/instances/web/stop');
  assert.equal(r.status, 409);
  assert.equal(r.json.error.code, 'ILLEGAL_TRANSITION');
  assert.match(r.json.error.message, /cannot stop instance "web": it is stopped/);
  assert.equal((await call('PUT', '/v1/instances/id-web/start')).json.data.state, 'starting');
});

test('list, get, log, wait, images and delete answer as documented', async () => {
  const list = await call('GET', '/v1/instances');
  assert.deepEqual(list.json.data.instances.map((i: any) => i.name), ['web']);
  assert.equal((await call('GET', '/v1/instances/web')).json.data.id, 'id-web');
  const log = await call('GET', '/v1/instances/web/log');
  assert.equal(log.status, 200);
  assert.equal(log.text, 'hello from the guest\n');
  assert.equal((await call('GET', '/v1/instances/web/log?follow=true')).text, 'hello from the guest\nmore\n');
  const wait = await call('GET', '/v1/instances/web/wait?state=running&timeout_ms=10');
  assert.equal(wait.status, 408);
  assert.equal(wait.json.error.code, 'WAIT_TIMEOUT');
  assert.equal((await call('GET', '/v1/images')).json.data.images[0].ref, 'hello:latest');
  const del = await call('DELETE', '/v1/instances/web');
  assert.equal(del.json.data.state, 'removed');
  assert.equal((await call('GET', '/v1/instances/web')).status, 404);
});

test('with a token, requests without it are refused with 401', async () => {
  const s = http.createServer(createApiHandler({ controller, images: { list: async () => [] }, token: 'sekrit' }));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  after(() => new Promise<void>((r) => s.close(() => r())));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/instances`;
  assert.equal((await fetch(url)).status, 401);
  assert.equal((await fetch(url, { headers: { authorization: 'Bearer sekrit' } })).status, 200);
});

test('DELETE with drain_ms waits for the instance\'s requests in flight through the proxy; a bad drain_ms is a 400', async () => {
  let inFlight = 1;
  const s = http.createServer(createApiHandler({ controller, images: { list: async () => [] }, inFlight: () => inFlight }));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  after(() => new Promise<void>((r) => s.close(() => r())));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/instances`;
  assert.equal((await fetch(url, { method: 'POST', body: JSON.stringify({ image: 'hello:latest', name: 'drained' }), headers: { 'content-type': 'application/json' } })).status, 201);
  const bad = await readAnswer(await fetch(`${url}/drained?drain_ms=soon`, { method: 'DELETE' }));
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /drain_ms must be a whole number of milliseconds/);
  const started = Date.now();
  setTimeout(() => (inFlight = 0), 150);
  const del = await readAnswer(await fetch(`${url}/drained?force=true&drain_ms=5000`, { method: 'DELETE' }));
  assert.equal(del.json.data.state, 'removed');
  assert.ok(Date.now() - started >= 140, `removed once drained (${Date.now() - started} ms)`);
});
