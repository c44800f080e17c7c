// Defense in depth, tried for real: a flickd with two instances of the
// "prober" fixture (a guest that does what a hostile one would: connect out,
// allocate past its RAM). Each VMM must run as its own unprivileged uid, under
// seccomp, chrooted to its own run folder, inside cgroups sized from the
// instance; a guest must reach nothing on the host or in another guest; and a
// guest that eats its memory must leave its neighbour serving. Host surfaces:
// the token and data dir are private, and nothing answers without the token.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { formatIpv4, GATEWAY_IP, parseIpv4 } from '../src/network/addresses.js';
import { limitsFor } from '../src/security/cgroup-v1.js';
import { api, appGet, createRunning, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { DEFAULT_TB_SIZE_MB } from '../src/vmm/qemu/args.js';
import { DEFAULT_LISTEN, parseListen } from '../src/daemon/flags.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const run = promisify(execFile);
const TAG = 'fsec';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(215);
const IMAGE = 'fixtures/prober:1';
const MEMORY_MB = 128;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-security-'));
const dataDir = path.join(tmp, 'data');
let flickd: FlickdUnderTest | undefined;
let a: any;
let b: any;

before(async () => {
  await sweepDeadRuns(TAG);
  await removeFlickd(undefined, PREFIX, dataDir);
  // `--listen :0`: a free port, and flickd's own default for the host (the harness's own
  // 127.0.0.1 is overridden), so the loopback test below checks what flickd chooses.
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--listen', ':0'] });
  await pushFixtureImage(flickd, IMAGE, 'prober');
  a = await createRunning(flickd, IMAGE, { name: 'sec-a', memory_mb: MEMORY_MB });
  b = await createRunning(flickd, IMAGE, { name: 'sec-b', memory_mb: MEMORY_MB });
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** The folder of `pid`'s group in a v1 hierarchy. */
function cgroupDir(pid: number, controller: string): string {
  const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  assert.ok(line, `process ${pid} is in no ${controller} cgroup`);
  return path.join('/sys/fs/cgroup', controller, line.split(':')[2] as string);
}

const read = (file: string) => fs.readFileSync(file, 'utf8').trim();

test("each instance's VMM runs as its own unprivileged uid, with seccomp, no capabilities and no way to gain them", () => {
  const uids = new Set<string>();
  for (const vm of [a, b]) {
    const s = status(vm.pid);
    assert.match(s.Name ?? '', /^qemu/, `pid ${vm.pid} is QEMU`);
    const [real, effective, saved, fsUid] = (s.Uid ?? '').split(/\s+/);
    assert.notEqual(real, '0');
    assert.ok(real === effective && effective === saved && saved === fsUid, `uids ${s.Uid} are all the same`);
    assert.notEqual((s.Gid ?? '').split(/\s+/)[0], '0');
    assert.equal(s.Seccomp, '2', 'seccomp filter mode');
    assert.equal(s.NoNewPrivs, '1');
    assert.equal(s.CapEff, '0000000000000000');
    assert.equal(s.CapPrm, '0000000000000000');
    uids.add(real as string);
  }
  assert.equal(uids.size, 2, 'the two VMMs have different uids');
});

test("each VMM sits in cgroups whose limits follow its instance's size", () => {
  const want = limitsFor(MEMORY_MB, 1, DEFAULT_TB_SIZE_MB);
  const dirs = new Set<string>();
  for (const vm of [a, b]) {
    const memory = cgroupDir(vm.pid, 'memory');
    dirs.add(memory);
    assert.match(memory, /\/flick\/[a-z0-9-]+$/);
    assert.equal(read(path.join(memory, 'memory.limit_in_bytes')), String(want.memoryBytes));
    assert.ok(Number(read(path.join(memory, 'memory.usage_in_bytes'))) > MEMORY_MB * 1024 * 1024 * 0.1, 'the guest RAM is charged to it');
    const cpu = cgroupDir(vm.pid, 'cpu');
    assert.equal(read(path.join(cpu, 'cpu.cfs_quota_us')), String(want.cpuQuotaUs));
    assert.equal(read(path.join(cpu, 'cpu.shares')), String(want.cpuShares));
    const pids = cgroupDir(vm.pid, 'pids');
    assert.equal(read(path.join(pids, 'pids.max')), String(want.pidsMax));
    // Every thread of QEMU is in it, and nothing else.
    assert.deepEqual(read(path.join(pids, 'cgroup.procs')).split('\n'), [String(vm.pid)]);
  }
  assert.equal(dirs.size, 2);
});

test('a VMM sees only its own run folder, and no other instance uid can open its files', async () => {
  const runDirA = path.join(dataDir, 'instances', a.id, 'run');
  for (const vm of [a, b]) {
    const root = fs.readlinkSync(`/proc/${vm.pid}/root`);
    assert.notEqual(root, '/', 'chrooted');
    // Through the process's own root: its run folder at its host path (bind-mounted in its own mount namespace), nothing else.
    const inner = `/proc/${vm.pid}/root`;
    const own = path.join(inner, dataDir, 'instances', vm.id, 'run');
    assert.ok(fs.existsSync(path.join(own, 'console.log')), 'its own console log is there');
    assert.deepEqual(fs.readdirSync(inner), [dataDir.split('/')[1]]);
    assert.deepEqual(fs.readdirSync(path.join(inner, dataDir, 'instances')), [vm.id], 'no other instance is in its view');
    for (const gone of ['etc', 'proc', 'dev', 'usr', 'tmp/..']) assert.equal(fs.existsSync(path.join(inner, gone, 'passwd')), false);
  }
  // A's run folder: root-owned, group A, sticky; B's uid gets nothing from it.
  const st = fs.statSync(runDirA);
  assert.equal(st.uid, 0);
  assert.equal(st.mode & 0o7777, 0o1730);
  assert.equal(String(st.gid), status(a.pid).Gid?.split(/\s+/)[0]);
  const [uidB, gidB] = [status(b.pid).Uid?.split(/\s+/)[0], status(b.pid).Gid?.split(/\s+/)[0]];
  await assert.rejects(run('setpriv', [`--reuid=${uidB}`, `--regid=${gidB}`, '--clear-groups', 'cat', path.join(runDirA, 'console.log')]), /Permission denied/);
  await assert.rejects(run('setpriv', [`--reuid=${uidB}`, `--regid=${gidB}`, '--clear-groups', 'ls', path.join(dataDir, 'instances')]), /Permission denied/);
});

test('the token and the data dir are private to root', () => {
  assert.equal(fs.statSync(dataDir).mode & 0o777, 0o700);
  assert.equal(fs.statSync(path.join(dataDir, 'token')).mode & 0o777, 0o600);
});

test('nothing on flickd answers without the token', async () => {
  const f = flickd!;
  for (const [method, p] of [
    ['GET', '/v1/instances'],
    ['GET', '/v1/metrics'],
    ['GET', `/v1/instances/${a.id}/log`],
    ['POST', '/v1/instances'],
    ['DELETE', `/v1/instances/${a.id}?force=true`],
    ['GET', '/v2/'],
    ['GET', '/v2/_catalog'],
    ['GET', `/v2/${IMAGE.split(':')[0]}/manifests/1`],
    ['GET', `/v2/${IMAGE.split(':')[0]}/tags/list`],
  ] as const) {
    for (const auth of [undefined, 'Bearer wrong', 'Basic ' + Buffer.from('x:wrong').toString('base64'), `Bearer ${f.token}x`]) {
      const r = await fetch(`${f.base}${p}`, { method, headers: auth ? { authorization: auth } : {} });
      assert.equal(r.status, 401, `${method} ${p} with ${auth ?? 'no credentials'}`);
      assert.doesNotMatch(await r.text(), /sec-a|sec-b|sha256:/);
    }
  }
  // Anything else is not there at all, token or not.
  const r = await fetch(`${f.base}/metrics`);
  assert.ok([401, 404].includes(r.status), `/metrics: ${r.status}`);
  assert.equal((await api(f, 'GET', `/v1/instances/${a.id}`)).status, 200, 'the instance is still there');
});

test("flickd listens on loopback by default", async () => {
  // Its default listen address is loopback, and so is the host it picks when only a port is given (as here).
  assert.equal(parseListen(DEFAULT_LISTEN).host, '127.0.0.1');
  assert.match(flickd!.base, /^http:\/\/127\.0\.0\.1:\d+$/);
  const port = Number(new URL(flickd!.base).port);
  // The socket itself: bound to 127.0.0.1 only (not 0.0.0.0 or ::), as the kernel reports it.
  const { stdout } = await run('ss', ['-Hltn', `sport = :${port}`]);
  const locals = stdout.trim().split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)[3]);
  assert.deepEqual(locals, [`127.0.0.1:${port}`]);
  // And it is not reachable at the host's other addresses.
  const others = Object.values(os.networkInterfaces()).flat().filter((i) => i && i.family === 'IPv4' && !i.internal).map((i) => i!.address);
  for (const ip of others.slice(0, 3)) {
    const reached = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: ip, port, timeout: 2000 }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
      s.on('timeout', () => (s.destroy(), resolve(false)));
    });
    assert.equal(reached, false, `flickd answered on ${ip}:${port}`);
  }
});

test('a guest reaches nothing: not the API, the registry, host services, the namespace or another guest', async (t) => {
  const apiPort = Number(new URL(flickd!.base).port);
  // A host service listening on every address: the worst case a host might have.
  const server = net.createServer((s) => s.end('host secret\n'));
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  t.after(() => server.close());
  const hostPort = (server.address() as net.AddressInfo).port;
  const hostIpA = formatIpv4(parseIpv4(a.address) - 1); // the host end of A's veth
  const probe = (ip: string, port: number) => appGet(a.address, `/connect/${ip}/${port}`, 20_000);

  // The prober works: it reaches its own server.
  assert.equal(await probe('127.0.0.1', 8080), 'connected');
  const targets: Array<[string, string, number]> = [
    ['the API and registry at the host end of its link', hostIpA, apiPort],
    ['a host service on all addresses, via the host end of its link', hostIpA, hostPort],
    ['a host service via the namespace gateway', GATEWAY_IP, hostPort],
    ['the namespace address the host dials', a.address, hostPort],
    ['another guest at its host-reachable address', b.address, 8080],
    ['a host service at another VM link', formatIpv4(parseIpv4(b.address) - 1), hostPort],
  ];
  for (const [what, ip, port] of targets) {
    const answer = await probe(ip, port);
    assert.notEqual(answer, 'connected', `${what} (${ip}:${port}) must be unreachable, got ${answer}`);
  }
  // And the host still reaches B: the refusals above are isolation, not a broken network.
  assert.equal(await appGet(b.address, '/'), 'prober\n');
});

test('a guest that allocates past its RAM is contained in its VM and its neighbour keeps serving', async () => {
  const memA = cgroupDir(a.pid, 'memory');
  const limit = Number(read(path.join(memA, 'memory.limit_in_bytes')));
  // Four times its RAM: the guest kernel's OOM killer must end the allocating process (or the VM dies).
  const answer = await appGet(a.address, `/alloc/${MEMORY_MB * 4}`, 120_000).catch((err: Error) => `failed: ${err.message}`);
  assert.notEqual(answer, 'exit 0', 'the guest could not have had 4x its RAM');
  assert.ok(Number(read(path.join(memA, 'memory.max_usage_in_bytes'))) <= limit, 'the VMM stayed inside its cgroup limit');
  assert.equal(await appGet(b.address, '/'), 'prober\n', 'the neighbour answers');
  const viewB = (await api(flickd!, 'GET', `/v1/instances/${b.id}`)).json.data;
  assert.equal(viewB.state, 'running');
  assert.equal(viewB.pid, b.pid, 'the neighbour VMM was not restarted');
});
