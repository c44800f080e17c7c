// Autoscale of a service: `min=0,max=8,target-inflight=10,cooldown-time=2s`.
// The service keeps `max` members; the first `min` always run, the others are
// scale-to-zero instances of one shared template, created straight into cold
// standby once the template exists. Scaling is then two mechanisms that already
// exist, seen from the service: the proxy's balancer wakes another member when
// every awake one has `target` requests in flight (scale up, all at once for a
// burst), and each member's own cooldown puts it into standby after
// `cooldown-time` without requests (scale down, one by one, never below `min`).
// This file parses the policy and keeps the scale events, with their reasons,
// for `flick service get`, /metrics and the log.
import type { InstanceEventEmitter } from '../controller/events.js';
import { FlickError } from '../errors.js';

export interface AutoscaleConfig {
  min: number;
  max: number;
  /** In-flight requests per awake instance above which another one wakes. */
  targetInFlight: number;
  /** Time without requests before an instance goes to standby. */
  cooldownTimeMs: number;
}

export const DEFAULT_TARGET_INFLIGHT = 10;
export const DEFAULT_AUTOSCALE_COOLDOWN_MS = 5_000;

/** Checks a policy (from the API) and fills its defaults; INVALID_SPEC says what to write. */
export function resolveAutoscale(asked: Partial<AutoscaleConfig>, maxReplicas: number): AutoscaleConfig {
  const a: AutoscaleConfig = {
    min: asked.min ?? 0,
    max: asked.max ?? Math.max(1, asked.min ?? 1),
    targetInFlight: asked.targetInFlight ?? DEFAULT_TARGET_INFLIGHT,
    cooldownTimeMs: asked.cooldownTimeMs ?? DEFAULT_AUTOSCALE_COOLDOWN_MS,
  };
  const bad = (m: string) => new FlickError('INVALID_SPEC', `autoscale: ${m}`, { kind: 'user' });
  if (!Number.isInteger(a.max) || a.max < 1 || a.max > maxReplicas) throw bad(`max=${a.max} must be a whole number from 1 to ${maxReplicas}, e.g. max=8`);
  if (!Number.isInteger(a.min) || a.min < 0 || a.min > a.max) throw bad(`min=${a.min} must be a whole number from 0 to max (${a.max}), e.g. min=0`);
  if (!Number.isInteger(a.targetInFlight) || a.targetInFlight < 1) throw bad(`target-inflight=${a.targetInFlight} must be a whole number ≥ 1, e.g. target-inflight=10`);
  if (!Number.isInteger(a.cooldownTimeMs) || a.cooldownTimeMs < 1) throw bad(`cooldown-time=${a.cooldownTimeMs} must be a whole number of milliseconds ≥ 1, e.g. cooldown-time=2000`);
  return a;
}

export interface ScaleEvent {
  at: string;
  direction: 'up' | 'down';
  instance: string;
  /** Awake members after the event. */
  awake: number;
  reason: string;
}

const KEPT_EVENTS = 50;

/** The scale events of every autoscaled service, from the controller's events about their members. */
export class ScaleEvents {
  readonly #events = new Map<string, ScaleEvent[]>();
  readonly #totals = new Map<string, { up: number; down: number }>();
  readonly #off: Array<() => void>;

  /**
   * `lookup(instanceId)`: the member's service, its policy and how many of its
   * members are awake now, or undefined for an instance of no autoscaled service.
   */
  constructor(events: Pick<InstanceEventEmitter, 'on'>, lookup: (id: string) => { service: string; policy: AutoscaleConfig; awake: number } | undefined, log: (line: string) => void) {
    const record = (id: string, name: string, direction: 'up' | 'down', reason: (p: AutoscaleConfig, awake: number) => string): void => {
      const found = lookup(id);
      if (found === undefined) return;
      const e: ScaleEvent = { at: new Date().toISOString(), direction, instance: name, awake: found.awake, reason: reason(found.policy, found.awake) };
      const list = this.#events.get(found.service) ?? [];
      list.push(e);
      if (list.length > KEPT_EVENTS) list.shift();
      this.#events.set(found.service, list);
      const t = this.#totals.get(found.service) ?? { up: 0, down: 0 };
      t[direction] += 1;
      this.#totals.set(found.service, t);
      log(`service ${found.service}: scale ${direction}: ${name}: ${e.reason} (${e.awake} awake)`);
    };
    this.#off = [
      events.on('wake', (e) => record(e.id, e.name, 'up', (p) => `woke (${e.mode === 'resume' ? 'hot' : 'cold'}, ${Math.round(e.durationMs)} ms): a request found every awake instance at ${p.targetInFlight} in flight, or none awake`)),
      events.on('state', (e) => {
        if (e.to === 'standby' && e.from !== null) record(e.id, e.name, 'down', (p) => `to standby after ${p.cooldownTimeMs} ms without requests`);
      }),
    ];
  }

  /** The service's recent events, oldest first. */
  recent(service: string): ScaleEvent[] {
    return [...(this.#events.get(service) ?? [])];
  }

  totals(service: string): { up: number; down: number } {
    return { ...(this.#totals.get(service) ?? { up: 0, down: 0 }) };
  }

  forget(service: string): void {
    this.#events.delete(service);
    this.#totals.delete(service);
  }

  dispose(): void {
    for (const off of this.#off) off();
  }
}
