import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHostName, memoryAvailableBytes } from './membership.js';

test('host names are DNS labels', () => {
  for (const ok of ['h1', 'web-2', 'a']) assert.equal(checkHostName(ok), ok);
  for (const bad of ['', 'H1', '-a', 'a-', 'a.b', 'a_b', 'x'.repeat(64)]) assert.throws(() => checkHostName(bad), /is not a lower-case DNS label/, bad);
});

test('free memory is MemAvailable', () => {
  assert.equal(memoryAvailableBytes(() => 'MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   50 kB\n'), 50 * 1024);
});
