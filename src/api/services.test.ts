// Unit tests of PUT /v1/services/{name}/scale at the handler: the body is
// checked (400 naming the field), an unknown service is 404, a good one scales.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { FlickError } from '../errors.js';
import type { ServiceRecord } from '../services/service-store.js';
import { createServicesHandler, type ServicesApiOptions } from './services.js';

const record: ServiceRecord = { version: 1, name: 'web', template: { image: 'app:1' }, replicas: 2, members: [], createdAt: 'x', updatedAt: 'x' } as unknown as ServiceRecord;
const scaled: Array<[string, number]> = [];
const services = {
  get: (name: string) => {
    if (name !== 'web') throw new FlickError('SERVICE_NOT_FOUND', `service "${name}" not found`, { kind: 'user' });
    return record;
  },
  members: () => [],
  remoteMembers: () => [],
  scale: async (name: string, n: number) => {
    scaled.push([name, n]);
    return { ...record, replicas: n };
  },
} as unknown as ServicesApiOptions['services'];

let server: http.Server;
let base = '';
before(async () => {
  server = http.createServer(createServicesHandler({ services }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

const put = async (p: string, body: unknown) => {
  const res = await fetch(`${base}${p}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { data?: { replicas: number }; error?: { message: string } } };
};

test('PUT /v1/services/{name}/scale scales, and answers 400 naming the field or 404 for an unknown service', async () => {
  const ok = await put('/v1/services/web/scale', { replicas: 3 });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.data?.replicas, 3);
  assert.deepEqual(scaled, [['web', 3]]);
  for (const bad of [{ replicas: -1 }, { replicas: 'three' }, { replicas: 1.5 }, {}]) {
    const r = await put('/v1/services/web/scale', bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.match(r.body.error?.message ?? '', /replicas/);
  }
  assert.equal((await put('/v1/services/nope/scale', { replicas: 1 })).status, 404);
  assert.equal(scaled.length, 1, 'nothing scaled on bad input');
});
