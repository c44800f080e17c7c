// The controller's own numbers per instance, fed by its events: wake latency
// (from the wake decision until the app can take the request) by standby
// tier, suspends by tier, page-outs, and the last boot time. Plain counters
// and a bucket histogram, so the Prometheus exporter and the JSON API print
// the same thing. In memory: they restart at zero with flickd (the record's
// wake counters persist).
import type { InstanceEventEmitter } from './events.js';

export type StandbyTier = 'hot' | 'cold';

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
  wakes: Record<StandbyTier, number>;
  wakeLatency: Record<StandbyTier, LatencyHistogram>;
  /** The last wake, for benchmarks that want one number per wake. */
  lastWake: { tier: StandbyTier; durationMs: number; at: string } | null;
  suspends: Record<StandbyTier, number>;
  /** Hot instances demoted to cold (over the hot-standby RAM budget). */
  demotions: number;
  pageOuts: number;
  /** Host RAM the instance's VMM held after its last page-out (hot standby). */
  hotBytesAfterPageOut: number | null;
  bootMs: number | null;
}

function histogram(): LatencyHistogram {
  return { bucketsMs: WAKE_BUCKETS_MS, counts: new Array<number>(WAKE_BUCKETS_MS.length + 1).fill(0), sumMs: 0, count: 0 };
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
      const tier: StandbyTier = e.mode === 'resume' ? 'hot' : 'cold';
      m.wakes[tier] += 1;
      observe(m.wakeLatency[tier], e.durationMs);
      m.lastWake = { tier, durationMs: e.durationMs, at: new Date().toISOString() };
    });
    events.on('boot', (e) => (this.of(e.id).bootMs = e.durationMs));
    events.on('removed', (e) => this.#byId.delete(e.id));
  }

  of(id: string): InstanceControllerMetrics {
    let m = this.#byId.get(id);
    if (m === undefined) {
      m = {
        instanceId: id,
        wakes: { hot: 0, cold: 0 },
        wakeLatency: { hot: histogram(), cold: histogram() },
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

  /** A deep copy of one instance's numbers. */
  snapshot(id: string): InstanceControllerMetrics {
    return structuredClone(this.of(id));
  }
}
