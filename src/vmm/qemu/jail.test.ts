import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { limitsFor, readSelfCgroups, VMM_OVERHEAD_MB } from '../../security/cgroup-v1.js';
import { UID_BASE, UidPool } from '../../security/uid-pool.js';
import { findJail, jailQemuArgs, prepareJail, SANDBOX_POLICY, sweepDeadJails, sweepJails, wrapArgv } from './jail.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-jail-'));
const stateDir = path.join(tmp, 'state');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('QEMU gets the seccomp sandbox without spawning, its own uid:gid and the chroot', () => {
  const args = jailQemuArgs({ uid: 1600000007, gid: 1600000007, root: '/run/flick/jail/vm/a/root' });
  assert.deepEqual(args, ['-sandbox', SANDBOX_POLICY, '-runas', '1600000007:1600000007', '-chroot', '/run/flick/jail/vm/a/root']);
  assert.match(SANDBOX_POLICY, /^on,/);
  for (const deny of ['obsolete=deny', 'spawn=deny', 'resourcecontrol=deny']) assert.ok(SANDBOX_POLICY.includes(deny), deny);
});

/** Runs `script` wrapped by the jail, moved into its groups (`enter`) before the script goes on; its stdout. */
async function runEntered(jail: Awaited<ReturnType<typeof prepareJail>>, w: { command: string; args: string[] }): Promise<string> {
  const child = spawn(w.command, w.args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((r) => child.once('spawn', r));
  await jail.enter(child.pid as number);
  child.stdin.end('go\n');
  await exited;
  return out;
}

const script = (marker: string) => `read go; cat /proc/self/ksm_stat 2>/dev/null; cat /proc/self/cgroup; ulimit -c; cat ${marker}`;

test('the built helper gets the run folder, its mount point and the command', () => {
  const w = wrapArgv({ runDir: '/data/i/run', root: '/j/root' }, ['qemu', '-S'], '/cache/flick-jailer');
  assert.deepEqual(w, { command: '/cache/flick-jailer', args: ['/data/i/run', '/j/root/data/i/run', '--', 'qemu', '-S'] });
});

test('the shell wrapper, for hosts without a compiler, does the same job', async () => {
  const runDir = path.join(tmp, 'inst-sh', 'run');
  const jail = await prepareJail({ id: 'jail-test-sh', runDir, memoryMb: 64, vcpus: 1, tbSizeMb: 0 }, { stateDir });
  try {
    fs.writeFileSync(path.join(runDir, 'marker'), 'sh');
    const w = wrapArgv(jail, ['sh', '-c', script(`${path.join(jail.root, runDir)}/marker`)]);
    assert.equal(w.command, 'unshare');
    const stdout = await runEntered(jail, w);
    assert.match(stdout, new RegExp(`pids:.*/flick/${jail.key}\\n`));
    assert.ok(stdout.endsWith('0\nsh'), stdout);
  } finally {
    await jail.cleanup();
  }
});

test('the shell form bind-mounts the run folder at its own path in the chroot, then runs the command', () => {
  const w = wrapArgv({ runDir: '/data/i/run', root: '/j/root' }, ['nsenter', '--net=/run/netns/x', '--', 'qemu']);
  assert.equal(w.command, 'unshare');
  const tail = w.args.slice(w.args.indexOf('flick-jail') + 1);
  assert.deepEqual(tail, ['/data/i/run', '/j/root/data/i/run', 'nsenter', '--net=/run/netns/x', '--', 'qemu']);
});

test('limits follow the VM size: RAM + translation buffer + VMM overhead, one CPU per vCPU and half one for QEMU itself', () => {
  const l = limitsFor(256, 2, 64);
  assert.equal(l.memoryBytes, (256 + 64 + VMM_OVERHEAD_MB) * 1024 * 1024);
  assert.equal(l.cpuQuotaUs / l.cpuPeriodUs, 2.5);
  assert.equal(l.cpuShares, 2048);
  assert.ok(l.pidsMax > 64);
});

test('/proc/self/cgroup is read per controller, including joined ones', () => {
  const m = readSelfCgroups('4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/\n');
  assert.equal(m.get('memory'), '/a/b');
  assert.equal(m.get('cpu'), '/c');
  assert.equal(m.get('cpuacct'), '/c');
});

test('every VM gets its own uid, the same one again, and gives it back', () => {
  const pool = new UidPool(path.join(tmp, 'uids'));
  const a = pool.claim('web-a');
  const b = pool.claim('web-b');
  assert.notEqual(a, b);
  assert.ok(a >= UID_BASE && b >= UID_BASE);
  assert.equal(pool.claim('web-a'), a);
  pool.release('web-b', a); // not b's: ignored
  assert.equal(pool.claim('web-a'), a);
  pool.release('web-a', a);
  pool.release('web-a', a);
  assert.equal(fs.existsSync(path.join(tmp, 'uids', String(a))), false);
});

test('a prepared jail runs its command in its groups and mount (its memory mergeable where the kernel reports it), and cleanup leaves nothing', async (t) => {
  const runDir = path.join(tmp, 'inst-a', 'run');
  fs.mkdirSync(runDir, { recursive: true });
  fs.writeFileSync(path.join(runDir, 'marker'), 'a');
  const jail = await prepareJail({ id: 'jail-test-a', runDir, memoryMb: 64, vcpus: 1, tbSizeMb: 16 }, { stateDir });
  try {
    assert.equal(fs.readFileSync(path.join(jail.cgroups.memory, 'memory.limit_in_bytes'), 'utf8').trim(), String(jail.limits.memoryBytes));
    assert.equal(fs.readFileSync(path.join(jail.cgroups.cpu, 'cpu.cfs_quota_us'), 'utf8').trim(), '150000');
    assert.equal(fs.readFileSync(path.join(jail.cgroups.pids, 'pids.max'), 'utf8').trim(), String(jail.limits.pidsMax));
    const st = fs.statSync(runDir);
    assert.equal(st.mode & 0o7777, 0o1730);
    assert.equal(st.gid, jail.gid);
    // The command sees the run folder at its own path under the chroot folder; the host does not.
    const inner = path.join(jail.root, runDir);
    const w = jail.wrap(['sh', '-c', script(`${inner}/marker`)]);
    assert.match(w.command, /flick-jailer$/, 'the built helper');
    const stdout = await runEntered(jail, w);
    assert.match(stdout, /\n0\na$/, 'no core dumps');
    // The VMM's memory is mergeable: a host that runs ksmd shares identical pages between VMMs (a kernel that says so).
    // A kernel without /proc/self/ksm_stat (or without ksm_merge_any in it) cannot say; the jailer then runs the VMM unmerged.
    let ksmStat = '';
    try {
      ksmStat = fs.readFileSync('/proc/self/ksm_stat', 'utf8');
    } catch {
      /* no KSM stats on this kernel */
    }
    if (/ksm_merge_any/.test(ksmStat)) assert.match(stdout, /ksm_merge_any: yes/, 'the kernel reports ksm_merge_any: the VMM is mergeable');
    else t.diagnostic('this kernel reports no ksm_merge_any in /proc/self/ksm_stat: the mergeable flag was not checked');
    assert.match(stdout, new RegExp(`memory:.*/flick/${jail.key}\\n`));
    assert.match(stdout, new RegExp(`pids:.*/flick/${jail.key}\\n`));
    assert.ok(jail.key.startsWith('jail-test-a-'));
    assert.ok(stdout.endsWith('a'), stdout);
    assert.equal(fs.existsSync(path.join(inner, 'marker')), false);
    assert.equal(findJail('jail-test-a', runDir, { stateDir })?.uid, jail.uid);
  } finally {
    await jail.cleanup();
    await jail.cleanup();
  }
  for (const dir of Object.values(jail.cgroups)) assert.equal(fs.existsSync(dir), false, dir);
  assert.equal(fs.existsSync(jail.root), false);
  assert.equal(findJail('jail-test-a', runDir, { stateDir }), undefined);
  assert.equal(fs.readdirSync(path.join(stateDir, 'uids')).length, 0);
  assert.equal(fs.statSync(runDir).mode & 0o7777, 0o700);
  assert.equal(fs.readFileSync(path.join(runDir, 'marker'), 'utf8'), 'a');
});

test('a process left in a jail is killed by cleanup, and the sweep removes jails nobody keeps', async () => {
  const runDir = path.join(tmp, 'inst-b', 'run');
  const jail = await prepareJail({ id: 'jail-test-b', runDir, memoryMb: 64, vcpus: 1, tbSizeMb: 0 }, { stateDir });
  const w = jail.wrap(['sleep', '600']);
  const child = spawn(w.command, w.args, { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await new Promise((r) => child.once('spawn', r));
    await jail.enter(child.pid as number);
    assert.deepEqual(await sweepJails('/elsewhere', new Set(), { stateDir }), []);
    assert.deepEqual(await sweepJails(tmp, new Set([path.join(tmp, 'other', 'run')]), { stateDir }), [jail.key]);
    await exited;
    assert.equal(fs.existsSync(jail.cgroups.memory), false);
  } finally {
    child.kill('SIGKILL');
    await jail.cleanup();
  }
});

test('a jail whose process is gone and whose owner never cleaned it is swept; a freshly prepared one is not', async () => {
  const runDir = path.join(tmp, 'inst-c', 'run');
  const jail = await prepareJail({ id: 'jail-test-c', runDir, memoryMb: 64, vcpus: 1, tbSizeMb: 0 }, { stateDir });
  try {
    assert.deepEqual(await sweepDeadJails({ stateDir }), [], 'just prepared: its process may be about to join');
    const old = new Date(Date.now() - 120_000);
    fs.utimesSync(path.join(stateDir, 'vm', jail.key, 'jail.json'), old, old);
    assert.deepEqual(await sweepDeadJails({ stateDir }), [jail.key]);
    assert.equal(fs.existsSync(jail.cgroups.pids), false);
  } finally {
    await jail.cleanup();
  }
});
