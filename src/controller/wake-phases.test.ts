import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WAKE_PHASES, controllerPhases, fullPhases, type WakeMarks } from './wake-phases.js';

const marks: WakeMarks = { enter: 100, vmmCall: 100.5, run: { runningAt: 102, clockAt: 103.25 }, done: 103.75 };

test('the controller side: to the VMM call, to running, to the clock answer', () => {
  assert.deepEqual(controllerPhases(marks), { controller: 0.5, vmm: 1.5, clock: 1.25 });
  assert.equal(controllerPhases({ ...marks, run: { runningAt: 102 } }).clock, 0, 'no clock set: a zero phase');
  // The clock's answer can be read before cont's reply (both are queued at once): never negative.
  assert.equal(controllerPhases({ ...marks, run: { runningAt: 102, clockAt: 101 } }).clock, 0);
});

const table: { name: string; waitMs: number; total: number; controller: number }[] = [
  // The proxy waited 0.25 ms more than the controller's span: its call and promise hops, the controller's phase.
  { name: 'proxy wait encloses the span', waitMs: 4, total: 4 + 0.5 + 2 + 0.25, controller: 0.75 },
  // A joined wake can be shorter for the proxy than the span (another caller entered first).
  { name: 'proxy wait shorter than the span', waitMs: 1, total: 3.75 + 0.5 + 2 + 0.25, controller: 0.5 },
];
for (const c of table) {
  test(`every phase once the proxy reports: ${c.name}`, () => {
    const p = fullPhases(marks, { waitMs: c.waitMs, forwardMs: 0.5, upstreamMs: 2, clientMs: 0.25 });
    assert.deepEqual(Object.keys(p), [...WAKE_PHASES, 'total'], 'every phase, in order');
    assert.equal(p.controller, c.controller);
    assert.equal(p.forward, 0.5 + 0.5, "the controller's hand-back after the clock plus the proxy's forward");
    assert.equal(p.upstream, 2);
    assert.equal(p.client, 0.25);
    assert.equal(p.total, c.total);
    const sum = WAKE_PHASES.reduce((a, k) => a + p[k]!, 0);
    assert.ok(Math.abs(sum - p.total!) < 1e-9, `the phases tile the wake: ${sum} vs ${p.total}`);
  });
}
