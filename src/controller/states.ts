// The instance state machine: a closed union of states and the one table that
// says which moves are legal. Every state change in the controller goes through
// `assertTransition`, so an illegal move fails with a named code, never silently.
import { FlickError } from '../errors.js';

export const INSTANCE_STATES = ['starting', 'running', 'draining', 'standby', 'stopping', 'stopped', 'failed'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export type ControllerErrorCode =
  | 'ILLEGAL_TRANSITION' // e.g. stop of a stopped instance, a wake of one that is not in standby
  | 'INSTANCE_NOT_FOUND'
  | 'NAME_TAKEN' // a new instance's name (a fork's) is another's
  | 'INVALID_SPEC' // a create request the controller cannot run (bad port, no command)
  | 'START_FAILED' // boot or readiness failed (what `wait` for running reports)
  | 'SNAPSHOT_FAILED' // a snapshot or a copy of one could not be written (disk)
  | 'WAKE_FAILED' // a standby instance could not be restored or resumed
  | 'WAIT_TIMEOUT'; // `wait` gave up: its timeout passed or its caller left

export class ControllerError extends FlickError<ControllerErrorCode> {}

/**
 * Legal moves. `standby → starting` is a cold wake (a restore), `standby → running`
 * a hot one (the paused VM resumed: nothing to wait for); `failed`/`stopped → starting`
 * is a (re)start; `draining → running` is a request that arrived while the
 * instance was on its way to standby; `running → stopped` is an app that
 * exited by itself with code 0; `starting → standby` is the start of a
 * scale-to-zero instance whose shared template exists (it sleeps until its
 * first request). Any state may fail.
 */
const TRANSITIONS: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  starting: ['running', 'standby', 'stopping', 'stopped', 'failed'],
  running: ['draining', 'stopping', 'stopped', 'failed'],
  draining: ['standby', 'running', 'stopping', 'stopped', 'failed'],
  standby: ['starting', 'running', 'stopping', 'failed'],
  stopping: ['stopped', 'failed'],
  stopped: ['starting', 'failed'],
  failed: ['starting', 'stopping', 'failed'],
};

export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws ILLEGAL_TRANSITION (a user error: the request does not fit the instance's state). */
export function assertTransition(name: string, from: InstanceState, to: InstanceState, verb = `move to ${to}`): void {
  if (canTransition(from, to)) return;
  throw new ControllerError('ILLEGAL_TRANSITION', `cannot ${verb} instance "${name}": it is ${from}${hintFor(from, to)}`, {
    kind: 'user',
    details: { from, to },
  });
}

function hintFor(from: InstanceState, to: InstanceState): string {
  if (to === 'stopping' && from === 'stopped') return '';
  if (to === 'starting' && (from === 'running' || from === 'starting')) return '';
  if (from === 'stopping' || from === 'starting') return `; wait until it settles ('flick get') and try again`;
  return '';
}

/** States in which a VMM process may exist for the instance. */
export function hasProcess(state: InstanceState): boolean {
  return state === 'starting' || state === 'running' || state === 'draining' || state === 'stopping';
}
