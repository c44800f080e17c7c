// The ICU trim on a copy of this host's own node binary (real icupkg, real node):
// Intl keeps working for the kept locale, falls back to English for the others,
// and the locale-independent data (time zones, converters, segmentation) stays.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { localeOfItem, localesFromEnv, trimIcu, unusedService } from './icu-trim.js';

test('locale bundles are told apart from locale-independent ICU data', () => {
  assert.equal(localeOfItem('icudt78l/de.res'), 'de');
  assert.equal(localeOfItem('icudt78l/coll/de_AT.res'), 'de');
  assert.equal(localeOfItem('icudt78l/coll/de_.res'), 'de');
  assert.equal(localeOfItem('icudt78l/zone/en_GB.res'), 'en');
  for (const kept of ['icudt78l/root.res', 'icudt78l/pool.res', 'icudt78l/zoneinfo64.res', 'icudt78l/brkitr/cjdict.dict', 'icudt78l/nfc.nrm', 'icudt78l/plurals.res']) {
    assert.equal(localeOfItem(kept), undefined, kept);
  }
  assert.ok(unusedService('icudt78l/translit/root.res') && unusedService('icudt78l/rbnf/en.res') && unusedService('icudt78l/unames.icu'));
  assert.ok(!unusedService('icudt78l/uprops.icu') && !unusedService('icudt78l/coll/root.res'));
  assert.deepEqual(localesFromEnv(['PATH=/bin', 'LANG=de_DE.UTF-8', 'LANGUAGE=fr:pt_BR', 'LC_ALL=C.UTF-8']), ['de', 'fr', 'pt']);
});

test("node's built-in ICU data trimmed to English: a third of its size, Intl still works", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-icu-test-'));
  try {
    const node = path.join(dir, 'node');
    fs.copyFileSync(fs.realpathSync(process.execPath), node);
    fs.chmodSync(node, 0o755);
    const t = await trimIcu(node, ['en']);
    assert.ok(t, 'this node carries its ICU data built in');
    assert.ok(t.afterBytes < t.beforeBytes / 2, `${t.afterBytes} of ${t.beforeBytes} bytes kept`);
    const script = [
      "const d = new Date(Date.UTC(2024, 0, 15, 12));",
      "console.log(new Intl.DateTimeFormat('en-US', { dateStyle: 'full', timeZone: 'UTC' }).format(d));",
      "console.log((1234567.891).toLocaleString('en-US'), new Intl.NumberFormat('en', { style: 'currency', currency: 'EUR' }).format(3));",
      "console.log(d.toLocaleString('en-US', { timeZone: 'America/New_York' }));",
      "console.log(new Intl.DateTimeFormat('de', { dateStyle: 'full', timeZone: 'UTC' }).format(d));",
      "console.log(['b', 'a', 'C'].sort(new Intl.Collator('en').compare).join(''), new TextDecoder('shift_jis').decode(new Uint8Array([0x82, 0xa0])));",
      "console.log([...new Intl.Segmenter('en', { granularity: 'word' }).segment('hi there')].length);",
      "console.log(/\\p{Script=Greek}/u.test('α'), 'é'.normalize('NFD').length, new Intl.PluralRules('en').select(1), new Intl.RelativeTimeFormat('en').format(-1, 'day'));",
    ].join('\n');
    const out = execFileSync(node, ['-e', script], { encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(out, [
      'Monday, January 15, 2024',
      '1,234,567.891 €3.00',
      '1/15/2024, 7:00:00 AM',
      'Monday, January 15, 2024', // German falls back to English, as in node's small-icu build
      'abC あ',
      '3',
      'true 2 one 1 day ago',
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
