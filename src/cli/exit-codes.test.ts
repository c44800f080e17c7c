import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlickError } from '../errors.js';
import { CliError } from './cli-error.js';
import { EXIT_DATAERR, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NOPERM, EXIT_NOT_FOUND, EXIT_SOFTWARE, EXIT_UNAVAILABLE, EXIT_USAGE, exitCodeFor } from './exit-codes.js';

test('exit codes come from the code (a typed map), else from the kind; never from the message', () => {
  const table: Array<[string, unknown, number]> = [
    ['an instance that does not exist', new FlickError('INSTANCE_NOT_FOUND', 'x', { kind: 'user' }), EXIT_NOT_FOUND],
    ['a registry name flickd does not know', new FlickError('NAME_UNKNOWN', 'x', { kind: 'user' }), EXIT_NOT_FOUND],
    ['a local image missing', new CliError('IMAGE_NOT_FOUND', 'x', { kind: 'user' }), EXIT_NOT_FOUND],
    ['a refused token', new CliError('UNAUTHORIZED', 'x', { kind: 'user' }), EXIT_NOPERM],
    ['a denied push', new FlickError('DENIED', 'x', { kind: 'user' }), EXIT_NOPERM],
    ['flickd unreachable', new CliError('UNAVAILABLE', 'x'), EXIT_UNAVAILABLE],
    ['bad usage', new CliError('USAGE', 'x', { kind: 'user' }), EXIT_USAGE],
    ['Ctrl-C during a build', new CliError('INTERRUPTED', 'build interrupted', { kind: 'user' }), EXIT_INTERRUPTED],
    ['stop of a stopped instance', new FlickError('ILLEGAL_TRANSITION', 'x', { kind: 'user' }), EXIT_FAILURE],
    ['a name taken', new FlickError('NAME_TAKEN', 'x', { kind: 'user' }), EXIT_FAILURE],
    ['waited for running, it failed', new FlickError('START_FAILED', 'x'), EXIT_FAILURE],
    ['a record that moved on', new FlickError('STALE_REVISION', 'x'), EXIT_FAILURE],
    ['a Dockerfile error (by kind: user)', new FlickError('DOCKERFILE_INVALID', 'not found anywhere in this message', { kind: 'user' }), EXIT_DATAERR],
    ['a QEMU failure (by kind: system)', new FlickError('BOOT_FAILED', 'NOT_FOUND'), EXIT_SOFTWARE],
    ['a code from a newer flickd, user kind', new FlickError('SOMETHING_NEW', 'x', { kind: 'user' }), EXIT_DATAERR],
    ['not a FlickError', new Error('INSTANCE_NOT_FOUND'), EXIT_SOFTWARE],
  ];
  for (const [what, err, want] of table) assert.equal(exitCodeFor(err), want, what);
});
