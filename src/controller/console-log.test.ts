import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ConsoleLog } from './console-log.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-console-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function readAll(log: ConsoleLog): Promise<string> {
  let s = '';
  for await (const b of log.read()) s += b.toString();
  return s;
}

test('rotation keeps the newest files and loses no line; archive starts a fresh file per boot', async () => {
  const dir = path.join(tmp, 'rotate');
  const run = path.join(dir, 'run');
  fs.mkdirSync(run, { recursive: true });
  const log = new ConsoleLog(dir, run, { maxBytes: 10, keep: 2 });
  fs.writeFileSync(log.live, 'boot one\n');
  await log.rotateIfLarge(); // 9 bytes: under the limit
  assert.equal(await readAll(log), 'boot one\n');
  fs.appendFileSync(log.live, 'more output\n');
  await log.rotateIfLarge();
  assert.equal(fs.statSync(log.live).size, 0, 'the live file is truncated in place (QEMU keeps its descriptor)');
  fs.appendFileSync(log.live, 'after\n');
  assert.equal(await readAll(log), 'boot one\nmore output\nafter\n');
  await log.archive();
  fs.writeFileSync(log.live, 'boot two\n');
  assert.equal(await readAll(log), 'boot one\nmore output\nafter\nboot two\n');
  await log.archive();
  fs.writeFileSync(log.live, 'boot three\n');
  assert.equal(await readAll(log), 'after\nboot two\nboot three\n', 'keep=2: the oldest file went');
});

test('follow yields new output, survives a truncation, and ends when aborted', async () => {
  const dir = path.join(tmp, 'follow');
  const run = path.join(dir, 'run');
  fs.mkdirSync(run, { recursive: true });
  const log = new ConsoleLog(dir, run, { pollMs: 10 });
  fs.writeFileSync(log.live, 'a\n');
  const ac = new AbortController();
  const seen: string[] = [];
  const reading = (async () => {
    for await (const b of log.read({ follow: true, signal: ac.signal })) {
      seen.push(b.toString());
      if (seen.length === 1) fs.appendFileSync(log.live, 'b\n');
      if (seen.length === 2) fs.writeFileSync(log.live, 'c\n'); // truncated and rewritten
      if (seen.length === 3) ac.abort();
    }
  })();
  await reading;
  assert.deepEqual(seen, ['a\n', 'b\n', 'c\n']);
});
