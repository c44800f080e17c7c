// `flick host status`'s primed pool line, from /v1/metrics `primed_pool`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { primedPoolText } from './host.js';

test('the primed pool as flick host status prints it', () => {
  const MiB = 1024 * 1024;
  const cases: Array<[Parameters<typeof primedPoolText>[0], string | null]> = [
    [null, null],
    [{ budget_bytes: 0, used_bytes: 0, vms: 0, templates: 0, hits: 0, misses: 0 }, 'off (--primed-pool-mb 0)'],
    [{ budget_bytes: 512 * MiB, used_bytes: 14.5 * MiB, vms: 1, templates: 1, hits: 1, misses: 1 }, '1 VM of 1 template, 14.5 of 512.0 MiB; 1 hit, 1 miss'],
    [{ budget_bytes: 512 * MiB, used_bytes: 43 * MiB, vms: 3, templates: 2, hits: 12, misses: 3 }, '3 VMs of 2 templates, 43.0 of 512.0 MiB; 12 hits, 3 misses'],
  ];
  for (const [view, text] of cases) assert.equal(primedPoolText(view), text);
});
