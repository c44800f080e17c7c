import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlickError } from '../errors.js';
import { statusFor } from './envelope.js';

test('HTTP statuses come from the code (a typed map), else from the kind; never from the message', () => {
  const table: Array<[string, unknown, number]> = [
    ['bad JSON', new FlickError('INVALID_JSON', 'x', { kind: 'user' }), 400],
    ['no such instance', new FlickError('INSTANCE_NOT_FOUND', 'x', { kind: 'user' }), 404],
    ['wait timed out', new FlickError('WAIT_TIMEOUT', 'x', { kind: 'user' }), 408],
    ['a name taken', new FlickError('NAME_TAKEN', 'x', { kind: 'user' }), 409],
    ['a record that moved on', new FlickError('STALE_REVISION', 'x'), 409],
    ['waited for running, it failed', new FlickError('START_FAILED', 'x'), 409],
    ['the quota', new FlickError('QUOTA_EXCEEDED', 'x', { kind: 'user' }), 403],
    ['no address left', new FlickError('NO_ADDRESS', 'x', { kind: 'user' }), 503],
    ['the disk is full', new FlickError('DISK_FULL', 'x', { kind: 'user' }), 507],
    ['a record removed meanwhile is the host\'s problem, not a 404', new FlickError('RECORD_NOT_FOUND', 'x'), 500],
    ['a template copy that failed', new FlickError('SNAPSHOT_FAILED', 'x'), 500],
    ['a user error without a status of its own', new FlickError('DOCKERFILE_INVALID', 'NOT_FOUND', { kind: 'user' }), 400],
    ['a system error', new FlickError('BOOT_FAILED', 'x'), 500],
    ['not a FlickError', new Error('INSTANCE_NOT_FOUND'), 500],
  ];
  for (const [what, err, want] of table) assert.equal(statusFor(err), want, what);
});
