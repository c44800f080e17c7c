// The controller's own numbers per instance, fed by its events: wake latency
// (from the wake decision until the app can take the request) by standby
// tier, each wake phase's time by tier (wake-phases.ts) and the last wake's
// breakdown, suspends by tier, page-outs, and the last boot time. Plain counters
// and a bucket histogram, so the Prometheus exporter and the JSON API print
// the same thing. In memory: they restart at zero with flickd (the record's
// wake counters persist).
import type { InstanceEventEmitter } from './events.js';
import { WAKE_PHASES, type WakePhase, type WakePhasesMs } from './wake-phases.js';

export type StandbyTier = 'hot' | 'cold';
/** How a wake went: hot (resumed), cold (restored on the wake's path) or primed (a cold wake served by a VM of the primed pool). */
export type WakeTier = StandbyTier | 'primed';
export const WAKE_TIERS: readonly WakeTier[] = ['hot', 'cold', 'primed'];

/** Upper bounds (ms) of the wake latency buckets; the last bucket is +Inf. */
export const WAKE_BUCKETS_MS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

export interface LatencyHistogram {
  bucketsMs: readonly number[];
  /** Observations per bucket (not cumulative); one more entry than bucketsMs, for +Inf. */
  counts: number[];
  sumMs: number;
  count: number;
}

export interface InstanceControllerMetrics {
  instanceId: string;
  wakes: Record<WakeTier, number>;
  wakeLatency: Record<WakeTier, LatencyHistogram>;
  /** Per phase of the wake breakdown (and `total`, parked to first byte to the client), by tier. */
  wakePhases: Record<WakeTier, Record<WakePhase | 'total', LatencyHistogram>>;
  /** The last wake, for benchmarks that want one number per wake; `phases` fill in when the proxy reports. */
  lastWake: { tier: WakeTier; durationMs: number; at: string; phases: WakePhasesMs } | null;
  suspends: Record<StandbyTier, number>;
  /** Hot instances demoted to cold (over the hot-standby RAM budget). */
  demotions: number;
  pageOuts: number;
  /** Host RAM the instance's VMM held after its last page-out (hot standby). */
  hotBytesAfterPageOut: number | null;
  bootMs: number | null;
}

/** Upper bounds (ms) of the wake phase buckets: finer below a millisecond, where a hot wake's phases fall. */
export const PHASE_BUCKETS_MS: readonly number[] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

function histogram(bucketsMs: readonly number[] = WAKE_BUCKETS_MS): LatencyHistogram {
  return { bucketsMs, counts: new Array<number>(bucketsMs.length + 1).fill(0), sumMs: 0, count: 0 };
}

function phaseHistograms(): Record<WakePhase | 'total', LatencyHistogram> {
  return Object.fromEntries([...WAKE_PHASES, 'total'].map((p) => [p, histogram(PHASE_BUCKETS_MS)])) as Record<WakePhase | 'total', LatencyHistogram>;
}

export function observe(h: LatencyHistogram, ms: number): void {
  let i = 0;
  while (i < h.bucketsMs.length && ms > h.bucketsMs[i]!) i++;
  h.counts[i]! += 1;
  h.sumMs += ms;
  h.count += 1;
}

export class ControllerMetrics {
  readonly #byId = new Map<string, InstanceControllerMetrics>();

  constructor(events: InstanceEventEmitter) {
    events.on('wake', (e) => {
      const m = this.of(e.id);
      const tier: WakeTier = e.mode === 'resume' ? 'hot' : e.mode === 'primed' ? 'primed' : 'cold';
      m.wakes[tier] += 1;
      observe(m.wakeLatency[tier], e.durationMs);
      m.lastWake = { tier, durationMs: e.durationMs, at: e.at, phases: { ...e.phases } };
    });
    // The proxy's report completes the wake's breakdown: every phase is observed once, here,
    // so that a histogram's count is the number of wakes seen from parked to first byte.
    events.on('wake-phases', (e) => {
      const m = this.of(e.id);
      for (const phase of [...WAKE_PHASES, 'total'] as const) {
        const ms = e.phases[phase];
        if (ms !== undefined) observe(m.wakePhases[e.tier][phase], ms);
      }
      if (m.lastWake?.at === e.at) m.lastWake.phases = { ...e.phases };
    });
    events.on('boot', (e) => (this.of(e.id).bootMs = e.durationMs));
    events.on('removed', (e) => this.#byId.delete(e.id));
  }

  of(id: string): InstanceControllerMetrics {
    let m = this.#byId.get(id);
    if (m === undefined) {
      m = {
        instanceId: id,
        wakes: { hot: 0, cold: 0, primed: 0 },
        wakeLatency: { hot: histogram(), cold: histogram(), primed: histogram() },
        wakePhases: { hot: phaseHistograms(), cold: phaseHistograms(), primed: phaseHistograms() },
        lastWake: null,
        suspends: { hot: 0, cold: 0 },
        demotions: 0,
        pageOuts: 0,
        hotBytesAfterPageOut: null,
        bootMs: null,
      };
      this.#byId.set(id, m);
    }
    return m;
  }

  /** The instance's last wake since flickd started, a copy; null if none (creates no entry). */
  lastWake(id: string): InstanceControllerMetrics['lastWake'] {
    const w = this.#byId.get(id)?.lastWake;
    return w ? { ...w, phases: { ...w.phases } } : null;
  }

  /** A deep copy of one instance's numbers. */
  snapshot(id: string): InstanceControllerMetrics {
    return structuredClone(this.of(id));
  }
}
