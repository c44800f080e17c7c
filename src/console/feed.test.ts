// The console feed's frames: what a watching browser receives for each controller event.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { test } from 'node:test';
import { InstanceEventEmitter } from '../controller/events.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { ConsoleFeed, type FeedController } from './feed.js';

function harness() {
  const events = new InstanceEventEmitter();
  const health: Record<string, { status: string } | null> = { 'i-1': null };
  const rec = { id: 'i-1', name: 'web', status: { pid: null } } as unknown as InstanceRecord;
  const controller: FeedController = {
    on: (type, listener) => events.on(type, listener),
    list: () => [rec],
    get: (id) => {
      if (id !== 'i-1') throw new Error('no such instance');
      return rec;
    },
    hotStandby: () => ({ budgetBytes: 1, usedBytes: 0, instances: [] }),
  };
  const feed = new ConsoleFeed({ controller, view: (r) => ({ id: r.id, name: r.name, health: health[r.id] }), memoryEveryMs: 60_000 });
  const written: string[] = [];
  const req = { socket: { setNoDelay: () => undefined } } as unknown as IncomingMessage;
  const res = { writeHead: () => res, write: (t: string) => written.push(t), once: () => res, end: () => undefined } as unknown as ServerResponse;
  feed.attach(req, res);
  const frames = () =>
    written
      .filter((t) => t.startsWith('event: '))
      .map((t) => {
        const [head, data] = t.split('\n');
        return { event: head!.slice('event: '.length), data: JSON.parse(data!.slice('data: '.length)) as Record<string, any> };
      });
  return { events, health, feed, frames };
}

test('a HEALTHCHECK verdict reaches the console as a health frame carrying the instance view', () => {
  const { events, health, feed, frames } = harness();
  try {
    health['i-1'] = { status: 'unhealthy' };
    events.emit('health', { id: 'i-1', name: 'web', status: 'unhealthy', at: '2026-01-01T00:00:00.000Z', action: 'none' });
    const last = frames().at(-1)!;
    assert.equal(last.event, 'health');
    assert.equal(last.data.at, '2026-01-01T00:00:00.000Z');
    assert.deepEqual(last.data.instance, { id: 'i-1', name: 'web', health: { status: 'unhealthy' } });
    // An instance removed in the same turn sends nothing (its removal follows).
    const n = frames().length;
    events.emit('health', { id: 'i-gone', name: 'old', status: 'healthy', at: '2026-01-01T00:00:01.000Z' });
    assert.equal(frames().length, n);
  } finally {
    feed.dispose();
  }
});

test('the first frame is the snapshot; a state change and a wake follow as their own frames', () => {
  const { events, feed, frames } = harness();
  try {
    assert.equal(frames()[0]!.event, 'snapshot');
    assert.deepEqual(frames()[0]!.data.instances.map((i: any) => i.name), ['web']);
    events.emit('state', { id: 'i-1', name: 'web', from: 'standby', to: 'running', at: '2026-01-01T00:00:02.000Z' });
    events.emit('wake', { id: 'i-1', name: 'web', durationMs: 12.5, mode: 'resume', at: '2026-01-01T00:00:02.000Z', phases: {} });
    const after = frames().filter((f) => f.event !== 'memory' && f.event !== 'snapshot');
    assert.deepEqual(after.map((f) => f.event), ['instance', 'wake']);
    assert.equal(after[1]!.data.tier, 'hot');
    assert.equal(feed.recentWakes('i-1').length, 1);
  } finally {
    feed.dispose();
  }
});
