// Unit test: a service member's host API answers (fake hosts over real HTTP) reach the
// services as the host raised them (a 409's code, not HOST_DOWN), a down host says what
// to do, and a member a failover is moving is read at its new host, not taken as gone.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { FlickError } from '../errors.js';
import type { CatalogEntry } from './catalog.js';
import type { HostDirectory } from './membership.js';
import { clusterMemberPlacement } from './service-members.js';
import type { ClusterServiceRoutes } from './service-routes.js';

const servers: http.Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** A fake host API: `answer` gives each request's status and body. */
async function host(answer: (req: http.IncomingMessage) => [number, unknown]): Promise<string> {
  const s = http.createServer((req, res) => {
    const [status, body] = answer(req);
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  servers.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

test('a host API\'s error keeps its code, a down host says to retry once it is up, and a member being moved is read at its new host', async () => {
  const h1 = await host(() => [404, { status: 'error', error: { code: 'INSTANCE_NOT_FOUND', message: 'no instance web-a' } }]);
  const h2 = await host((req) => (req.method === 'POST' ? [409, { status: 'error', error: { code: 'NAME_TAKEN', message: 'instance name "web-b" is taken' } }] : [200, { status: 'ok', data: { state: 'running' } }]));
  const apis: Record<string, string | undefined> = { h1, h2, h3: undefined };
  const owners = new Map([['web-a', 'h1']]);
  const p = clusterMemberPlacement({
    self: 'h0', token: 't',
    directory: () => ({ get: (name: string) => (apis[name] ? { load: {}, record: { api: apis[name] } } : undefined) }) as unknown as HostDirectory,
    owned: () => [],
    entry: (name) => (owners.has(name) ? ({ name, owner: owners.get(name) } as CatalogEntry) : undefined),
    shared: {} as ClusterServiceRoutes,
  });
  const code = (err: unknown) => (err instanceof FlickError ? err.code : String(err));

  await assert.rejects(p.create('h2', { image: 'app:1', name: 'web-b' }), (err) => code(err) === 'NAME_TAKEN' && /web-b.*taken/.test((err as Error).message));
  await assert.rejects(p.create('h3', { image: 'app:1', name: 'web-c' }), (err) => code(err) === 'HOST_DOWN' && /retry once host h3 is up: flick hosts/.test((err as Error).message));

  // The catalog here still names h1, which no longer has it: moving, not gone.
  assert.deepEqual(await p.state('@h1/web-a'), { state: 'moving' });
  // The failover's new owner is known: read there.
  owners.set('web-a', 'h2');
  apis.h1 = undefined;
  assert.deepEqual(await p.state('@h1/web-a'), { state: 'running' });
  // Gone from the cluster: stopped.
  owners.delete('web-a');
  apis.h1 = h1;
  assert.equal((await p.state('@h1/web-a')).state, 'stopped');
});
