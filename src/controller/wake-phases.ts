// The wake breakdown: where one wake's time went, phase by phase, from the
// request parked at the proxy to its first byte back to the client. The
// controller marks its own steps (performance.now(), this process's clock);
// the proxy reports its own as durations through the seam (AwakeInstance's
// `reportWake`), so neither side needs the other's clock.
import type { ProxyWakeTimes } from '../proxy/waker.js';
import type { RunTimes } from '../vmm/driver.js';

/** The phases of a wake, in the order they happen; each ends at the step it is named after. */
export const WAKE_PHASES = ['controller', 'vmm', 'clock', 'forward', 'upstream', 'client'] as const;
export type WakePhase = (typeof WAKE_PHASES)[number];

/**
 * One wake's phases (ms). controller: from the request parked (without a proxy's report, from the
 * controller taking the wake) to the VMM call; vmm: until the VMM said the guest runs (resumed, or
 * restored and running); clock: until the guest acknowledged its clock (0 when none was set);
 * forward: until the proxy wrote the first request upstream; upstream: until the instance's first
 * response byte; client: until the proxy's first byte to the client. Proxy phases are absent until
 * the proxy reports them (a TCP route never does). They add up to `total` when it is present.
 */
export type WakePhasesMs = Partial<Record<WakePhase, number>> & { total?: number };

/** The controller's marks of one wake (performance.now()). */
export interface WakeMarks {
  /** The controller took the wake (ensureAwake was called). */
  enter: number;
  /** The VMM call (resume, restore) began. */
  vmmCall: number;
  run: RunTimes;
  /** The controller handed the instance back (just before ensureAwake resolves). */
  done: number;
}

const round = (ms: number): number => Math.round(Math.max(0, ms) * 1000) / 1000;

/** The controller's side only: what is known when the wake returns. */
export function controllerPhases(m: WakeMarks): WakePhasesMs {
  const clocked = Math.max(m.run.runningAt, m.run.clockAt ?? m.run.runningAt);
  return {
    controller: round(m.vmmCall - m.enter),
    vmm: round(m.run.runningAt - m.vmmCall),
    clock: round(clocked - m.run.runningAt),
  };
}

/**
 * Every phase, once the proxy has said how long it waited and what came after. The proxy's wait
 * encloses the controller's span; what it waited beyond that (its call and the promise's hops)
 * belongs to the controller phase, so the phases add up to the total the proxy saw.
 */
export function fullPhases(m: WakeMarks, p: ProxyWakeTimes): WakePhasesMs {
  const span = Math.max(0, m.done - m.enter);
  const hop = Math.max(0, p.waitMs - span);
  const clocked = Math.max(m.run.runningAt, m.run.clockAt ?? m.run.runningAt);
  const phases = {
    ...controllerPhases(m),
    controller: round(hop + m.vmmCall - m.enter),
    forward: round(m.done - clocked + p.forwardMs),
    upstream: round(p.upstreamMs),
    client: round(p.clientMs),
  };
  // = max(waitMs, span) + forwardMs + upstreamMs + clientMs: the phases tile the wake. Summed after
  // rounding, so that the parts never add up to more than the whole.
  const total = Object.values(phases).reduce((a, b) => a + b, 0);
  return { ...phases, total: Math.round(total * 1000) / 1000 };
}
