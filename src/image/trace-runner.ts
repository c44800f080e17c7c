// The build-time microVM runs: a traced boot of the full image (the init's
// trace mode reports every file the app opens as `open <path>` on the control
// port) and a boot check of the minimized image. Both are one-shot boots with
// QEMU's user-mode network (a loopback port forward), so a build needs no
// taps or namespaces; the guest helper's plain boot owns the QEMU process.
// Readiness: the app's EXPOSEd port answers (or holds a connection open) after
// the init reported `started`; without a port, the app has run for a while.
import fs from 'node:fs';
import net from 'node:net';
import { freePort } from '../network/free-port.js';
import type { GuestMessage } from '../guest/control.js';
import { buildInitrd } from '../guest/init.js';
import { requireKernel } from '../guest/kernel.js';
import { bootPlain } from '../guest/plain-qemu.js';
import type { GuestConfig } from '../vmm/driver.js';
import type { TraceRunner } from './build.js';

/** Boot on TCG here takes ~5.5 s for node (FINDINGS); leave room for slow imports on a busy host. */
const READY_TIMEOUT_MS = 120_000;
/** An app without a port counts as ready once it has run this long without exiting. */
const NO_PORT_SETTLE_MS = 5_000;

/**
 * One probe through the user-mode forward, which accepts on the host even when
 * nothing listens in the guest and then closes: ready means the guest sent a
 * byte (an HTTP answer) or kept the connection open (a server that waits for
 * its client to speak first).
 */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(true), 2000);
    s.on('connect', () => s.write('GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'));
    s.on('data', () => done(true));
    s.on('close', () => done(false));
    s.on('error', () => done(false));
  });
}

interface BootOutcome {
  opened: string[];
  /** undefined when ready, else why not. */
  failure: string | undefined;
}

async function bootUntilReady(rootfs: string, guest: GuestConfig, port: number | undefined, trace: boolean): Promise<BootOutcome> {
  const hostPort = await freePort();
  const qemuArgs = ['-netdev', `user,id=n0,restrict=on${port ? `,hostfwd=tcp:127.0.0.1:${hostPort}-:${port}` : ''}`, '-device', 'virtio-net-device,netdev=n0'];
  const vm = await bootPlain({
    rootfs,
    guest: { ...guest, trace },
    memoryMb: 512,
    qemuArgs,
    kernelArgs: ['ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off'],
  });
  const opened = new Set<string>();
  let started = false;
  let exited: string | undefined;
  const onMessage = (m: GuestMessage) => {
    if (m.type === 'open') opened.add(m.path);
    else if (m.type === 'started') started = true;
    else if (m.type === 'exit') exited = `the app exited with code ${m.code}`;
    else if (m.type === 'error') exited = `the guest init failed: ${m.text}`;
  };
  vm.control.on('message', onMessage);
  let qemuGone = false;
  void vm.exited.then(() => (qemuGone = true));
  const consoleTail = () => {
    const text = fs.existsSync(vm.consoleLog) ? fs.readFileSync(vm.consoleLog, 'utf8').trim().slice(-600) : '';
    return text ? `; console: ${text}` : '';
  };
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let startedAt: number | undefined;
    while (Date.now() < deadline) {
      if (exited) return { opened: [...opened], failure: `${exited}${consoleTail()}` };
      if (qemuGone) return { opened: [...opened], failure: `the microVM powered off${consoleTail()}` };
      if (started) {
        startedAt ??= Date.now();
        if (port ? await probe(hostPort) : Date.now() - startedAt > NO_PORT_SETTLE_MS) {
          // Let trailing `open` lines (reported asynchronously) arrive.
          await new Promise((r) => setTimeout(r, 300));
          if (exited) return { opened: [...opened], failure: `${exited}${consoleTail()}` };
          return { opened: [...opened], failure: undefined };
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return { opened: [...opened], failure: `not ready after ${READY_TIMEOUT_MS / 1000} s${consoleTail()}` };
  } finally {
    vm.control.off('message', onMessage);
    await vm.dispose();
  }
}

export const qemuTraceRunner: TraceRunner = {
  async trace(rootfs, guest, port) {
    const r = await bootUntilReady(rootfs, guest, port, true);
    return { opened: r.opened, failure: r.failure };
  },
  async check(rootfs, guest, port) {
    return (await bootUntilReady(rootfs, guest, port, false)).failure;
  },
};

/** The trace runner when the guest kernel is built, else undefined (closure-only minimization). */
export async function defaultTraceRunner(progress: (line: string) => void): Promise<TraceRunner | undefined> {
  try {
    requireKernel();
    // Cached by the init source's hash: instant unless guest/init changed.
    await buildInitrd();
    return qemuTraceRunner;
  } catch (err) {
    progress(`no traced run: ${(err as Error).message}`);
    return undefined;
  }
}
