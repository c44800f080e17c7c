// Which templates the primed pool fills, and how many VMs each: busiest first, by cold wakes in the window.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Snapshot, VmConfig } from '../../vmm/driver.js';
import { ColdWakeDemand, nextToPrime } from './demand.js';

const snap = (dir: string, createdAt = 't0'): Snapshot => ({ dir, stateFile: `${dir}/state`, memoryFile: `${dir}/mem`, memoryMb: 128, vcpus: 1, createdAt });
const config = { id: 'x', runDir: '/r' } as VmConfig;

test('wants: 1 + floor(log2 wakes) VMs per template, capped, busiest first, ties to the latest', () => {
  const d = new ColdWakeDemand({ windowMs: 1000, maxPerTemplate: 3 });
  const table: Array<[string, number]> = [['a', 1], ['b', 2], ['c', 5], ['d', 100]];
  let t = 0;
  for (const [dir, n] of table) for (let i = 0; i < n; i++) d.note({ template: snap(dir), config }, t++ / 1000);
  d.note({ template: snap('e'), config }, 0.5);
  const w = d.wants(1);
  assert.deepEqual(
    w.map((x) => [x.templateDir, x.count, x.wakes]),
    [
      ['d', 3, 100],
      ['c', 3, 5],
      ['b', 2, 2],
      ['e', 1, 1], // woken after a
      ['a', 1, 1],
    ],
  );
});

test('wakes older than the window stop counting; a template with none left is dropped', () => {
  const d = new ColdWakeDemand({ windowMs: 100, maxPerTemplate: 4 });
  for (const at of [0, 10, 20, 150]) d.note({ template: snap('a'), config }, at);
  assert.equal(d.wants(160)[0]!.wakes, 1, 'only the wake at 150 is inside (60, 160]');
  assert.deepEqual(d.wants(1000), []);
  assert.equal(d.spec('a'), undefined);
});

test('the newest spec wins (a replaced template), forget drops it', () => {
  const d = new ColdWakeDemand();
  d.note({ template: snap('a', 'old'), config }, 0);
  d.note({ template: snap('a', 'new'), config }, 1);
  assert.equal(d.spec('a')!.template.createdAt, 'new');
  d.forget('a');
  assert.deepEqual(d.wants(2), []);
});

test('nextToPrime fills every template\'s first VM before anyone\'s second, then by priority', () => {
  const wants = [
    { templateDir: 'busy', count: 3 },
    { templateDir: 'mid', count: 2 },
    { templateDir: 'quiet', count: 1 },
  ].map((w) => ({ ...w, spec: { template: snap(w.templateDir), config }, wakes: 0, lastAt: 0 }));
  const cases: Array<[Record<string, number>, string | undefined]> = [
    [{}, 'busy'],
    [{ busy: 1 }, 'mid'],
    [{ busy: 1, mid: 1 }, 'quiet'],
    [{ busy: 1, mid: 1, quiet: 1 }, 'busy'],
    [{ busy: 2, mid: 1, quiet: 1 }, 'mid'],
    [{ busy: 2, mid: 2, quiet: 1 }, 'busy'],
    [{ busy: 3, mid: 2, quiet: 1 }, undefined],
  ];
  for (const [have, next] of cases) assert.equal(nextToPrime(wants, (dir) => have[dir] ?? 0)?.templateDir, next, JSON.stringify(have));
});
