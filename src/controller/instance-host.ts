// The one interface the controller's parts act on an instance through (scale
// to zero now; a service controller later): its record (read, transition,
// status update), its queue, its VM process and its network. Lifecycle
// implements it; nothing outside src/controller sees it (the outside uses
// Controller's methods). Records come from the state seam (state/); every
// write here is one status write, in the same turn as the decision that made it.
import type { InstanceRecord, InstanceStatus } from './state/instance-record.js';
import type { MicroVm, RestoreOptions, RunTimes, Snapshot } from '../vmm/driver.js';
import type { InstanceEventEmitter } from './events.js';
import type { ControllerLogger } from './seams.js';
import type { InstanceState } from './states.js';

/** A status write: the fields of the status it replaces (the spec is the user's, never written here). */
export type StatusPatch = Partial<InstanceStatus>;

/** A cold wake's VM, running with its clock set. */
export interface WokenVm {
  vm: MicroVm;
  run: RunTimes;
  /** Taken from the primed pool (primed/), not restored on the wake's path. */
  primed: boolean;
}

export interface InstanceHost {
  readonly events: InstanceEventEmitter;
  readonly log: ControllerLogger;
  /** The record now, or undefined once removed. */
  get(id: string): InstanceRecord | undefined;
  /** The record now; INSTANCE_NOT_FOUND if it was removed meanwhile. */
  fresh(id: string): InstanceRecord;
  /** Checks the move (ILLEGAL_TRANSITION), persists it with `patch`, then emits `state`. */
  transition(rec: InstanceRecord, to: InstanceState, patch?: StatusPatch): InstanceRecord;
  /** Persists `patch` without a change of state (no event). */
  update(rec: InstanceRecord, patch: StatusPatch): InstanceRecord;
  /** Runs `fn` in the instance's queue: lifecycle operations on one instance never interleave. */
  serialize<T>(id: string, fn: () => Promise<T>): Promise<T>;
  /** The instance's live VMM process, if it has one. */
  vm(id: string): MicroVm | undefined;
  /**
   * A VM running `snapshot` for `rec` (which holds no network), its clock set: a primed one
   * bound to it, or a new restore (a ready network attached and persisted first); watched,
   * its pid persisted. On failure the network stays attached: the caller releases it.
   */
  restore(rec: InstanceRecord, snapshot: Snapshot, mode: RestoreOptions['mode']): Promise<WokenVm>;
  /** Ends `vm` on purpose: its exit is expected, not a crash. */
  kill(id: string, vm: MicroVm): Promise<void>;
  /** The instance's VM has ended: its network goes (no-op when it holds none). */
  releaseNetwork(id: string): Promise<void>;
  /** The template key of an instance (what its guest memory depends on). */
  templateKey(rec: InstanceRecord): Promise<string>;
}
