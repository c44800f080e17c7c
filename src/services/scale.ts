// What scaling a service to N means: how many members to create and which to
// remove (standby or stopped ones first, then the newest), or a user error that
// says why not (N out of range, an autoscaled service, a deploy or scale running).
import { FlickError } from '../errors.js';
import type { ServiceRecord } from './service-store.js';

export interface ScalePlan {
  add: number;
  /** Member ids to remove, in order. */
  remove: string[];
}

/** Idle members go first: a standby or stopped one serves nothing. */
const idleRank = (state: string): number => (state === 'failed' || state === 'stopped' ? 0 : state === 'standby' ? 1 : 2);

export function planScale(record: ServiceRecord, members: ReadonlyArray<{ id: string; status: { state: string } }>, replicas: number, maxReplicas: number, busy: boolean): ScalePlan {
  const refuse = (m: string) => new FlickError('ILLEGAL_TRANSITION', m, { kind: 'user' });
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > maxReplicas) {
    throw new FlickError('INVALID_SPEC', `replicas ${replicas} is not a whole number from 0 to ${maxReplicas}: e.g. flick service scale ${record.name} 3`, { kind: 'user' });
  }
  const a = record.autoscale;
  if (a !== undefined) {
    throw new FlickError('INVALID_SPEC', `service "${record.name}" is autoscaled (min ${a.min}, max ${a.max}): its instances are driven by --autoscale; to change min or max, remove it and run it again with --autoscale min=..,max=..`, { kind: 'user' });
  }
  if (record.deploy !== undefined) throw refuse(`service "${record.name}" is being deployed (${record.deploy.image}): scale it once the deploy is done`);
  if (busy) throw refuse(`service "${record.name}" is being scaled already: try again once that is done`);
  const present = members.length;
  if (replicas >= present) return { add: replicas - present, remove: [] };
  const order = members.map((m, i) => ({ m, i })).sort((x, y) => idleRank(x.m.status.state) - idleRank(y.m.status.state) || y.i - x.i);
  return { add: 0, remove: order.slice(0, present - replicas).map((x) => x.m.id) };
}
