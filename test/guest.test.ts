// The guest's own proof: the real kernel, init and fixture rootfs booted with
// plain QEMU (TCG). The app's exit ends the VM and its code reaches the host
// on the control port and the console; the clock can be set; failures are
// reported, never hung on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { freePort } from '../src/network/free-port.js';
import { before, test } from 'node:test';
import type { GuestMessage } from '../src/guest/control.js';
import { buildInitrd } from '../src/guest/init.js';
import { requireKernel } from '../src/guest/kernel.js';
import { buildFixtureRootfs } from '../src/guest/testing/fixture-rootfs.js';
import { bootPlain, type PlainVm } from '../src/guest/plain-qemu.js';

const guest = { argv: ['exit-code', '3'], env: ['GREETING=hi there'], cwd: '/tmp', uid: 65534, gid: 65534, hostname: 'guest-one' };

before(async () => {
  requireKernel();
  await buildInitrd();
});

/** Collects every control message from the moment of connection. */
function record(vm: PlainVm): GuestMessage[] {
  const seen: GuestMessage[] = [];
  vm.control.on('message', (m) => seen.push(m));
  return seen;
}

test('an app that exits ends its VM and reports its exit code on the control port and the console', async (t) => {
  const vm = await bootPlain({ rootfs: await buildFixtureRootfs({ kind: 'exit-code' }), guest });
  t.after(() => vm.dispose());
  const seen = record(vm);
  assert.deepEqual(await vm.control.waitFor('exit', { timeoutMs: 60_000 }), { type: 'exit', code: 3 });
  assert.equal(await vm.exited, 0, 'QEMU exits by itself once the guest powers off');
  assert.deepEqual(
    seen.map((m) => m.type),
    ['hello', 'started', 'exit'],
  );
  const console = await fsp.readFile(vm.consoleLog, 'utf8');
  // The app ran with the configured argv (found through PATH), user, directory, host name and env.
  assert.match(console, /exit-code: argv exit-code 3\r?\n/);
  assert.match(console, /exit-code: uid 65534 gid 65534 groups 1 cwd \/tmp hostname guest-one\r?\n/);
  assert.match(console, /exit-code: env GREETING=hi there\r?\n/);
  assert.match(console, /exit-code: env PATH=\/usr\/local\/sbin:/);
  assert.match(console, /exit-code: exiting with 3\r?\n/);
  assert.match(console, /flick-init: app exited with code 3\r?\n/);
});

test('a program missing from the rootfs is reported as an error with exit code 127', async (t) => {
  const vm = await bootPlain({ rootfs: await buildFixtureRootfs({ kind: 'exit-code' }), guest: { ...guest, argv: ['no-such-program'] } });
  t.after(() => vm.dispose());
  const seen = record(vm);
  assert.deepEqual(await vm.control.waitFor('exit', { timeoutMs: 60_000 }), { type: 'exit', code: 127 });
  assert.equal(await vm.exited, 0);
  const error = seen.find((m) => m.type === 'error');
  assert.ok(error && error.type === 'error' && /no-such-program: not found/.test(error.text), JSON.stringify(seen));
  assert.match(await fsp.readFile(vm.consoleLog, 'utf8'), /flick-init: exec no-such-program: not found in PATH/);
});

test('trace mode reports the files the app opens, from a squashfs rootfs', async (t) => {
  const vm = await bootPlain({ rootfs: await buildFixtureRootfs({ kind: 'exit-code', format: 'squashfs' }), guest: { ...guest, trace: true } });
  t.after(() => vm.dispose());
  const seen = record(vm);
  assert.deepEqual(await vm.control.waitFor('exit', { timeoutMs: 60_000 }), { type: 'exit', code: 3 });
  await vm.exited;
  const opened = seen.flatMap((m) => (m.type === 'open' ? [m.path] : []));
  assert.ok(opened.includes('/bin/exit-code'), `opened: ${opened.join(', ')}`);
  assert.equal(new Set(opened).size, opened.length, 'each path is reported once');
});

test('the host sets the guest clock, and poweroff stops the app and ends the VM', async (t) => {
  const port = await freePort();
  // User-mode networking only forwards a loopback port into the guest; nothing leaves the host.
  const vm = await bootPlain({
    rootfs: await buildFixtureRootfs({ kind: 'hello-server' }),
    guest: { ...guest, argv: ['hello-server', '8080'], uid: 0, gid: 0 },
    qemuArgs: ['-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:8080`, '-device', 'virtio-net-device,netdev=n0'],
    kernelArgs: ['ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off'],
  });
  t.after(() => vm.dispose());
  await vm.control.waitFor('started', { timeoutMs: 60_000 });
  await vm.control.setClock({ seconds: 1_000_000_000n, nanos: 0 });
  let body = '';
  for (let i = 0; i < 100 && !body.includes('requests'); i++) {
    body = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text()).catch(() => '');
    if (!body) await new Promise((r) => setTimeout(r, 100));
  }
  const guestTime = Number(/time (\d+)\./.exec(body)?.[1]);
  assert.ok(guestTime >= 1_000_000_000 && guestTime < 1_000_000_000 + 60, `guest time after setting it: ${body}`);
  await vm.control.syncClock();
  body = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  assert.ok(Math.abs(Number(/time (\d+\.\d+)/.exec(body)?.[1]) - Date.now() / 1000) < 5, `guest time after sync: ${body}`);
  assert.match(body, /requests 2\nhostname guest-one\n/);
  await vm.control.poweroff();
  assert.deepEqual(await vm.control.waitFor('exit', { timeoutMs: 30_000 }), { type: 'exit', code: 128 + 15 });
  assert.equal(await vm.exited, 0);
});

test('poweroff kills an app that ignores SIGTERM after the grace period', async (t) => {
  const vm = await bootPlain({
    rootfs: await buildFixtureRootfs({ kind: 'hello-server' }),
    guest: { ...guest, argv: ['hello-server', '8080'], env: ['IGNORE_SIGTERM=1'] },
  });
  t.after(() => vm.dispose());
  await vm.control.waitFor('started', { timeoutMs: 60_000 });
  // 'started' means exec'd, not that the app has set SIGTERM aside yet; it says so on its console when it listens.
  for (let i = 0; i < 600 && !fs.readFileSync(vm.consoleLog, 'utf8').includes('listening on port'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await vm.control.poweroff();
  assert.deepEqual(await vm.control.waitFor('exit', { timeoutMs: 30_000 }), { type: 'exit', code: 128 + 9 });
  assert.equal(await vm.exited, 0);
});
