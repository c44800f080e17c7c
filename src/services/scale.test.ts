// Unit tests of scaling a service: on a fake controller (no VMs), members are
// created and removed as the service's count says; bad counts are user errors.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { FlickError } from '../errors.js';
import { Services } from './services.js';
import type { ServiceController } from './members.js';

function fakeController(): { controller: ServiceController; records: Map<string, InstanceRecord>; removed: string[] } {
  const records = new Map<string, InstanceRecord>();
  const removed: string[] = [];
  const listeners: Array<(e: { id: string }) => void> = [];
  let n = 0;
  const controller = {
    create: async (config: { name: string }) => {
      const rec = { id: `id${++n}`, name: config.name, spec: { service: {} }, status: { state: 'running', snapshots: {} } } as unknown as InstanceRecord;
      records.set(rec.id, rec);
      return rec;
    },
    rm: async (id: string) => {
      const rec = records.get(id);
      if (!rec) throw new FlickError('INSTANCE_NOT_FOUND', id);
      records.delete(id);
      removed.push(id);
      for (const l of listeners) l({ id });
      return rec;
    },
    list: () => [...records.values()],
    get: (id: string) => records.get(id)!,
    on: (type: string, l: (e: { id: string }) => void) => {
      if (type === 'removed') listeners.push(l);
      return () => undefined;
    },
  } as unknown as ServiceController;
  return { controller, records, removed };
}

const instance = { image: 'app:1' } as never;

test('scale up creates the missing members; scale down removes standby ones first, then the newest', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-scale-'));
  const { controller, records, removed } = fakeController();
  const services = new Services({ controller, dataDir: dir });
  try {
    await services.create({ name: 'web', replicas: 2, instance });
    const up = await services.scale('web', 4);
    assert.equal(up.replicas, 4);
    assert.equal(up.members.length, 4);
    assert.ok(up.members.every((id) => records.get(id)?.name.startsWith('web-')));
    const [m1, m2, m3, m4] = up.members;
    (records.get(m2!)!.status as { state: string }).state = 'standby';
    const down = await services.scale('web', 2);
    assert.deepEqual(removed, [m2, m4], 'the standby member, then the newest running one');
    assert.deepEqual(down.members, [m1, m3]);
    assert.deepEqual(services.get('web').members, [m1, m3], 'stored');
    const zero = await services.scale('web', 0);
    assert.deepEqual(zero.members, []);
    assert.equal((await services.scale('web', 1)).members.length, 1, 'back up from zero');
  } finally {
    services.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('scale refuses a bad count, an unknown service and an autoscaled service, with user errors that say why', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-scale-'));
  const { controller, records } = fakeController();
  const services = new Services({ controller, dataDir: dir });
  try {
    await services.create({ name: 'web', replicas: 1, instance });
    for (const bad of [-1, 1.5, 65]) {
      await assert.rejects(services.scale('web', bad), (e: FlickError) => e.kind === 'user' && e.code === 'INVALID_SPEC' && /whole number from 0 to 64/.test(e.message));
    }
    await assert.rejects(services.scale('nope', 2), (e: FlickError) => e.code === 'SERVICE_NOT_FOUND');
    await services.create({ name: 'auto', replicas: 1, instance, autoscale: { min: 1, max: 1 } });
    await assert.rejects(services.scale('auto', 3), (e: FlickError) => e.kind === 'user' && e.code === 'INVALID_SPEC' && /autoscaled \(min 1, max 1\)/.test(e.message));
    assert.equal(services.get('web').members.length, 1, 'nothing changed');
    assert.equal(records.size, 2);
  } finally {
    services.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
