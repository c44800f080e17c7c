// flickd's numbers, gathered in one place and printed two ways: JSON for
// /v1/metrics and /v1/instances/{id}/metrics, and the Prometheus text
// exposition format (version 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/) for /metrics.
// Per instance: state, boot time, wakes and wake latency by standby tier
// (controller), requests, parked and refused requests and the proxy's
// wait-for-wake histogram (the proxy's own counters).
import { formatKeepResident } from '../controller/hot-standby.js';
import type { Controller } from '../controller/controller.js';
import { WAKE_TIERS, type InstanceControllerMetrics, type LatencyHistogram, type WakeTier } from '../controller/metrics.js';
import { WAKE_PHASES, type WakePhase } from '../controller/wake-phases.js';
import { INSTANCE_STATES } from '../controller/states.js';
import type { InstanceProxyStats } from '../proxy/stats.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';

export type MetricsController = Pick<Controller, 'list' | 'get' | 'metrics' | 'hotStandby'> & Partial<Pick<Controller, 'primedPool'>>;

export interface MetricsSources {
  controller: MetricsController;
  /** The ingress proxy's per-instance counters (none without a proxy). */
  proxyStats?: () => InstanceProxyStats[];
}

export interface HistogramView {
  buckets_ms: readonly number[];
  /** Cumulative counts per upper bound (Prometheus style); the last is +Inf (= count). */
  cumulative: number[];
  sum_ms: number;
  count: number;
}

export interface InstanceMetricsView {
  id: string;
  name: string;
  state: InstanceRecord['status']['state'];
  standby_tier: 'hot' | 'cold' | null;
  boot_ms: number | null;
  /** From the record (persists); `cold` includes primed wakes, `primed` counts them since flickd started. */
  wakes: { hot: number; cold: number; primed: number; total: number };
  /** By how the wake went: hot, cold (restored on the wake's path) and primed (a primed VM resumed). */
  wake_latency_ms: Record<WakeTier, HistogramView>;
  /** The wake breakdown: per phase (and total), by tier (controller/wake-phases.ts). */
  wake_phases_ms: Record<WakeTier, PhaseViews>;
  last_wake: InstanceControllerMetrics['lastWake'];
  suspends: { hot: number; cold: number };
  demotions: number;
  page_outs: number;
  hot_bytes_after_page_out: number | null;
  proxy: {
    requests: number;
    parked_now: number;
    parked_total: number;
    overflows: number;
    wake_timeouts: number;
    wake_failures: number;
    wake_wait_ms: HistogramView;
  } | null;
}

export type PhaseViews = Record<WakePhase | 'total', HistogramView>;

export interface HostMetricsView {
  hot_standby: { budget_bytes: number; page_out_after_ms: number; keep_resident: string; used_bytes: number; instances: number };
  /** The primed pool (controller/primed/primed-pool.ts); null where the controller has none. */
  primed_pool: {
    budget_bytes: number; used_bytes: number; vms: number; templates: number; priming: boolean; hits: number; misses: number; refills: number; refill_failures: number; evictions: number;
    /** Primed VMs of stateful instances, each from its own saved state. */
    stateful?: { budget_bytes: number; used_bytes: number; vms: number; hits: number; misses: number; primes: number; failures: number; evictions: number };
  } | null;
  instances: InstanceMetricsView[];
}

function histogramView(h: Pick<LatencyHistogram, 'bucketsMs' | 'counts' | 'sumMs' | 'count'>): HistogramView {
  let running = 0;
  return { buckets_ms: h.bucketsMs, cumulative: h.counts.map((c) => (running += c)), sum_ms: h.sumMs, count: h.count };
}

function phaseViews(h: InstanceControllerMetrics['wakePhases']['hot']): PhaseViews {
  return Object.fromEntries(PHASES_AND_TOTAL.map((p) => [p, histogramView(h[p])])) as PhaseViews;
}

const PHASES_AND_TOTAL = [...WAKE_PHASES, 'total'] as const;

function byTier<T>(f: (t: WakeTier) => T): Record<WakeTier, T> {
  return Object.fromEntries(WAKE_TIERS.map((t) => [t, f(t)])) as Record<WakeTier, T>;
}

export function instanceMetrics(src: MetricsSources, rec: InstanceRecord, proxy: InstanceProxyStats | undefined): InstanceMetricsView {
  const m = src.controller.metrics(rec.id);
  return {
    id: rec.id,
    name: rec.name,
    state: rec.status.state,
    standby_tier: rec.status.state === 'standby' ? (rec.status.standbyTier ?? 'cold') : null,
    boot_ms: m.bootMs,
    // The record's counters persist across flickd restarts; the histograms do not.
    wakes: { hot: rec.status.counters.wakesHot ?? 0, cold: rec.status.counters.wakesCold ?? 0, primed: m.wakes.primed, total: rec.status.counters.wakes },
    wake_latency_ms: byTier((t) => histogramView(m.wakeLatency[t])),
    wake_phases_ms: byTier((t) => phaseViews(m.wakePhases[t])),
    last_wake: m.lastWake,
    suspends: m.suspends,
    demotions: m.demotions,
    page_outs: m.pageOuts,
    hot_bytes_after_page_out: m.hotBytesAfterPageOut,
    proxy: proxy
      ? {
          requests: proxy.requests,
          parked_now: proxy.parkedNow,
          parked_total: proxy.parkedTotal,
          overflows: proxy.overflows,
          wake_timeouts: proxy.wakeTimeouts,
          wake_failures: proxy.wakeFailures,
          wake_wait_ms: histogramView(proxy.wakeWait),
        }
      : null,
  };
}

export function hostMetrics(src: MetricsSources): HostMetricsView {
  const stats = new Map((src.proxyStats?.() ?? []).map((s) => [s.instanceId, s]));
  const hot = src.controller.hotStandby();
  const p = src.controller.primedPool?.();
  return {
    hot_standby: { budget_bytes: hot.budgetBytes, page_out_after_ms: hot.pageOutAfterMs, keep_resident: formatKeepResident(hot.keepResident), used_bytes: hot.usedBytes, instances: hot.instances.length },
    primed_pool: p
      ? {
          budget_bytes: p.budgetBytes, used_bytes: p.usedBytes, vms: p.entries, templates: p.templates, priming: p.priming, hits: p.hits, misses: p.misses, refills: p.refills, refill_failures: p.refillFailures, evictions: p.evictions,
          ...(p.stateful ? { stateful: { budget_bytes: p.stateful.budgetBytes, used_bytes: p.stateful.usedBytes, vms: p.stateful.vms, hits: p.stateful.hits, misses: p.stateful.misses, primes: p.stateful.primes, failures: p.stateful.failures, evictions: p.stateful.evictions } } : {}),
        }
      : null,
    instances: src.controller.list().map((rec) => instanceMetrics(src, rec, stats.get(rec.id))),
  };
}

export function oneInstanceMetrics(src: MetricsSources, idOrName: string): InstanceMetricsView {
  const rec = src.controller.get(idOrName);
  return instanceMetrics(src, rec, src.proxyStats?.().find((s) => s.instanceId === rec.id));
}

/** The Prometheus text format of `view`. */
export function renderPrometheus(view: HostMetricsView): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter' | 'histogram', help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const labels = (i: InstanceMetricsView, extra: Record<string, string> = {}) =>
    `{${Object.entries({ instance_id: i.id, name: i.name, ...extra })
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',')}}`;
  const hist = (name: string, i: InstanceMetricsView, h: HistogramView, extra: Record<string, string> = {}) => {
    h.buckets_ms.forEach((le, n) => out.push(`${name}_bucket${labels(i, { ...extra, le: String(le / 1000) })} ${h.cumulative[n]}`));
    out.push(`${name}_bucket${labels(i, { ...extra, le: '+Inf' })} ${h.count}`);
    out.push(`${name}_sum${labels(i, extra)} ${h.sum_ms / 1000}`, `${name}_count${labels(i, extra)} ${h.count}`);
  };
  const is = view.instances;

  family('flick_instance_state', 'gauge', 'Instance state: 1 for the state it is in.');
  for (const i of is) for (const s of INSTANCE_STATES) out.push(`flick_instance_state${labels(i, { state: s })} ${i.state === s ? 1 : 0}`);
  family('flick_instance_standby_tier', 'gauge', 'In standby: 1 for the tier (hot: paused process; cold: none).');
  for (const i of is) for (const t of ['hot', 'cold']) out.push(`flick_instance_standby_tier${labels(i, { tier: t })} ${i.standby_tier === t ? 1 : 0}`);
  family('flick_instance_boot_seconds', 'gauge', 'Time of the last boot until the app accepted a connection.');
  for (const i of is) if (i.boot_ms !== null) out.push(`flick_instance_boot_seconds${labels(i)} ${i.boot_ms / 1000}`);
  family('flick_instance_wakes_total', 'counter', 'Wakes from standby, by tier.');
  for (const i of is) for (const t of ['hot', 'cold'] as const) out.push(`flick_instance_wakes_total${labels(i, { tier: t })} ${i.wakes[t]}`);
  family('flick_instance_primed_wakes_total', 'counter', 'Cold wakes served by a primed VM (also counted in flick_instance_wakes_total{tier="cold"}), since flickd started.');
  for (const i of is) out.push(`flick_instance_primed_wakes_total${labels(i)} ${i.wakes.primed}`);
  family('flick_instance_wake_duration_seconds', 'histogram', 'Wake latency (decision to app ready), by tier (hot, cold, primed: a cold wake served by a primed VM), since flickd started.');
  for (const i of is) for (const t of WAKE_TIERS) hist('flick_instance_wake_duration_seconds', i, i.wake_latency_ms[t], { tier: t });
  family('flick_instance_wake_phase_seconds', 'histogram', 'Wake breakdown: time of each phase (controller, vmm, clock, forward, upstream, client) and the total from parked to the first byte to the client, by tier, since flickd started.');
  for (const i of is) {
    for (const t of WAKE_TIERS) {
      if (i.wake_phases_ms[t].total.count === 0) continue; // no wake of this tier yet: no lines
      for (const p of PHASES_AND_TOTAL) hist('flick_instance_wake_phase_seconds', i, i.wake_phases_ms[t][p], { tier: t, phase: p });
    }
  }
  family('flick_instance_suspends_total', 'counter', 'Suspends to standby, by tier, since flickd started.');
  for (const i of is) for (const t of ['hot', 'cold'] as const) out.push(`flick_instance_suspends_total${labels(i, { tier: t })} ${i.suspends[t]}`);
  family('flick_instance_demotions_total', 'counter', 'Hot standby instances demoted to cold (over the RAM budget).');
  for (const i of is) out.push(`flick_instance_demotions_total${labels(i)} ${i.demotions}`);
  family('flick_instance_requests_total', 'counter', 'Requests, upgrades and TCP connections the proxy received.');
  for (const i of is) if (i.proxy) out.push(`flick_instance_requests_total${labels(i)} ${i.proxy.requests}`);
  family('flick_instance_parked_requests', 'gauge', 'Requests parked now, waiting for a wake.');
  for (const i of is) if (i.proxy) out.push(`flick_instance_parked_requests${labels(i)} ${i.proxy.parked_now}`);
  family('flick_instance_parked_requests_total', 'counter', 'Requests ever parked for a wake.');
  for (const i of is) if (i.proxy) out.push(`flick_instance_parked_requests_total${labels(i)} ${i.proxy.parked_total}`);
  family('flick_instance_queue_overflows_total', 'counter', 'Requests refused with 503 because the parking queue was full.');
  for (const i of is) if (i.proxy) out.push(`flick_instance_queue_overflows_total${labels(i)} ${i.proxy.overflows}`);
  family('flick_instance_wake_wait_seconds', 'histogram', 'How long parked requests waited before being forwarded (proxy).');
  for (const i of is) if (i.proxy) hist('flick_instance_wake_wait_seconds', i, i.proxy.wake_wait_ms);
  family('flick_hot_standby_budget_bytes', 'gauge', 'Host RAM the hot standby tier may hold.');
  out.push(`flick_hot_standby_budget_bytes ${view.hot_standby.budget_bytes}`);
  family('flick_hot_standby_used_bytes', 'gauge', 'Host RAM the hot standby tier holds now.');
  out.push(`flick_hot_standby_used_bytes ${view.hot_standby.used_bytes}`);
  family('flick_hot_standby_instances', 'gauge', 'Instances in hot standby.');
  out.push(`flick_hot_standby_instances ${view.hot_standby.instances}`);
  const pp = view.primed_pool;
  if (pp) {
    const gauges: Array<[string, string, number]> = [
      ['budget_bytes', 'Host RAM the primed pool may hold.', pp.budget_bytes],
      ['used_bytes', 'Host RAM the primed pool holds now (primed VMs, and one being restored).', pp.used_bytes],
      ['vms', 'Primed VMs ready for a cold wake.', pp.vms],
      ['templates', 'Templates with a primed VM.', pp.templates],
    ];
    for (const [n, help, v] of gauges) (family(`flick_primed_pool_${n}`, 'gauge', help), out.push(`flick_primed_pool_${n} ${v}`));
    const counters: Array<[string, string, number]> = [
      ['hits_total', 'Cold wakes of stateless instances that took a primed VM.', pp.hits],
      ['misses_total', 'Cold wakes of stateless instances that found none that fit (restored on the wake path).', pp.misses],
      ['refills_total', 'VMs restored into the primed pool.', pp.refills],
      ['refill_failures_total', 'Restores into the primed pool that failed.', pp.refill_failures],
      ['evictions_total', 'Primed VMs ended to make room for a busier template.', pp.evictions],
    ];
    for (const [n, help, v] of counters) (family(`flick_primed_pool_${n}`, 'counter', help), out.push(`flick_primed_pool_${n} ${v}`));
  }
  return `${out.join('\n')}\n`;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
