// What a flickd does at start with a deploy a killed one left in a service's
// record (deploy.ts stores it before every step): with no new member made, or
// caught rolling back, it rolls back (making old-image members again up to the
// service's replicas), with no old member left it completes, and otherwise it resumes
// (the old members serve meanwhile, the new ones join once ready). A new member
// whose creation the kill interrupted is found by the name stored before it; new
// members that died with flickd are removed (a resume makes others). The
// service never ends up with nothing to serve: old members leave the route only
// once new ones are ready.
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { resumeDeploy, rollBack, type DeployHost, type DeployOptions } from './deploy.js';
import type { DeployState, ServiceRecord } from './service-store.js';

export interface RecoveryPlan {
  action: 'roll-back' | 'complete' | 'resume';
  /** Old members that still exist and can serve. */
  oldLeft: string[];
  /** Old members that exist but can no longer serve (being removed when flickd died): removed (a roll-back makes others from the old image). */
  oldDead: string[];
  /** New members that exist and may serve. */
  fresh: string[];
  /** New members that died with flickd: removed first. */
  dead: string[];
}

/** The new members a stopped flickd left that can no longer become ready. */
const DEAD = new Set(['failed', 'stopped', 'stopping']);

export function planRecovery(d: DeployState, instances: readonly InstanceRecord[]): RecoveryPlan {
  const byId = new Map(instances.map((r) => [r.id, r]));
  const interrupted = d.creating === undefined ? undefined : instances.find((r) => r.name === d.creating)?.id;
  if (d.rollingBack !== undefined) {
    // Killed while rolling back: it rolls back again; a member it was making again is an old one.
    const old = [...d.old, ...(interrupted !== undefined && !d.old.includes(interrupted) ? [interrupted] : [])].filter((id) => byId.has(id));
    const oldDead = old.filter((id) => DEAD.has(byId.get(id)!.status.state));
    const created = d.created.filter((id) => byId.has(id));
    return { action: 'roll-back', oldLeft: old.filter((id) => !oldDead.includes(id)), oldDead, fresh: created.filter((id) => !DEAD.has(byId.get(id)!.status.state)), dead: created.filter((id) => DEAD.has(byId.get(id)!.status.state)) };
  }
  const created = [...d.created, ...(interrupted !== undefined && !d.created.includes(interrupted) ? [interrupted] : [])].filter((id) => byId.has(id));
  const dead = created.filter((id) => DEAD.has(byId.get(id)!.status.state));
  const fresh = created.filter((id) => !dead.includes(id));
  const oldLeft = d.old.filter((id) => byId.has(id) && !DEAD.has(byId.get(id)!.status.state));
  const oldDead = d.old.filter((id) => byId.has(id) && DEAD.has(byId.get(id)!.status.state));
  const action = oldLeft.length === 0 ? 'complete' : fresh.length === 0 ? 'roll-back' : 'resume';
  return { action, oldLeft, oldDead, fresh, dead };
}

export interface RecoveryContext {
  host: DeployHost;
  instances: readonly InstanceRecord[];
  put(record: ServiceRecord): Promise<void>;
  log(line: string): void;
  options(opts: { image: string; maxSurge?: number; maxUnavailable?: number }): DeployOptions;
}

/** Carries out the plan; a resume or a roll-back is returned running (either may wait for members to boot), a completion is done when this resolves. */
export async function recoverDeploy(s: ServiceRecord, ctx: RecoveryContext): Promise<{ resumed: Promise<ServiceRecord> } | undefined> {
  const d = s.deploy!;
  const plan = planRecovery(d, ctx.instances);
  for (const id of plan.dead) await ctx.host.removeMember(id);
  const { creating: _gone, ...state } = d;
  const rec: ServiceRecord = { ...s, deploy: { ...state, created: plan.fresh }, members: plan.oldLeft, updatedAt: new Date().toISOString() };
  if (plan.action === 'roll-back') {
    // Dead old ones are not kept: the roll-back makes old-image members again up to the service's replicas.
    for (const id of plan.oldDead) await ctx.host.removeMember(id);
    const why = d.rollingBack ?? 'flickd stopped during the deploy, before any new instance was made';
    // In the background, as a resume: it may make members again and wait for them to boot.
    const back = rollBack(ctx.host, { ...rec, deploy: { ...rec.deploy!, old: [...plan.oldLeft] } }, plan.oldLeft, why, ctx.options({ image: d.image }).readyTimeoutMs, true);
    return { resumed: back.then(() => ctx.host.record()) };
  }
  for (const id of plan.oldDead) await ctx.host.removeMember(id);
  if (plan.action === 'complete') {
    const { deploy: _done, ...rest } = rec;
    await ctx.put({ ...rest, template: { ...s.template, image: d.image }, members: plan.fresh });
    ctx.log(`service ${s.name}: the deploy of ${d.image} flickd was stopped in had replaced every instance: completed`);
    return undefined;
  }
  await ctx.put(rec);
  ctx.host.route(plan.oldLeft);
  ctx.log(`service ${s.name}: resuming the deploy of ${d.image} flickd was stopped in (${plan.oldLeft.length} old, ${plan.fresh.length} new instance(s))`);
  const opts = ctx.options({ image: d.image, ...(d.maxSurge !== undefined ? { maxSurge: d.maxSurge } : {}), ...(d.maxUnavailable !== undefined ? { maxUnavailable: d.maxUnavailable } : {}) });
  return { resumed: resumeDeploy(ctx.host, rec, opts, plan.oldLeft, plan.fresh) };
}
