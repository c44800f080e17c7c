import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceEventEmitter } from '../controller/events.js';
import { ControllerMetrics } from '../controller/metrics.js';
import { newStats, observe } from '../proxy/stats.js';
import type { InstanceRecord, InstanceStatus } from '../controller/state/instance-record.js';
import { testRecord } from '../controller/state/testing.js';
import { hostMetrics, renderPrometheus, type MetricsController } from './metrics.js';

function record(id: string, name: string, status: Partial<InstanceStatus> = {}): InstanceRecord {
  return testRecord(name, { id, status: { state: 'standby', standbyTier: 'hot', counters: { boots: 1, wakes: 3, restarts: 0, wakesHot: 2, wakesCold: 1 }, ...status } });
}

function setup() {
  const events = new InstanceEventEmitter();
  const metrics = new ControllerMetrics(events);
  const recs = [record('a1', 'web'), record('b2', 'q"uote', { state: 'running', standbyTier: undefined })];
  const controller: MetricsController = {
    list: () => recs,
    get: (ref: string) => recs.find((r) => r.id === ref || r.name === ref)!,
    metrics: (id) => metrics.snapshot(id),
    hotStandby: () => ({ budgetBytes: 1000, pageOutAfterMs: 0, keepResident: { bytes: 0 }, usedBytes: 400, instances: ['a1'] }),
    primedPool: () => ({ budgetBytes: 5000, usedBytes: 64, entries: 2, templates: 1, priming: false, hits: 3, misses: 1, refills: 5, refillFailures: 0, evictions: 1 }),
  };
  const stats = newStats('a1');
  stats.parkedNow = 2;
  stats.requests = 7;
  observe(stats.wakeWait, 3);
  return { events, controller, proxyStats: () => [stats] };
}

test('wake events become per-tier counts and cumulative histograms, in JSON and in Prometheus text', () => {
  const { events, controller, proxyStats } = setup();
  const at = new Date().toISOString();
  events.emit('wake', { id: 'a1', name: 'web', durationMs: 4, mode: 'resume', at, phases: {} });
  events.emit('wake', { id: 'a1', name: 'web', durationMs: 150, mode: 'template', at, phases: {} });
  events.emit('wake', { id: 'a1', name: 'web', durationMs: 12, mode: 'primed', at, phases: {} });
  events.emit('boot', { id: 'a1', name: 'web', durationMs: 1500 });
  const view = hostMetrics({ controller, proxyStats });
  const web = view.instances.find((i) => i.name === 'web')!;
  assert.equal(web.standby_tier, 'hot');
  assert.deepEqual(web.wakes, { hot: 2, cold: 1, primed: 1, total: 3 }, 'counts come from the persisted record (primed: since flickd started)');
  assert.equal(web.wake_latency_ms.primed.count, 1, 'a primed wake is its own tier');
  assert.equal(web.wake_latency_ms.cold.count, 1);
  assert.deepEqual(view.primed_pool, { budget_bytes: 5000, used_bytes: 64, vms: 2, templates: 1, priming: false, hits: 3, misses: 1, refills: 5, refill_failures: 0, evictions: 1 });
  assert.equal(web.wake_latency_ms.hot.count, 1);
  assert.equal(web.wake_latency_ms.hot.cumulative.at(-1), 1);
  assert.equal(web.wake_latency_ms.cold.cumulative[web.wake_latency_ms.cold.buckets_ms.indexOf(100)], 0, '150 ms is above the 100 ms bucket');
  assert.equal(web.wake_latency_ms.cold.cumulative[web.wake_latency_ms.cold.buckets_ms.indexOf(200)], 1);
  assert.equal(web.proxy?.parked_now, 2);
  assert.equal(view.instances.find((i) => i.id === 'b2')!.proxy, null, 'no proxy counters for an instance without traffic');
  const text = renderPrometheus(view);
  assert.match(text, /^# TYPE flick_instance_wake_duration_seconds histogram$/m);
  assert.match(text, /^flick_instance_wake_duration_seconds_bucket\{instance_id="a1",name="web",tier="hot",le="0\.005"\} 1$/m);
  assert.match(text, /^flick_instance_wake_duration_seconds_bucket\{instance_id="a1",name="web",tier="cold",le="\+Inf"\} 1$/m);
  assert.match(text, /^flick_instance_wakes_total\{instance_id="a1",name="web",tier="hot"\} 2$/m);
  assert.match(text, /^flick_instance_parked_requests\{instance_id="a1",name="web"\} 2$/m);
  assert.match(text, /^flick_instance_boot_seconds\{instance_id="a1",name="web"\} 1\.5$/m);
  assert.match(text, /^flick_instance_state\{instance_id="b2",name="q\\"uote",state="running"\} 1$/m, 'label values are escaped');
  assert.match(text, /^flick_hot_standby_used_bytes 400$/m);
  assert.match(text, /^flick_instance_wake_duration_seconds_count\{instance_id="a1",name="web",tier="primed"\} 1$/m);
  assert.match(text, /^flick_instance_primed_wakes_total\{instance_id="a1",name="web"\} 1$/m);
  for (const l of ['flick_primed_pool_budget_bytes 5000', 'flick_primed_pool_vms 2', 'flick_primed_pool_hits_total 3', 'flick_primed_pool_misses_total 1', 'flick_primed_pool_evictions_total 1']) assert.match(text, new RegExp(`^${l}$`, 'm'));
  for (const line of text.trim().split('\n')) assert.match(line, /^(# (HELP|TYPE) \S+ .+|[a-z_]+(\{[^}]*\})? -?[0-9.e+]+)$/, `a valid exposition line: ${line}`);
});

test("a wake breakdown: the controller's phases at once, the proxy's when it reports; histograms per tier and phase", () => {
  const { events, controller, proxyStats } = setup();
  const at = '2026-12-01T18:00:00.000Z';
  events.emit('wake', { id: 'a1', name: 'web', durationMs: 3, mode: 'resume', at, phases: { controller: 0.2, vmm: 1, clock: 0.5 } });
  let web = hostMetrics({ controller, proxyStats }).instances.find((i) => i.name === 'web')!;
  assert.deepEqual(web.last_wake?.phases, { controller: 0.2, vmm: 1, clock: 0.5 }, 'the controller side, before the proxy reports');
  assert.equal(web.wake_phases_ms.hot.total.count, 0, 'observed only once the breakdown is whole');
  assert.doesNotMatch(renderPrometheus(hostMetrics({ controller, proxyStats })), /flick_instance_wake_phase_seconds_bucket/, 'no lines before a wake');
  const phases = { controller: 0.3, vmm: 1, clock: 0.5, forward: 0.4, upstream: 2, client: 0.1, total: 4.3 };
  events.emit('wake-phases', { id: 'a1', name: 'web', tier: 'hot', at, phases });
  events.emit('wake-phases', { id: 'a1', name: 'web', tier: 'hot', at: 'another wake', phases: { ...phases, vmm: 7 } });
  web = hostMetrics({ controller, proxyStats }).instances.find((i) => i.name === 'web')!;
  assert.deepEqual(web.last_wake?.phases, phases, "another wake's report does not overwrite the last wake's phases");
  assert.equal(web.wake_phases_ms.hot.vmm.count, 2);
  assert.equal(web.wake_phases_ms.hot.client.cumulative[web.wake_phases_ms.hot.client.buckets_ms.indexOf(0.1)], 2, '0.1 ms falls in the 0.1 ms bucket');
  assert.equal(web.wake_phases_ms.cold.total.count, 0);
  const text = renderPrometheus(hostMetrics({ controller, proxyStats }));
  assert.match(text, /^flick_instance_wake_phase_seconds_bucket\{instance_id="a1",name="web",tier="hot",phase="upstream",le="0\.002"\} 2$/m);
  assert.match(text, /^flick_instance_wake_phase_seconds_count\{instance_id="a1",name="web",tier="hot",phase="total"\} 2$/m);
  assert.doesNotMatch(text, /tier="cold",phase=/, 'a tier without wakes prints no phase lines');
});
