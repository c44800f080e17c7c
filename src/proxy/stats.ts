// Per-instance counters of the proxy, read by flickd's metrics (Prometheus text
// and the API). Plain numbers and a cumulative-bucket histogram, so the
// exporter can print them without knowing how they were counted.

/** Upper bounds (ms) of the wake-wait histogram buckets; the last bucket is +Inf. */
export const WAKE_WAIT_BUCKETS_MS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000];

export interface Histogram {
  /** Upper bounds in ms, ascending; `counts` has one more entry, for +Inf. */
  bucketsMs: readonly number[];
  /** Observations per bucket (not cumulative). */
  counts: number[];
  sumMs: number;
  count: number;
}

export interface InstanceProxyStats {
  instanceId: string;
  /** Requests, upgrades and TCP connections that arrived for the instance. */
  requests: number;
  /** Waiting for a wake right now. */
  parkedNow: number;
  /** Ever parked, whatever became of them (forwarded, left, timed out); overflows are not parked. */
  parkedTotal: number;
  /** Refused with 503 because the parking queue was full. */
  overflows: number;
  /** Calls to `Waker.ensureAwake`. */
  wakes: number;
  /** Wakes that did not finish within the wake timeout (their waiters got 504). */
  wakeTimeouts: number;
  /** Wakes whose `ensureAwake` rejected (their waiters got 502). */
  wakeFailures: number;
  /** How long forwarded parked requests waited, from arrival to forwarding. */
  wakeWait: Histogram;
}

export function newStats(instanceId: string): InstanceProxyStats {
  return {
    instanceId,
    requests: 0,
    parkedNow: 0,
    parkedTotal: 0,
    overflows: 0,
    wakes: 0,
    wakeTimeouts: 0,
    wakeFailures: 0,
    wakeWait: { bucketsMs: WAKE_WAIT_BUCKETS_MS, counts: new Array<number>(WAKE_WAIT_BUCKETS_MS.length + 1).fill(0), sumMs: 0, count: 0 },
  };
}

export function observe(histogram: Histogram, ms: number): void {
  const bounds = histogram.bucketsMs;
  let i = 0;
  while (i < bounds.length && ms > bounds[i]!) i++;
  histogram.counts[i]! += 1;
  histogram.sumMs += ms;
  histogram.count += 1;
}

/** A deep copy, so readers never see counters move under them. */
export function snapshotStats(stats: InstanceProxyStats): InstanceProxyStats {
  return { ...stats, wakeWait: { ...stats.wakeWait, counts: [...stats.wakeWait.counts] } };
}
