import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_KEEP_RESIDENT, formatKeepResident, keepResidentBytes } from './hot-standby.js';

test('what a paged-out instance keeps resident: a share of its guest RAM, or a size', () => {
  assert.equal(keepResidentBytes(DEFAULT_KEEP_RESIDENT, 128), 32 * 2 ** 20, 'a quarter of 128 MiB');
  assert.equal(keepResidentBytes(DEFAULT_KEEP_RESIDENT, 256), 64 * 2 ** 20);
  assert.equal(keepResidentBytes({ bytes: 5000 }, 256), 5000, 'a size is the same for every instance');
  assert.equal(formatKeepResident(DEFAULT_KEEP_RESIDENT), '25%');
  assert.equal(formatKeepResident({ bytes: 0 }), '0');
});
