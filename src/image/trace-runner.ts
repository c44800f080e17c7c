// The build-time microVM runs: a traced boot of the full image (the init's
// trace mode reports every file the app opens as `open <path>` on the control
// port) and a boot check of the minimized image. Both are one-shot boots with
// QEMU's user-mode network, so a build needs no taps or namespaces; the guest
// helper's plain boot owns the QEMU process.
//
// Readiness says nothing to the app: the init reports each TCP port the app
// starts listening on (`listen <port>`, guest/init/listen.c), and the app is
// ready when its EXPOSEd port listens (without EXPOSE: any port), or, if it
// never listens, once it has run for a while without exiting and its guest has
// gone idle. The run stops
// there. Then one `GET /` through a port forward added at that moment (QEMU's
// `hostfwd_add`) walks an HTTP app's request path, so the files its first
// request needs are traced too; a non-HTTP server just answers it with an error
// (Redis: "-ERR", no security warning, since it carries no Host header). If the
// traced run got an HTTP answer, the check of the minimized image needs one too.
// With a HEALTHCHECK, ready also needs its first success (run by the init in the guest).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../network/free-port.js';
import type { GuestMessage } from '../guest/control.js';
import { buildInitrd } from '../guest/init.js';
import { requireKernel } from '../guest/kernel.js';
import { bootPlain } from '../guest/plain-qemu.js';
import type { GuestConfig } from '../vmm/driver.js';
import type { BootRun, ReadyProbe, TraceRunner, Unready } from './build.js';

/** Boot on TCG takes ~5.5 s for node on a quiet host, and over 50 s on a loaded one (2 cores, load 22): room for that. */
const READY_TIMEOUT_MS = 300_000;
/**
 * An app that never listens counts as ready once it has run this long without
 * exiting and its guest has been idle for IDLE_MS: QEMU used under a tenth of a
 * core meanwhile (done loading). Wall time alone is no measure: on a loaded host
 * under TCG, node went 32 s between two file opens while it loaded.
 */
const NO_LISTEN_SETTLE_MS = 15_000;
const IDLE_MS = 5_000;

/** CPU seconds a process has used (utime + stime from /proc, USER_HZ 100). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop()!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}
/** A first request under TCG on a loaded host can take seconds. */
const PROBE_TIMEOUT_MS = 30_000;
const GUEST_IP = '10.0.2.15';

/** One `GET /` through the forward: whether the answer began like HTTP. */
function httpProbe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got.startsWith('HTTP/'));
    };
    const timer = setTimeout(done, PROBE_TIMEOUT_MS);
    s.setEncoding('latin1');
    s.on('connect', () => s.write('GET / HTTP/1.0\r\nUser-Agent: flick-build\r\n\r\n'));
    s.on('data', (d: string) => {
      got += d;
      if (got.length >= 5) done();
    });
    s.on('close', done);
    s.on('error', done);
  });
}

/** One HMP command through QEMU's QMP socket (`human-monitor-command`); resolves with its output (QEMU prints errors there). */
function monitorCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let buf = '';
    let step = 0;
    const finish = (err: Error | undefined, out = '') => {
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(out);
    };
    const timer = setTimeout(() => finish(new Error(`QEMU monitor: no answer to "${command}"`)), 10_000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { QMP?: unknown; return?: unknown; error?: { desc?: string } };
        buf = buf.slice(nl + 1);
        if (msg.error) return finish(new Error(`QEMU monitor: ${msg.error.desc ?? 'error'}`));
        if (step === 0 && msg.QMP) {
          step = 1;
          s.write('{"execute":"qmp_capabilities"}\n');
        } else if (step === 1 && 'return' in msg) {
          step = 2;
          s.write(`${JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': command } })}\n`);
        } else if (step === 2 && 'return' in msg) {
          return finish(undefined, String(msg.return ?? '').trim());
        }
      }
    });
    s.on('error', (err) => finish(err));
  });
}

async function bootUntilReady(rootfs: string, guest: GuestConfig, probe: ReadyProbe, trace: boolean): Promise<BootRun> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-trace-'));
  const monitor = path.join(dir, 'monitor.sock');
  const qemuArgs = ['-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-device,netdev=n0', '-qmp', `unix:${monitor},server=on,wait=off`];
  const vm = await bootPlain({
    rootfs,
    guest: { ...guest, trace, listen: true },
    memoryMb: 512,
    qemuArgs,
    kernelArgs: [`ip=${GUEST_IP}::10.0.2.2:255.255.255.0::eth0:off`],
  });
  const opened = new Set<string>();
  const listening: number[] = [];
  let started = false;
  const cpu: { at: number; s: number }[] = [];
  // With a HEALTHCHECK, readiness also waits for its first success in the guest.
  let healthy = !guest.healthcheck;
  let exited: Unready | undefined;
  const output = () => (fs.existsSync(vm.consoleLog) ? fs.readFileSync(vm.consoleLog, 'utf8').trim().slice(-3000) : '');
  const onMessage = (m: GuestMessage) => {
    if (m.type === 'open') opened.add(m.path);
    else if (m.type === 'listen') listening.push(m.port);
    else if (m.type === 'started') started = true;
    else if (m.type === 'healthy') healthy = true;
    else if (m.type === 'exit') exited ??= { kind: 'exited', text: `the app exited with code ${m.code}`, output: '' };
    else if (m.type === 'error') exited = { kind: 'vm', text: `the guest init failed: ${m.text}`, output: '' };
  };
  vm.control.on('message', onMessage);
  let qemuGone = false;
  void vm.exited.then(() => (qemuGone = true));
  const result = (unready?: Unready, readyPort?: number, answeredHttp = false): BootRun => ({
    opened: [...opened],
    ...(unready ? { unready: { ...unready, output: output() } } : {}),
    ...(readyPort !== undefined ? { readyPort } : {}),
    answeredHttp,
  });
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let startedAt: number | undefined;
    while (Date.now() < deadline) {
      if (exited) return result(exited);
      if (qemuGone) return result({ kind: 'vm', text: 'the microVM powered off', output: '' });
      if (started) {
        startedAt ??= Date.now();
        const port = probe.port !== undefined ? listening.find((p) => p === probe.port) : listening[0];
        cpu.push({ at: Date.now(), s: cpuSeconds(vm.process.pid) });
        const ago = cpu.find((c) => c.at >= Date.now() - IDLE_MS - 200);
        const quiet = ago !== undefined && Date.now() - ago.at >= IDLE_MS - 300 && cpu.at(-1)!.s - ago.s < IDLE_MS / 1000 / 10;
        const settled = probe.port === undefined && listening.length === 0 && (guest.healthcheck ? healthy : quiet && Date.now() - startedAt > NO_LISTEN_SETTLE_MS);
        if (healthy && (port !== undefined || settled)) {
          let answeredHttp = false;
          if (port !== undefined) {
            const hostPort = await freePort();
            const said = await monitorCommand(monitor, `hostfwd_add n0 tcp:127.0.0.1:${hostPort}-${GUEST_IP}:${port}`);
            if (said) return result({ kind: 'vm', text: `QEMU refused a port forward to the guest's port ${port}: ${said}`, output: '' });
            answeredHttp = await httpProbe(hostPort);
          }
          // Let trailing `open` lines (reported asynchronously) arrive.
          await new Promise((r) => setTimeout(r, 300));
          if (exited) return result(exited);
          return result(undefined, port, answeredHttp);
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const what = !healthy
      ? `its HEALTHCHECK ${JSON.stringify(guest.healthcheck!.argv)} never passed`
      : probe.port !== undefined ? `its port ${probe.port} did not listen` : 'it did not listen on any port';
    return result({ kind: 'timeout', text: `not ready after ${READY_TIMEOUT_MS / 1000} s: ${what}${listening.length ? ` (it listens on ${listening.join(', ')})` : ''}`, output: '' });
  } finally {
    vm.control.off('message', onMessage);
    await vm.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

export const qemuTraceRunner: TraceRunner = {
  trace(rootfs, guest, probe) {
    return bootUntilReady(rootfs, guest, probe, true);
  },
  async check(rootfs, guest, probe, traced) {
    const r = await bootUntilReady(rootfs, guest, probe, false);
    if (r.unready) return r.unready;
    if (traced.answeredHttp && !r.answeredHttp) return { kind: 'timeout', text: `port ${r.readyPort} listens, but GET / got no HTTP answer as in the traced run`, output: '' };
    return undefined;
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
