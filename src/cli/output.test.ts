import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientUrl } from './commands/host.js';
import { renderFields, renderTable, lastWakeText, stateText, wakesText } from './output.js';

test('tables align columns and do not pad the last one', () => {
  const rows = [{ n: 'web', s: 'running' }, { n: 'a-longer-name', s: 'standby' }];
  assert.equal(
    renderTable(rows, [{ header: 'NAME', value: (r) => r.n }, { header: 'STATE', value: (r) => r.s }]),
    'NAME           STATE\nweb            running\na-longer-name  standby\n',
  );
  assert.equal(renderTable([], [{ header: 'NAME', value: () => '' }]), 'NAME\n');
  assert.equal(renderFields([['state', 'running'], ['pid', null], ['tcp', { a: 1 }]]), 'state: running\npid:   -\ntcp:   {"a":1}\n');
});

test('a wildcard listen address becomes loopback in the URL the CLI uses', () => {
  assert.equal(clientUrl('127.0.0.1:7450'), 'http://127.0.0.1:7450');
  assert.equal(clientUrl('0.0.0.0:7450'), 'http://127.0.0.1:7450');
  assert.equal(clientUrl('[::]:7450'), 'http://[::1]:7450');
});

test('standby shows its tier, wakes their split by tier', () => {
  assert.equal(stateText({ state: 'standby', standby_tier: 'hot' }), 'standby (hot)');
  assert.equal(stateText({ state: 'running', standby_tier: null }), 'running');
  assert.equal(wakesText({ wakes: 5, wakes_hot: 4, wakes_cold: 1 }), '5 (hot 4, cold 1)');
  assert.equal(wakesText({ wakes: 0, wakes_hot: 0, wakes_cold: 0 }), '0');
  assert.equal(wakesText({ wakes: 2 }), '2', 'an older flickd without tiers');
});

test('the last wake: its phases in order, the total once the proxy reported', () => {
  const at = '2026-12-01T18:00:00.000Z';
  assert.equal(
    lastWakeText({ tier: 'hot', duration_ms: 2.5, at, phases_ms: { controller: 0.3, vmm: 1, clock: 0.5, forward: 0.4, upstream: 12.25, client: 0.1, total: 14.55 } }),
    `hot at ${at}: 2.50 ms in flickd, 14.6 ms to the first byte (controller 0.30 ms · vmm 1.00 ms · clock 0.50 ms · forward 0.40 ms · upstream 12.3 ms · client 0.10 ms)`,
  );
  assert.equal(lastWakeText({ tier: 'cold', duration_ms: 150, at, phases_ms: {} }), `cold at ${at}: 150.0 ms in flickd`);
  assert.equal(lastWakeText(null), undefined, 'no wake yet: no line');
});
