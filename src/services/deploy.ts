// Rolling deploys of a service: `flick deploy web IMAGE [--max-surge N] [--max-unavailable N]`.
//
// Step by step, `max-surge + max-unavailable` old members at a time: first up to
// `max-unavailable` old members leave the route; then as many new members (the
// new image, the service's configuration otherwise) are created and must become
// ready (running) before they join the route; then the old members of the step
// leave the route, their in-flight requests finish (drained to 0), and they are
// removed. A service whose members all sleep (autoscale at zero) deploys without
// waking any: the new members take their own template and wait in standby.
//
// Nothing is lost to a crash: the deploy is stored in the service's record
// before any step (`deploy.old`, `deploy.created`, and the name of a member
// before it is created, `deploy.creating`). If a new member never becomes
// ready, every new member is removed and the old ones serve on (rolled back,
// with the reason), made up again from the old image to the service's
// `replicas` where a step had already removed some. A flickd killed mid-deploy finds the record at start
// (services.ts: start()): with no new member made it rolls back, with no old
// member left it completes, and otherwise it resumes (`resumeDeploy`), the old
// members serving meanwhile.
import { describeError, FlickError } from '../errors.js';
import type { DeployOutcome, DeployState, ServiceRecord } from './service-store.js';

export interface DeployOptions {
  image: string;
  maxSurge: number;
  maxUnavailable: number;
  /** How long a new member may take to become ready. */
  readyTimeoutMs: number;
  /** How long an old member's in-flight requests may take to finish. */
  drainTimeoutMs: number;
}

/** What a deploy needs from the services library (its own record, members and route). */
export interface DeployHost {
  record(): ServiceRecord;
  save(record: ServiceRecord): Promise<void>;
  /** A new member's name (`<service>-<4 hex>`), stored before the member is created. */
  memberName(record: ServiceRecord): string;
  /** Creates member `name` of the record's template with `image` (in a cluster, where `siblings`, the members serving beside it, leave most room); its id. */
  createMember(record: ServiceRecord, image: string, index: number, name: string, siblings: readonly string[]): Promise<{ id: string }>;
  /** Resolves when the member is ready (running, or in standby with a template); rejects if it fails. */
  ready(id: string, timeoutMs: number): Promise<void>;
  removeMember(id: string): Promise<void>;
  /** Sets the service's route to exactly these members. */
  route(members: string[]): void;
  inFlight(id: string): number;
  log(line: string): void;
}

export type DeployErrorCode = 'DEPLOY_FAILED' | 'INVALID_SPEC';

export class DeployError extends FlickError<DeployErrorCode> {}

export async function rollingDeploy(host: DeployHost, opts: DeployOptions): Promise<ServiceRecord> {
  if (!Number.isInteger(opts.maxSurge) || !Number.isInteger(opts.maxUnavailable) || opts.maxSurge < 0 || opts.maxUnavailable < 0 || opts.maxSurge + opts.maxUnavailable < 1) {
    throw new DeployError('INVALID_SPEC', `--max-surge ${opts.maxSurge} --max-unavailable ${opts.maxUnavailable}: whole numbers ≥ 0, at least one of them ≥ 1 (e.g. --max-surge 1)`, { kind: 'user' });
  }
  let rec = host.record();
  if (rec.deploy !== undefined) throw new DeployError('DEPLOY_FAILED', `service "${rec.name}" is being deployed already (to ${rec.deploy.image}): wait for it to end`, { kind: 'user' });
  const old = [...rec.members];
  const deploy: DeployState = { image: opts.image, startedAt: new Date().toISOString(), old, created: [], maxSurge: opts.maxSurge, maxUnavailable: opts.maxUnavailable };
  rec = { ...rec, deploy, updatedAt: new Date().toISOString() };
  await host.save(rec);
  return carryOut(host, rec, opts, old, []);
}

/**
 * Goes on with a deploy a killed flickd left (services.ts: start()): `oldLeft`
 * are the old members that still exist, `fresh` the new ones that do (neither
 * empty). The fresh ones serve once ready, as many old ones as they replace
 * beyond those already gone retire, and the rest is replaced step by step as in
 * `rollingDeploy`; a failure rolls back the same way.
 */
export function resumeDeploy(host: DeployHost, rec: ServiceRecord, opts: DeployOptions, oldLeft: string[], fresh: string[]): Promise<ServiceRecord> {
  return carryOut(host, rec, opts, oldLeft, fresh);
}

/** The deploy from its stored state: `oldLeft` serve now, `fresh` (new members made before) are not proven ready yet. */
async function carryOut(host: DeployHost, start: ServiceRecord, opts: DeployOptions, oldLeft: string[], fresh: string[]): Promise<ServiceRecord> {
  let rec = start;
  const state = rec.deploy!;
  const serving = new Set(oldLeft);
  const routed = () => host.route([...serving]);
  const step = opts.maxSurge + opts.maxUnavailable;
  const remaining = [...oldLeft];
  try {
    for (const id of fresh) await host.ready(id, opts.readyTimeoutMs);
    if (fresh.length > 0) {
      for (const id of fresh) serving.add(id);
      routed();
      const replaced = remaining.splice(0, Math.max(0, oldLeft.length + fresh.length - state.old.length));
      for (const id of replaced) await retire(host, serving, id, opts, routed);
      rec = { ...rec, members: [...serving] };
      await host.save(rec);
    }
    for (let i = 0; i < remaining.length; i += step) {
      const batch = remaining.slice(i, i + step);
      // Up to max-unavailable old members leave before their replacements exist.
      // Never the last one serving: the service always has a way to answer.
      const early = batch.slice(0, Math.max(0, Math.min(opts.maxUnavailable, batch.length, serving.size - 1)));
      for (const id of early) await retire(host, serving, id, opts, routed);
      const made: string[] = [];
      for (let k = 0; k < batch.length; k++) {
        // The name first: a flickd killed while the member is created finds it by name.
        const name = host.memberName(rec);
        rec = { ...rec, deploy: { ...rec.deploy!, creating: name }, updatedAt: new Date().toISOString() };
        await host.save(rec);
        const member = await host.createMember(rec, opts.image, fresh.length + i + k, name, [...[...serving].filter((m) => !batch.includes(m)), ...made]);
        made.push(member.id);
        const { creating: _made, ...deploy } = rec.deploy!;
        rec = { ...rec, deploy: { ...deploy, created: [...deploy.created, member.id] }, updatedAt: new Date().toISOString() };
        await host.save(rec);
      }
      for (const id of made) await host.ready(id, opts.readyTimeoutMs);
      for (const id of made) serving.add(id);
      routed();
      for (const id of batch) if (serving.has(id)) await retire(host, serving, id, opts, routed);
      rec = { ...rec, members: [...serving] };
      await host.save(rec);
    }
  } catch (err) {
    const oldServing = state.old.filter((id) => serving.has(id));
    // Nothing old left to go back to (cannot happen in order, but never leave the service with nothing): keep what serves.
    if (oldServing.length > 0) {
      const remade = await rollBack(host, rec, oldServing, `the new instances did not become ready (${describeError(err)})`, opts.readyTimeoutMs);
      const again = remade > 0 ? ` (${remade} made again from ${rec.template.image}, as many as the deploy had removed)` : '';
      throw new DeployError('DEPLOY_FAILED', `deploy of ${opts.image} to service "${rec.name}" rolled back: the new instances did not become ready (${describeError(err)}); the old ones still serve${again}: see 'flick logs' of the new instance, fix the image and deploy again`, { cause: err, kind: 'user' });
    }
    host.log(`service ${rec.name}: deploy of ${opts.image}: ${describeError(err)}; no old instance is left, so the new ones that serve are kept`);
  }
  const { deploy: _done, ...rest } = rec;
  const done: ServiceRecord = { ...rest, template: { ...rec.template, image: opts.image }, members: [...serving], lastDeploy: { image: opts.image, outcome: 'deployed', endedAt: new Date().toISOString() }, updatedAt: new Date().toISOString() };
  await host.save(done);
  host.route(done.members);
  host.log(`service ${done.name}: deployed ${opts.image} (${done.members.length} instance(s))`);
  return done;
}

/** Takes an old member out of the route, lets its in-flight requests finish, removes it. */
async function retire(host: DeployHost, serving: Set<string>, id: string, opts: DeployOptions, routed: () => void): Promise<void> {
  serving.delete(id);
  routed();
  const deadline = Date.now() + opts.drainTimeoutMs;
  while (host.inFlight(id) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  await host.removeMember(id);
}

/**
 * Routes the old members still there (`oldLeft`), removes every new member, and makes old-image
 * members again until the service has its `replicas` (a step of `max-unavailable`, or an old
 * member a killed flickd was removing, may have taken some): the service ends as it was before
 * the deploy. Stored as rolling back first, so a flickd killed meanwhile rolls back again.
 * Resolves with the number of members made again.
 */
export async function rollBack(host: DeployHost, start: ServiceRecord, oldLeft: string[], why: string, readyTimeoutMs: number, prove = false): Promise<number> {
  const created = start.deploy?.created ?? [];
  const kept: string[] = [];
  for (const id of oldLeft) {
    // After a restart (`prove`), an old member may still be booting (one a killed roll-back was making again).
    if (prove) {
      try {
        await host.ready(id, readyTimeoutMs);
      } catch (err) {
        host.log(`service ${start.name}: old instance ${id} is not ready (${describeError(err)}): removed, another is made`);
        await host.removeMember(id);
        continue;
      }
    }
    kept.push(id);
  }
  if (kept.length > 0) host.route(kept);
  // A new member whose creation failed is no old one: its name is not kept.
  const { creating: _failed, ...state } = start.deploy!;
  let rec: ServiceRecord = { ...start, deploy: { ...state, rollingBack: why }, members: [...kept], updatedAt: new Date().toISOString() };
  await host.save(rec);
  for (const id of created) await host.removeMember(id).catch(() => undefined);
  rec = { ...rec, deploy: { ...rec.deploy!, created: [] } };
  const missing = Math.max(0, rec.replicas - kept.length);
  const image = rec.template.image;
  for (let i = 0; i < missing; i++) {
    const name = host.memberName(rec);
    rec = { ...rec, deploy: { ...rec.deploy!, creating: name }, updatedAt: new Date().toISOString() };
    await host.save(rec);
    const member = await host.createMember(rec, image, kept.length, name, kept);
    kept.push(member.id);
    const { creating: _made, ...deploy } = rec.deploy!;
    rec = { ...rec, deploy: { ...deploy, old: [...deploy.old, member.id] }, members: [...kept], updatedAt: new Date().toISOString() };
    await host.save(rec);
  }
  const routed = kept.slice(0, kept.length - missing);
  for (const id of kept.slice(routed.length)) {
    // The old image served before the deploy; one that does not come back is still a member (as after a create), not routed.
    await host.ready(id, readyTimeoutMs).then(
      () => routed.push(id),
      (err: unknown) => host.log(`service ${rec.name}: instance ${id} made again from ${image}: ${describeError(err)}`),
    );
  }
  if (missing > 0 && routed.length > 0) host.route(routed);
  const { deploy: _gone, ...rest } = rec;
  const outcome: DeployOutcome = { image: start.deploy?.image ?? '', outcome: 'rolled-back', reason: why, ...(missing > 0 ? { recreated: missing } : {}), endedAt: new Date().toISOString() };
  await host.save({ ...rest, members: kept, lastDeploy: outcome, updatedAt: new Date().toISOString() });
  host.log(`service ${rec.name}: deploy of ${outcome.image} rolled back: ${why}${missing > 0 ? `; ${missing} instance(s) made again from ${image}, so it has its ${rec.replicas}` : ''}`);
  return missing;
}
