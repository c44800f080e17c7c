import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceGate, type UpstreamPool, type GateConfig, type Refusal, type Waiter } from './gate.js';
import { FakeWaker } from './testing.js';

const config: GateConfig = { maxParked: 3, wakeTimeoutMs: 60_000, retryAfterSeconds: 2, agent: { keepAlive: true } };

class Recorder implements Waiter {
  forwarded: UpstreamPool | undefined;
  refused: Refusal | undefined;
  constructor(readonly log: string[], readonly name: string) {}
  forward(target: UpstreamPool): void {
    this.forwarded = target;
    this.log.push(`forward ${this.name}`);
  }
  refuse(refusal: Refusal): void {
    this.refused = refusal;
    this.log.push(`refuse ${this.name} ${refusal.status}`);
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('one wake serves a burst, in arrival order, and the awake instance is then reached without parking', async (t) => {
  const waker = new FakeWaker(false);
  const gate = new InstanceGate('i-1', waker, config);
  t.after(() => gate.close('test over'));
  const log: string[] = [];
  const waiters = ['a', 'b', 'c'].map((n) => new Recorder(log, n));
  for (const w of waiters) assert.ok(gate.park(w));
  assert.equal(gate.current(), undefined);
  assert.equal(waker.wakes.get('i-1'), 1);
  assert.equal(gate.stats.parkedNow, 3);
  waker.release();
  await tick();
  assert.deepEqual(log, ['forward a', 'forward b', 'forward c']);
  assert.equal(gate.current()?.host, '127.0.0.1');
  assert.equal(gate.stats.parkedNow, 0);
  assert.equal(gate.stats.wakeWait.count, 3);
  assert.equal(gate.park(new Recorder(log, 'd')), undefined);
  assert.equal(log.at(-1), 'forward d');
  assert.equal(waker.wakes.get('i-1'), 1);
});

test('a full queue refuses with 503 and Retry-After; a waiter that left frees its place and is never forwarded', async (t) => {
  const waker = new FakeWaker(false);
  const gate = new InstanceGate('i-1', waker, config);
  t.after(() => gate.close('test over'));
  const log: string[] = [];
  const tickets = ['a', 'b', 'c'].map((n) => gate.park(new Recorder(log, n)));
  const overflow = new Recorder(log, 'd');
  assert.equal(gate.park(overflow), undefined);
  assert.equal(overflow.refused?.status, 503);
  assert.equal(overflow.refused?.retryAfterSeconds, 2);
  assert.equal(gate.stats.overflows, 1);
  gate.leave(tickets[1]!);
  gate.leave(tickets[1]!);
  assert.equal(gate.stats.parkedNow, 2);
  assert.ok(gate.park(new Recorder(log, 'e')));
  waker.release();
  await tick();
  assert.deepEqual(log, ['refuse d 503', 'forward a', 'forward c', 'forward e']);
});

test('a wake that outlives the timeout answers 504, aborts the wake, and the next request wakes again', async (t) => {
  const waker = new FakeWaker(false);
  const gate = new InstanceGate('i-1', waker, { ...config, wakeTimeoutMs: 20 });
  t.after(() => gate.close('test over'));
  const log: string[] = [];
  gate.park(new Recorder(log, 'a'));
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(log, ['refuse a 504']);
  assert.equal(waker.signals[0]?.aborted, true);
  assert.equal(gate.stats.wakeTimeouts, 1);
  waker.release(); // the late answer of the abandoned wake is ignored
  await tick();
  assert.equal(gate.current(), undefined);
  gate.park(new Recorder(log, 'b'));
  assert.equal(waker.wakes.get('i-1'), 2);
});

test('a failed wake answers 502 naming the cause', async (t) => {
  const waker = new FakeWaker();
  waker.ensureAwake = () => Promise.reject(new Error('snapshot missing'));
  const gate = new InstanceGate('i-1', waker, config);
  t.after(() => gate.close('test over'));
  const w = new Recorder([], 'a');
  gate.park(w);
  await tick();
  assert.equal(w.refused?.status, 502);
  assert.match(w.refused?.message ?? '', /i-1 could not be woken: snapshot missing/);
  assert.equal(gate.stats.wakeFailures, 1);
});

test('standby drops the pool and tells connection owners; the next request wakes again', async (t) => {
  const waker = new FakeWaker();
  const gate = new InstanceGate('i-1', waker, config);
  t.after(() => gate.close('test over'));
  const drops: string[] = [];
  gate.onDrop((reason) => drops.push(reason));
  gate.park(new Recorder([], 'a'));
  await tick();
  const target = gate.current();
  assert.ok(target);
  waker.standby('i-1');
  assert.equal(gate.current(), undefined);
  assert.deepEqual(drops, ['standby']);
  gate.park(new Recorder([], 'b'));
  assert.equal(waker.wakes.get('i-1'), 2);
});

test('close refuses parked waiters with 503 and is safe twice', () => {
  const waker = new FakeWaker(false);
  const gate = new InstanceGate('i-1', waker, config);
  const w = new Recorder([], 'a');
  gate.park(w);
  gate.close('removed');
  gate.close('removed');
  assert.equal(w.refused?.status, 503);
  assert.equal(waker.signals[0]?.aborted, true);
  const late = new Recorder([], 'b');
  gate.park(late);
  assert.equal(late.refused?.status, 503);
});
