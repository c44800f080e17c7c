// HEALTHCHECK and STOPSIGNAL as Docker reads them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { healthcheckLabel, healthcheckOf, parseDuration, parseHealthcheck, signalNumber } from './healthcheck.js';

test('HEALTHCHECK options, exec and shell forms, NONE, and bad input', () => {
  assert.deepEqual(parseHealthcheck('--interval=5s --timeout=1m30s --retries=2 CMD ["test", "-f", "/tmp/ready"]'), {
    argv: ['test', '-f', '/tmp/ready'], intervalMs: 5000, timeoutMs: 90_000, startPeriodMs: 0, retries: 2,
  });
  assert.deepEqual(parseHealthcheck('CMD curl -f http://localhost/ || exit 1'), {
    argv: ['/bin/sh', '-c', 'curl -f http://localhost/ || exit 1'], intervalMs: 30_000, timeoutMs: 30_000, startPeriodMs: 0, retries: 3,
  });
  assert.equal(parseHealthcheck('NONE'), null);
  assert.match(parseHealthcheck('--interval=soon CMD true') as string, /expected a duration/);
  assert.match(parseHealthcheck('--every=5s CMD true') as string, /unknown option --every/);
  assert.match(parseHealthcheck('true') as string, /expected HEALTHCHECK \[OPTIONS\] CMD/);
  assert.equal(parseDuration('500ms'), 500);
  const hc = parseHealthcheck('CMD ["true"]');
  assert.ok(hc && typeof hc === 'object');
  assert.deepEqual(healthcheckOf({ 'dev.flick.healthcheck': healthcheckLabel(hc) }), hc);
  assert.equal(healthcheckOf({ 'dev.flick.healthcheck': '{"argv":[]}' }), undefined);
});

test('STOPSIGNAL by name, short name or number', () => {
  assert.equal(signalNumber('SIGINT'), 2);
  assert.equal(signalNumber('quit'), 3);
  assert.equal(signalNumber('9'), 9);
  assert.equal(signalNumber('SIGNOPE'), undefined);
  assert.equal(signalNumber(undefined), undefined);
});
