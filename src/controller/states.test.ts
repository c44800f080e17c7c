import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, shouldRestart } from './restart.js';
import { INSTANCE_STATES, assertTransition, canTransition } from './states.js';

test('the transition table: the moves the lifecycle makes are legal, nonsense is ILLEGAL_TRANSITION', () => {
  const legal: Array<[string, string]> = [
    ['stopped', 'starting'], ['starting', 'running'], ['running', 'draining'], ['draining', 'standby'],
    ['standby', 'starting'], ['standby', 'running'], ['draining', 'running'], ['running', 'stopping'], ['stopping', 'stopped'], ['failed', 'starting'],
  ];
  for (const [from, to] of legal) assert.ok(canTransition(from as never, to as never), `${from} → ${to}`);
  for (const s of INSTANCE_STATES) assert.ok(canTransition(s, 'failed') || s === 'failed', `${s} → failed`);
  assert.throws(() => assertTransition('web', 'stopped', 'stopping', 'stop'), (err: any) => err.code === 'ILLEGAL_TRANSITION' && err.kind === 'user' && err.message === 'cannot stop instance "web": it is stopped');
  assert.throws(() => assertTransition('web', 'stopped', 'running'), (err: any) => err.code === 'ILLEGAL_TRANSITION');
  assert.throws(() => assertTransition('web', 'running', 'starting', 'start'), (err: any) => /it is running/.test(err.message));
});

test('restart policy and backoff', () => {
  assert.equal(shouldRestart('never', 'failed'), false);
  assert.equal(shouldRestart('on-failure', 'failed'), true);
  assert.equal(shouldRestart('on-failure', 'stopped'), false);
  assert.equal(shouldRestart('always', 'stopped'), true);
  const b = { initialMs: 500, maxMs: 30_000 };
  assert.deepEqual([0, 1, 2, 3, 10, 100].map((n) => backoffDelay(b, n)), [500, 1000, 2000, 4000, 30_000, 30_000]);
});
