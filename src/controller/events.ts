// A typed event emitter for instance events, used by `wait?state=`, metrics
// and the proxy. Listeners run synchronously after the change is persisted.
import type { InstanceState } from './states.js';
import type { HealthStatus } from './state/instance-record.js';
import type { WakePhasesMs } from './wake-phases.js';

export interface StateChangeEvent {
  id: string;
  name: string;
  from: InstanceState | null; // null: the instance was just created
  to: InstanceState;
  at: string;
}

export interface WakeEvent {
  id: string;
  name: string;
  /** From the wake decision until the app can take the request (restore: accepted a connection; resume: `cont` and the clock set). */
  durationMs: number;
  /** resume: hot standby (`cont`); template / own: cold, restored from the template or the instance's own state; primed: cold, a VM of the primed pool resumed. */
  mode: 'template' | 'own' | 'resume' | 'primed';
  at: string;
  /** The controller's side of the breakdown (controller, vmm, clock), known when the wake returns. */
  phases: WakePhasesMs;
}

/** A wake's whole breakdown, once the proxy reported its side (after the first byte to the client). */
export interface WakePhasesEvent {
  id: string;
  name: string;
  tier: 'hot' | 'cold' | 'primed';
  /** The wake's `at`: which wake these phases belong to. */
  at: string;
  phases: WakePhasesMs;
}

/** The instance's HEALTHCHECK status changed (as its guest reported it). */
export interface HealthEvent {
  id: string;
  name: string;
  status: HealthStatus;
  at: string;
  /** Set when the report was not acted on, or what was done: `restart` (policy) / `none`. */
  action?: 'restart' | 'none';
}

export interface InstanceEvents {
  health: HealthEvent;
  state: StateChangeEvent;
  removed: { id: string; name: string };
  wake: WakeEvent;
  'wake-phases': WakePhasesEvent;
  boot: { id: string; name: string; durationMs: number };
  snapshot: { id: string; name: string; kind: 'template' | 'own'; durationMs: number };
}

type Listener<T> = (event: T) => void;

export class InstanceEventEmitter {
  readonly #listeners = new Map<keyof InstanceEvents, Set<Listener<never>>>();

  /** Returns a function that removes the listener. */
  on<K extends keyof InstanceEvents>(type: K, listener: Listener<InstanceEvents[K]>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof InstanceEvents>(type: K, event: InstanceEvents[K]): void {
    for (const l of this.#listeners.get(type) ?? []) {
      try {
        (l as Listener<InstanceEvents[K]>)(event);
      } catch {
        // A listener's bug must not break the state machine that called it.
      }
    }
  }
}
