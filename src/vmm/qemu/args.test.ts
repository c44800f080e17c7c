import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildQemuArgs, kernelCmdline, type QemuLaunch } from './args.js';

const net = { tap: 'tap0', guestMac: '52:54:00:f1:1c:02', guestIp: '172.31.255.2', gatewayIp: '172.31.255.1', prefixLength: 30, hostReachableIp: '10.211.0.2' };
const base: QemuLaunch = {
  accel: 'tcg',
  memoryMb: 128,
  vcpus: 1,
  kernel: '/k/vmlinux',
  initrd: '/k/initrd.cpio',
  cmdline: 'console=ttyS0',
  rootfs: '/img/root.erofs',
  configDisk: '/run/vm/config.img',
  memory: { path: '/run/vm/mem', share: true },
  files: { qmpSocket: '/run/vm/qmp.sock', ctlSocket: '/run/vm/ctl.sock', consoleLog: '/run/vm/console.log', incomingSocket: '/run/vm/incoming.sock' },
  network: net,
  incoming: false,
};

/** The value following each occurrence of `flag`. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : []));
}

test('a TCG boot: microvm without ACPI, paused at start, RAM in a shared memory file', () => {
  const args = buildQemuArgs(base);
  assert.deepEqual(values(args, '-M'), ['microvm,acpi=off,x-option-roms=off,memory-backend=mem']);
  assert.match(values(args, '-accel')[0] as string, /^tcg,tb-size=\d+$/);
  for (const f of ['-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-S']) assert.ok(args.includes(f), f);
  assert.ok(values(args, '-object').includes('memory-backend-file,id=mem,size=128M,mem-path=/run/vm/mem,share=on'));
  assert.ok(!args.includes('-incoming'));
  assert.ok(!args.includes('-cpu'));
});

test('KVM adds the host CPU without arch-capabilities', () => {
  const args = buildQemuArgs({ ...base, accel: 'kvm' });
  assert.deepEqual(values(args, '-accel'), ['kvm']);
  assert.deepEqual(values(args, '-cpu'), ['host,-arch-capabilities']);
});

test('a clone restore maps the template privately and waits for the stream', () => {
  const args = buildQemuArgs({ ...base, memory: { path: '/snap/mem', share: false }, incoming: true });
  assert.ok(values(args, '-object').includes('memory-backend-file,id=mem,size=128M,mem-path=/snap/mem,share=off'));
  assert.deepEqual(values(args, '-incoming'), ['defer']);
});

test('disks are read-only and in a fixed order; NIC, control port, console and QMP are wired to the run folder', () => {
  const args = buildQemuArgs(base);
  const drives = values(args, '-drive');
  assert.match(drives[0] as string, /file=\/img\/root\.erofs.*readonly=on/);
  assert.match(drives[1] as string, /file=\/run\/vm\/config\.img.*readonly=on/);
  assert.deepEqual(values(args, '-netdev'), ['tap,id=net0,ifname=tap0,script=no,downscript=no']);
  assert.ok(values(args, '-device').includes('virtio-net-device,netdev=net0,mac=52:54:00:f1:1c:02'));
  assert.ok(values(args, '-device').includes('virtserialport,chardev=ctl,name=dev.flick.ctl'));
  assert.ok(values(args, '-chardev').includes('socket,id=ctl,path=/run/vm/ctl.sock,server=on,wait=off'));
  assert.ok(values(args, '-chardev').includes('socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off'));
  assert.ok(values(args, '-chardev').includes('file,id=console,path=/run/vm/console.log,append=on'));
  assert.deepEqual(values(args, '-serial'), ['chardev:console']);
  assert.equal(buildQemuArgs({ ...base, network: undefined }).includes('-netdev'), false);
});

test('the kernel command line follows the guest contract', () => {
  assert.equal(
    kernelCmdline(net, ['loglevel=7']),
    'console=ttyS0 quiet reboot=t panic=-1 mitigations=off tsc=reliable rdinit=/init ip=172.31.255.2::172.31.255.1:255.255.255.252::eth0:off loglevel=7',
  );
  assert.doesNotMatch(kernelCmdline(undefined), /ip=/);
});

test('volumes: virtio-blk after the config disk, found by serial, flushes honoured, read-only on request', () => {
  const args = buildQemuArgs({
    ...base,
    drives: [
      { file: '/v/pg/disk.qcow2', format: 'qcow2', readOnly: false, serial: 'a1b2c3' },
      { file: '/v/ro/disk.qcow2', format: 'qcow2', readOnly: true, serial: 'd4e5f6' },
    ],
  });
  const drives = values(args, '-drive');
  assert.equal(drives.length, 4);
  assert.match(drives[2]!, /^id=vol0,file=\/v\/pg\/disk\.qcow2,format=qcow2,if=none,cache=writeback,.*werror=enospc/);
  assert.ok(!drives[2]!.includes('readonly'));
  assert.match(drives[3]!, /readonly=on$/);
  for (const d of drives) assert.ok(!/cache=unsafe|no-flush/.test(d), d);
  // The jailed QEMU cannot reopen a volume by path: a snapshot's inactivation must keep its fd.
  assert.match(drives[2]!, /file.auto-read-only=off/);
  const devices = values(args, '-device');
  assert.deepEqual(devices.slice(0, 4), ['virtio-blk-device,drive=rootfs', 'virtio-blk-device,drive=config', 'virtio-blk-device,drive=vol0,serial=a1b2c3', 'virtio-blk-device,drive=vol1,serial=d4e5f6']);
});

test('known timer rates go to the guest, so it never calibrates (and loses) its TSC or APIC timer', () => {
  const line = kernelCmdline(undefined, [], { tscKhz: 2596122, lapicTimerPeriod: 10_000_000 });
  assert.match(line, / tsc_early_khz=2596122( |$)/);
  assert.match(line, / lapic_timer_period=10000000( |$)/);
  assert.doesNotMatch(kernelCmdline(undefined), /tsc_early_khz|lapic_timer_period/);
});
