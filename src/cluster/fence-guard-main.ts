// The fence guard's process (fence-guard.ts): `node fence-guard-main.js <data dir>`,
// fed JSON lines (GuardState) on stdin by the flickd that started it. When stdin
// ends, it kills what it was last told to at the lease's end and exits; SIGTERM
// (a new flickd took over) makes it exit without killing anything.
import fs from 'node:fs';
import path from 'node:path';
import { GUARD_PID_FILE, killAt, processStart, successorRunning, type GuardState } from './fence-guard.js';

const dataDir = process.argv[2] ?? '.';
/** The flickd that started this guard (still shutting down, maybe, when the guard acts): not a successor. */
const parent = process.ppid;
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} fence guard ${process.pid}: ${line}\n`);
let state: GuardState | undefined;
let pending = '';

function exit(): never {
  const file = path.join(dataDir, GUARD_PID_FILE);
  try {
    if (Number(fs.readFileSync(file, 'utf8').trim()) === process.pid) fs.rmSync(file, { force: true });
  } catch {
    // not ours, or gone
  }
  process.exit(0);
}

let acted = false;
function act(): void {
  if (acted) return;
  acted = true;
  const at = killAt(state, Date.now());
  if (at === undefined) {
    log(state && state.targets.length > 0 ? 'flickd ended after its lease had lapsed: nothing to fence (its own fence acted, or etcd is down for every host)' : 'flickd ended with no stateless VM running: nothing to fence');
    exit();
  }
  const targets = state?.targets ?? [];
  log(`flickd's feed ended (lease renewed ${Date.now() - (state?.renewedAt ?? 0)} ms ago): killing ${targets.length} VM(s) in ${Math.max(0, at - Date.now())} ms unless a new flickd takes over`);
  setTimeout(() => {
    if (successorRunning(dataDir, parent)) {
      log('a new flickd is starting on this data dir: it takes the VMs over (stand-down)');
      exit();
    }
    for (const t of targets) {
      if (processStart(t.pid) !== t.start) continue;
      try {
        process.kill(t.pid, 'SIGKILL');
        log(`flickd is gone and its lease ends: killed the VM of stateless instance "${t.name}" (pid ${t.pid}), which another host now starts`);
      } catch (err) {
        log(`killing pid ${t.pid} of "${t.name}": ${String(err)}`);
      }
    }
    exit();
  }, Math.max(0, at - Date.now()));
}

process.on('SIGTERM', () => {
  log('stood down: a new flickd took over this host');
  exit();
});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  pending += chunk;
  for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
    const line = pending.slice(0, i);
    pending = pending.slice(i + 1);
    try {
      state = JSON.parse(line) as GuardState;
    } catch {
      log(`unreadable line from flickd: ${line.slice(0, 80)}`);
    }
  }
});
process.stdin.on('end', act);
process.stdin.on('error', act);
