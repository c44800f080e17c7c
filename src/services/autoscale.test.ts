// Unit tests of autoscale's policy and its scale events: a policy is checked
// and filled with defaults (a bad one is a user error saying what to write),
// and the members' wakes and standbys become scale-up and scale-down events
// with their reasons, kept per service, counted and logged (a real event
// emitter, a hand-written lookup; no VMs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceEventEmitter, type WakeEvent } from '../controller/events.js';
import { FlickError } from '../errors.js';
import { DEFAULT_AUTOSCALE_COOLDOWN_MS, DEFAULT_TARGET_INFLIGHT, resolveAutoscale, ScaleEvents, type AutoscaleConfig } from './autoscale.js';

/** A wake event; the breakdown does not matter here. */
const wake = (e: Omit<WakeEvent, 'at' | 'phases'>): WakeEvent => ({ ...e, at: '', phases: {} as WakeEvent['phases'] });

test('resolveAutoscale fills defaults and refuses what it cannot run, saying what to write', () => {
  assert.deepEqual(resolveAutoscale({}, 64), { min: 0, max: 1, targetInFlight: DEFAULT_TARGET_INFLIGHT, cooldownTimeMs: DEFAULT_AUTOSCALE_COOLDOWN_MS });
  assert.deepEqual(resolveAutoscale({ min: 3 }, 64), { min: 3, max: 3, targetInFlight: DEFAULT_TARGET_INFLIGHT, cooldownTimeMs: DEFAULT_AUTOSCALE_COOLDOWN_MS });
  assert.deepEqual(resolveAutoscale({ min: 1, max: 8, targetInFlight: 4, cooldownTimeMs: 2000 }, 64), { min: 1, max: 8, targetInFlight: 4, cooldownTimeMs: 2000 });
  const bad: Array<[Partial<AutoscaleConfig>, RegExp]> = [
    [{ max: 0 }, /max=0 must be a whole number from 1 to 64, e\.g\. max=8/],
    [{ max: 65 }, /max=65 must be a whole number from 1 to 64/],
    [{ max: 2.5 }, /max=2\.5 must be a whole number/],
    [{ min: 5, max: 4 }, /min=5 must be a whole number from 0 to max \(4\)/],
    [{ min: -1, max: 4 }, /min=-1/],
    [{ max: 4, targetInFlight: 0 }, /target-inflight=0 must be a whole number ≥ 1/],
    [{ max: 4, cooldownTimeMs: 0 }, /cooldown-time=0 must be a whole number of milliseconds ≥ 1/],
  ];
  for (const [asked, message] of bad) {
    assert.throws(
      () => resolveAutoscale(asked, 64),
      (err: unknown) => err instanceof FlickError && err.code === 'INVALID_SPEC' && err.kind === 'user' && message.test(err.message),
      JSON.stringify(asked),
    );
  }
});

test('ScaleEvents: a member waking is a scale-up, one going to standby a scale-down, each with its reason; others are ignored', () => {
  const events = new InstanceEventEmitter();
  const policy: AutoscaleConfig = { min: 0, max: 4, targetInFlight: 10, cooldownTimeMs: 2000 };
  let awake = 0;
  const lookup = (id: string) => (id.startsWith('web-') ? { service: 'web', policy, awake } : undefined);
  const lines: string[] = [];
  const scale = new ScaleEvents(events, lookup, (line) => lines.push(line));
  awake = 1;
  events.emit('wake', wake({ id: 'web-1', name: 'web-1', durationMs: 231.6, mode: 'template' }));
  awake = 2;
  events.emit('wake', wake({ id: 'web-2', name: 'web-2', durationMs: 12, mode: 'resume' }));
  events.emit('wake', wake({ id: 'other', name: 'other', durationMs: 5, mode: 'own' }));
  awake = 1;
  events.emit('state', { id: 'web-1', name: 'web-1', from: 'running', to: 'standby', at: '' });
  // Created straight into standby: not a scale-down. Other transitions: not events.
  events.emit('state', { id: 'web-3', name: 'web-3', from: null, to: 'standby', at: '' });
  events.emit('state', { id: 'web-2', name: 'web-2', from: 'starting', to: 'running', at: '' });
  const recent = scale.recent('web');
  assert.deepEqual(recent.map((e) => [e.direction, e.instance, e.awake]), [['up', 'web-1', 1], ['up', 'web-2', 2], ['down', 'web-1', 1]]);
  assert.match(recent[0]!.reason, /^woke \(cold, 232 ms\): a request found every awake instance at 10 in flight, or none awake$/);
  assert.match(recent[1]!.reason, /^woke \(hot, 12 ms\)/);
  assert.equal(recent[2]!.reason, 'to standby after 2000 ms without requests');
  assert.deepEqual(scale.totals('web'), { up: 2, down: 1 });
  assert.deepEqual(scale.recent('other'), []);
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, /^service web: scale down: web-1: to standby after 2000 ms without requests \(1 awake\)$/);
  scale.forget('web');
  assert.deepEqual(scale.totals('web'), { up: 0, down: 0 });
  scale.dispose();
  events.emit('wake', wake({ id: 'web-1', name: 'web-1', durationMs: 1, mode: 'resume' }));
  assert.deepEqual(scale.recent('web'), [], 'disposed: no longer listening');
});

test('ScaleEvents keeps the last 50 events of a service, and totals of all', () => {
  const events = new InstanceEventEmitter();
  const policy: AutoscaleConfig = { min: 0, max: 2, targetInFlight: 1, cooldownTimeMs: 1 };
  const scale = new ScaleEvents(events, () => ({ service: 'web', policy, awake: 1 }), () => undefined);
  for (let i = 0; i < 60; i++) events.emit('wake', wake({ id: `web-${i}`, name: `web-${i}`, durationMs: 1, mode: 'resume' }));
  const recent = scale.recent('web');
  assert.equal(recent.length, 50);
  assert.equal(recent[0]!.instance, 'web-10');
  assert.deepEqual(scale.totals('web'), { up: 60, down: 0 });
});
