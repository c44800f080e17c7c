import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { GUARD_LOG_FILE, GUARD_PID_FILE, KILL_MARGIN_MS, killAt, processStart, standDownGuard, startFenceGuard, successorRunning } from './fence-guard.js';

const target = { name: 'web', pid: 42, start: '1' };

test('killAt: just before the lease ends, at once if that is past, never once it lapsed or with nothing to kill', () => {
  const s = { renewedAt: 10_000, ttlMs: 3000, targets: [target] };
  assert.equal(killAt(s, 10_100), 13_000 - KILL_MARGIN_MS);
  assert.equal(killAt(s, 12_800), 12_800);
  assert.equal(killAt(s, 13_001), undefined, 'lapsed before flickd ended: the host fence acted, or etcd is down for all');
  assert.equal(killAt({ ...s, targets: [] }, 10_100), undefined);
  assert.equal(killAt(undefined, 10_100), undefined);
});

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
const sleeper = () => spawn('sleep', ['60'], { stdio: 'ignore' });
const exited = (p: ChildProcess) => new Promise<void>((resolve) => (alive(p) ? p.once('exit', () => resolve()) : resolve()));

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !check(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the guard kills its targets at the lease\'s end once its flickd is gone, and only them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-guard-'));
  const vm = sleeper();
  const bystander = sleeper();
  t.after(() => {
    vm.kill('SIGKILL');
    bystander.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await until('the processes to start', () => processStart(vm.pid!) !== undefined && processStart(bystander.pid!) !== undefined);
  const lease = { lastRenewedAt: Date.now() };
  const guard = startFenceGuard({ dataDir: dir, ttlMs: 1500, lease, targets: () => [{ name: 'web', pid: vm.pid! }], log: () => {} });
  const guardPid = Number(fs.readFileSync(path.join(dir, GUARD_PID_FILE), 'utf8'));
  await new Promise((r) => setTimeout(r, 300));
  guard.close(); // as a flickd that ended
  await exited(vm);
  // Timed from the lease's last renewal, not from close(): on a loaded host the 300 ms above can take
  // far longer, and the kill is due at the lease's end whenever flickd went (a late exit event only adds).
  const sinceRenewal = Date.now() - lease.lastRenewedAt;
  assert.ok(sinceRenewal >= 1500 - KILL_MARGIN_MS - 50, `killed ${sinceRenewal} ms after the lease's last renewal: it waits for the lease's end`);
  assert.equal(vm.signalCode, 'SIGKILL');
  assert.ok(alive(bystander), 'a process it was not told of lives');
  await until('the guard to exit and remove its pid file', () => !fs.existsSync(path.join(dir, GUARD_PID_FILE)) && processStart(guardPid) === undefined);
  assert.match(fs.readFileSync(path.join(dir, GUARD_LOG_FILE), 'utf8'), /killed the VM of stateless instance "web"/);
});

test('a new flickd stands the guard down: the VMs it takes over live', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-guard-'));
  const vm = sleeper();
  t.after(() => {
    vm.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await until('the process to start', () => processStart(vm.pid!) !== undefined);
  const guard = startFenceGuard({ dataDir: dir, ttlMs: 800, lease: { lastRenewedAt: Date.now() }, targets: () => [{ name: 'web', pid: vm.pid! }], log: () => {} });
  const guardPid = Number(fs.readFileSync(path.join(dir, GUARD_PID_FILE), 'utf8'));
  await new Promise((r) => setTimeout(r, 200));
  guard.close();
  const lines: string[] = [];
  standDownGuard(dir, (l) => lines.push(l));
  assert.match(lines.join('\n'), /stood down the fence guard/);
  await until('the guard to exit', () => processStart(guardPid) === undefined);
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(alive(vm), 'the VM outlived the old lease\'s end');
});

/** A process whose command line reads like a flickd on `dir` (it only sleeps). */
const fakeFlickd = (dir: string) => spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'bin/flickd', '--data-dir', dir], { stdio: 'ignore' });

test('successorRunning: a flickd on the same data dir, not the one that started the guard', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-guard-'));
  const other = fakeFlickd(dir);
  t.after(() => {
    other.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await until('the fake flickd to start', () => {
    try {
      return fs.readFileSync(`/proc/${other.pid}/cmdline`, 'utf8').includes('--data-dir');
    } catch {
      return false;
    }
  });
  assert.equal(successorRunning(dir, 1), true);
  assert.equal(successorRunning(dir, other.pid!), false, 'the parent still shutting down is no successor');
  assert.equal(successorRunning(`${dir}-other`, 1), false);
});

test('a flickd already starting again on the data dir when the lease ends keeps the VMs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-guard-'));
  const vm = sleeper();
  let next: ChildProcess | undefined;
  t.after(() => {
    vm.kill('SIGKILL');
    next?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await until('the process to start', () => processStart(vm.pid!) !== undefined);
  const guard = startFenceGuard({ dataDir: dir, ttlMs: 800, lease: { lastRenewedAt: Date.now() }, targets: () => [{ name: 'web', pid: vm.pid! }], log: () => {} });
  const guardPid = Number(fs.readFileSync(path.join(dir, GUARD_PID_FILE), 'utf8'));
  guard.close();
  next = fakeFlickd(dir); // still loading: it has not stood the guard down yet
  await until('the guard to exit', () => processStart(guardPid) === undefined);
  assert.ok(alive(vm), 'the VM is left to the new flickd');
  assert.match(fs.readFileSync(path.join(dir, GUARD_LOG_FILE), 'utf8'), /a new flickd is starting on this data dir/);
});
