// linkDrives and the run folder's cleanup over real files; the switch itself runs against a real
// QEMU in test/postgres.test.ts (a live fork of a running database).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { linkDrives } from './disk-switch.js';
import { cleanRunDir, runDirFiles } from './run-dir.js';

test('each volume is opened through a hard link in the run folder, and the links go with the VM', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-disk-switch-'));
  try {
    const run = path.join(tmp, 'run');
    fs.mkdirSync(run);
    const files = ['a', 'b'].map((n) => path.join(tmp, `${n}.qcow2`));
    for (const f of files) fs.writeFileSync(f, f);
    const drives = await linkDrives(run, files.map((file, i) => ({ file, format: 'qcow2' as const, readOnly: i === 1, serial: `s${i}` })));
    assert.deepEqual(drives.map((d) => path.basename(d.file)), ['vol0.qcow2', 'vol1.qcow2']);
    assert.deepEqual(drives.map((d) => [d.readOnly, d.serial]), [[false, 's0'], [true, 's1']]);
    for (const [i, d] of drives.entries()) assert.equal(fs.statSync(d.file).ino, fs.statSync(files[i]!).ino, 'the same file, not a copy');
    // Linked again at the next start: the stale link is replaced.
    fs.writeFileSync(files[0]!, 'new');
    fs.renameSync(files[0]!, `${files[0]}.old`);
    fs.writeFileSync(files[0]!, 'newer');
    await linkDrives(run, [{ file: files[0]!, format: 'qcow2', readOnly: false, serial: 's0' }]);
    assert.equal(fs.readFileSync(path.join(run, 'vol0.qcow2'), 'utf8'), 'newer');
    fs.writeFileSync(path.join(run, 'vol0-0a1b2c3d.qcow2'), 'an overlay switched to');
    fs.writeFileSync(path.join(run, 'qemu.log'), 'log');
    await cleanRunDir(runDirFiles(run));
    assert.deepEqual(fs.readdirSync(run), ['qemu.log']);
    assert.equal(fs.readFileSync(files[0]!, 'utf8'), 'newer', 'the volume itself stays');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
