// Unit tests of rolling deploys and their recovery, on a fake host (no VMs):
// the route is never empty and only ever holds ready members, a member that
// never becomes ready rolls back, and a flickd killed at any step of a deploy
// finds, at its next start, a record from which it rolls back, completes or
// resumes, with every instance it made accounted for.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { FlickError } from '../errors.js';
import { rollingDeploy, type DeployHost, type DeployOptions } from './deploy.js';
import { planRecovery, recoverDeploy } from './recover.js';
import { SERVICE_RECORD_VERSION, type DeployState, type ServiceRecord } from './service-store.js';

interface FakeInstance {
  id: string;
  name: string;
  image: string;
  state: InstanceRecord['status']['state'];
}

class Killed extends Error {}

/** The instances of a host, which outlive a "flickd" (a FakeHost). */
class World {
  readonly instances = new Map<string, FakeInstance>();
  stored: ServiceRecord;
  /** Every route the service was given, in order. */
  readonly routes: string[][] = [];
  #n = 0;
  /** New members' names so far (they must never repeat, whichever flickd made them). */
  named = 0;

  constructor(members: number) {
    const ids: string[] = [];
    for (let i = 0; i < members; i++) ids.push(this.add('old', 'running').id);
    const now = new Date(0).toISOString();
    this.stored = { version: SERVICE_RECORD_VERSION, name: 'web', template: { image: 'old' } as ServiceRecord['template'], replicas: members, members: ids, createdAt: now, updatedAt: now };
  }

  add(image: string, state: FakeInstance['state'], name = `web-${++this.#n}`): FakeInstance {
    const inst = { id: `id-${name}`, name, image, state };
    this.instances.set(inst.id, inst);
    return inst;
  }

  records(): InstanceRecord[] {
    return [...this.instances.values()].map((i) => ({ id: i.id, name: i.name, spec: { image: i.image }, status: { state: i.state } }) as unknown as InstanceRecord);
  }
}

/** One "flickd": a DeployHost over the world that dies (every call throws) after `killAfter` changes. */
function fakeHost(world: World, opts: { killAfter?: number; broken?: string } = {}): DeployHost & { killed: () => boolean } {
  let changes = 0;
  let killed = false;
  const change = (): void => {
    if (killed) throw new Killed('flickd is gone');
    if (opts.killAfter !== undefined && ++changes > opts.killAfter) {
      killed = true;
      throw new Killed('killed -9');
    }
  };
  return {
    killed: () => killed,
    record: () => structuredClone(world.stored),
    save: async (r) => {
      change();
      world.stored = structuredClone(r);
    },
    memberName: () => `web-n${++world.named}`,
    createMember: async (_r, image, _index, name) => {
      change();
      const inst = world.add(image, 'starting', name);
      // The kill may come right after the VM exists, before its id was stored.
      change();
      return { id: inst.id, name: inst.name } as InstanceRecord;
    },
    ready: async (id) => {
      if (killed) throw new Killed('flickd is gone');
      const inst = world.instances.get(id);
      if (inst === undefined) throw new Error(`${id} is gone`);
      if (inst.image === opts.broken) {
        inst.state = 'failed';
        throw new Error(`instance ${inst.name} is failed: the app exited`);
      }
      inst.state = 'running';
    },
    removeMember: async (id) => {
      change();
      world.instances.delete(id);
    },
    route: (members) => {
      change();
      assert.ok(members.length > 0, 'the service always has a member to serve');
      for (const id of members) assert.equal(world.instances.get(id)?.state, 'running', `routed member ${id} is ready`);
      world.routes.push([...members]);
    },
    inFlight: () => 0,
    log: () => undefined,
  };
}

const options = (o: Partial<DeployOptions> = {}): DeployOptions => ({ image: 'new', maxSurge: 1, maxUnavailable: 0, readyTimeoutMs: 1000, drainTimeoutMs: 10, ...o });

test('a rolling deploy replaces every member, one step at a time, with only ready members ever routed', async () => {
  for (const [surge, unavailable] of [[1, 0], [2, 0], [0, 1], [1, 1], [3, 0]] as const) {
    const world = new World(3);
    const done = await rollingDeploy(fakeHost(world), options({ maxSurge: surge, maxUnavailable: unavailable }));
    assert.equal(done.deploy, undefined);
    assert.equal(done.template.image, 'new');
    assert.deepEqual(done.members.map((id) => world.instances.get(id)?.image), ['new', 'new', 'new'], `surge ${surge} unavailable ${unavailable}`);
    assert.equal(world.instances.size, 3, 'the old members were removed');
    assert.deepEqual(world.stored, done);
    // At most replicas + surge routed at once, and never fewer than replicas - unavailable.
    for (const r of world.routes) assert.ok(r.length <= 3 + surge && r.length >= Math.max(1, 3 - unavailable), `route ${JSON.stringify(r)} (surge ${surge}, unavailable ${unavailable})`);
  }
});

test('a deploy whose new member never becomes ready rolls back: the new members are removed, the old ones serve', async () => {
  const world = new World(3);
  const old = [...world.stored.members];
  await assert.rejects(rollingDeploy(fakeHost(world, { broken: 'new' }), options()), (err: unknown) => {
    assert.ok(err instanceof FlickError && err.code === 'DEPLOY_FAILED');
    assert.match(err.message, /rolled back: the new instances did not become ready \(instance web-\S+ is failed: the app exited\); the old ones still serve/);
    return true;
  });
  assert.deepEqual(world.stored.members, old);
  assert.equal(world.stored.deploy, undefined);
  assert.deepEqual([...world.instances.keys()].sort(), [...old].sort());
  assert.deepEqual(world.routes.at(-1), old);
  await assert.rejects(rollingDeploy(fakeHost(world), options({ maxSurge: 0 })), /--max-surge 0 --max-unavailable 0/);
});

test('planRecovery: roll back with nothing new made, complete with nothing old left, else resume; a member made but not yet stored is found by name', () => {
  const world = new World(2);
  const [o1, o2] = world.stored.members as [string, string];
  const n1 = world.add('new', 'running').id;
  const dead = world.add('new', 'failed').id;
  const unstored = world.add('new', 'starting', 'web-pending');
  const stopping = world.add('old', 'stopping').id;
  const d = (o: Partial<DeployState>): DeployState => ({ image: 'new', startedAt: '', old: [o1, o2], created: [], ...o });
  const rows: Array<[string, DeployState, ReturnType<typeof planRecovery>]> = [
    ['nothing new', d({}), { action: 'roll-back', oldLeft: [o1, o2], oldDead: [], fresh: [], dead: [] }],
    ['only a dead new one', d({ created: [dead] }), { action: 'roll-back', oldLeft: [o1, o2], oldDead: [], fresh: [], dead: [dead] }],
    ['one new, both old', d({ created: [n1] }), { action: 'resume', oldLeft: [o1, o2], oldDead: [], fresh: [n1], dead: [] }],
    ['a new one being made', d({ created: [n1], creating: 'web-pending' }), { action: 'resume', oldLeft: [o1, o2], oldDead: [], fresh: [n1, unstored.id], dead: [] }],
    ['a removed old one', d({ old: [o1, 'gone'], created: [n1] }), { action: 'resume', oldLeft: [o1], oldDead: [], fresh: [n1], dead: [] }],
    ['an old one being removed', d({ old: [o1, stopping], created: [n1] }), { action: 'resume', oldLeft: [o1], oldDead: [stopping], fresh: [n1], dead: [] }],
    ['every old one gone', d({ old: ['gone'], created: [n1, 'also-gone'] }), { action: 'complete', oldLeft: [], oldDead: [], fresh: [n1], dead: [] }],
    ['killed rolling back, remaking an old one', d({ old: [o1], created: [n1], creating: 'web-pending', rollingBack: 'why' }), { action: 'roll-back', oldLeft: [o1, unstored.id], oldDead: [], fresh: [n1], dead: [] }],
  ];
  for (const [what, state, plan] of rows) assert.deepEqual(planRecovery(state, world.records()), plan, what);
});

test('flickd killed at any step of a deploy: the next start rolls back, completes or resumes, and ends with every instance it made in the service', async () => {
  // Count the changes of an uninterrupted deploy, then kill after each of them in turn.
  const full = new World(3);
  let total = 0;
  const counting = fakeHost(full, { killAfter: 1_000 });
  const save = counting.save;
  counting.save = async (r) => {
    total += 1;
    return save(r);
  };
  await rollingDeploy(counting, options());
  assert.ok(total > 6, `a deploy of 3 has many steps: ${total} saves`);
  const outcomes = new Set<string>();
  let uninterrupted = false;
  for (let k = 0; k < 60; k++) {
    const world = new World(3);
    const old = new Set(world.stored.members);
    const dying = fakeHost(world, { killAfter: k });
    const run = await rollingDeploy(dying, options()).then(() => 'done', (err: unknown) => (err instanceof Killed ? 'killed' : err));
    if (run === 'done') {
      uninterrupted = true;
      break;
    }
    assert.equal(run, 'killed', `killed after ${k} changes`);
    if (world.stored.deploy === undefined) continue; // killed before the deploy was stored: nothing to recover
    // The next flickd: the same instances, a new host.
    const next = fakeHost(world);
    const recovery = await recoverDeploy(world.stored, { host: next, instances: world.records(), put: next.save, log: () => undefined, options: (o) => options(o) });
    const final = recovery === undefined ? world.stored : await recovery.resumed;
    assert.equal(final.deploy, undefined, `no deploy is left half done (killed after ${k})`);
    const images = new Set(final.members.map((id) => world.instances.get(id)?.image));
    assert.equal(images.size, 1, `one image after recovery from a kill after ${k}: ${JSON.stringify(final.members)}`);
    outcomes.add(images.has('new') ? 'new' : 'old');
    assert.deepEqual([...world.instances.keys()].sort(), [...final.members].sort(), `every instance is a member, none left over (killed after ${k})`);
    assert.equal(final.members.length, 3, `the service has its 3 replicas after recovery from a kill after ${k}`);
    for (const id of final.members) assert.equal(world.instances.get(id)?.state, 'running');
  }
  assert.ok(uninterrupted, 'every step of the deploy was a kill point');
  assert.deepEqual([...outcomes].sort(), ['new', 'old'], 'early kills roll back, later ones resume or complete');
});

test('a roll-back after a step with --max-unavailable 1 makes the removed old member again: the service has its replicas, and says so', async () => {
  const world = new World(3);
  await assert.rejects(rollingDeploy(fakeHost(world, { broken: 'new' }), options({ maxSurge: 0, maxUnavailable: 1 })), (err: unknown) => {
    assert.ok(err instanceof FlickError && err.code === 'DEPLOY_FAILED');
    assert.match(err.message, /the old ones still serve \(1 made again from old, as many as the deploy had removed\)/);
    return true;
  });
  assert.equal(world.stored.deploy, undefined);
  assert.deepEqual(world.stored.members.map((id) => world.instances.get(id)?.image), ['old', 'old', 'old']);
  assert.deepEqual([...world.instances.keys()].sort(), [...world.stored.members].sort(), 'no instance left over');
  assert.deepEqual({ ...world.stored.lastDeploy, endedAt: '' }, { image: 'new', outcome: 'rolled-back', reason: 'the new instances did not become ready (instance web-n1 is failed: the app exited)', recreated: 1, endedAt: '' });
  assert.equal(world.routes.at(-1)?.length, 3);
  // A deploy that goes through says so too.
  const done = await rollingDeploy(fakeHost(world), options());
  assert.equal(done.lastDeploy?.outcome, 'deployed');
  assert.equal(done.lastDeploy?.image, 'new');
});

test('flickd killed at any step of a deploy that rolls back (--max-unavailable 1, a broken image): the next start ends with 3 old-image members, none left over', async () => {
  let rolledBack = 0;
  for (let k = 0; k < 60; k++) {
    const world = new World(3);
    const run = await rollingDeploy(fakeHost(world, { killAfter: k, broken: 'new' }), options({ maxSurge: 0, maxUnavailable: 1 })).then(
      () => 'done',
      (err: unknown) => (err instanceof Killed ? 'killed' : err instanceof FlickError && err.code === 'DEPLOY_FAILED' ? 'rolled back' : err),
    );
    if (run === 'rolled back') break;
    assert.equal(run, 'killed', `killed after ${k} changes`);
    if (world.stored.deploy === undefined) continue;
    const next = fakeHost(world, { broken: 'new' });
    const recovery = await recoverDeploy(world.stored, { host: next, instances: world.records(), put: next.save, log: () => undefined, options: (o) => options(o) });
    const final = recovery === undefined ? world.stored : await recovery.resumed.catch(() => world.stored);
    assert.equal(final.deploy, undefined, `no deploy left (killed after ${k})`);
    assert.deepEqual(final.members.map((id) => world.instances.get(id)?.image), ['old', 'old', 'old'], `3 old-image members after a kill after ${k}`);
    assert.deepEqual([...world.instances.keys()].sort(), [...final.members].sort(), `none left over (killed after ${k})`);
    rolledBack += 1;
  }
  assert.ok(rolledBack > 5, `kill points recovered: ${rolledBack}`);
});
