// Which accelerator QEMU should use on this host. /dev/kvm existing is not
// enough: a nested paravirtual KVM can accept QEMU and still fail to run a
// standard guest (FINDINGS: it crawls, then dies in xstate init). So a probe
// guest (the real kernel with no root filesystem: it boots to "VFS: unable to
// mount root", panics and, with panic=-1 and -no-reboot, ends QEMU) must come
// through under KVM in a short time. The verdict is cached per host in the
// cache folder, keyed by the host kernel, QEMU and the guest kernel.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cacheDir } from '../../paths.js';
import { VmmError, type Accelerator } from '../driver.js';
import { QEMU_BINARY } from './qemu-process.js';

export interface AccelVerdict {
  accel: Accelerator;
  /** How it was decided, for the log line. */
  reason: string;
}

const PROBE_TIMEOUT_MS = 4000;

/** FLICK_ACCEL=kvm|tcg, if set; anything else is a user error. */
export function accelFromEnv(env: NodeJS.ProcessEnv = process.env): Accelerator | undefined {
  const v = env.FLICK_ACCEL;
  if (v === undefined || v === '' || v === 'auto') return undefined;
  if (v === 'kvm' || v === 'tcg') return v;
  throw new VmmError('UNSUPPORTED', `FLICK_ACCEL=${v} is not an accelerator: use kvm, tcg or auto`, { kind: 'user' });
}

function verdictPath(kernel: string): string {
  let qemuId = QEMU_BINARY;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, QEMU_BINARY);
    if (fs.existsSync(p)) {
      const st = fs.statSync(p);
      qemuId = `${p}:${st.size}:${st.mtimeMs}`;
      break;
    }
  }
  let kernelId = kernel;
  try {
    const st = fs.statSync(kernel);
    kernelId = `${kernel}:${st.size}:${st.mtimeMs}`;
  } catch {
    // A missing kernel makes the probe fail; the key does not matter then.
  }
  const key = crypto.createHash('sha256').update(`${os.release()}\n${qemuId}\n${kernelId}`).digest('hex').slice(0, 16);
  return path.join(cacheDir(), 'accel', `${key}.json`);
}

/**
 * The accelerator for `accel: 'auto'`: the env override, else the cached
 * verdict, else a probe (KVM only if /dev/kvm exists and the probe guest
 * boots under it within a few seconds).
 */
export async function probeAccelerator(kernel: string): Promise<AccelVerdict> {
  const forced = accelFromEnv();
  if (forced) return { accel: forced, reason: 'FLICK_ACCEL' };
  if (!fs.existsSync('/dev/kvm')) return { accel: 'tcg', reason: 'no /dev/kvm' };
  const file = verdictPath(kernel);
  try {
    const cached = JSON.parse(await fsp.readFile(file, 'utf8')) as AccelVerdict;
    if (cached.accel === 'kvm' || cached.accel === 'tcg') return { accel: cached.accel, reason: `cached probe: ${cached.reason}` };
  } catch {
    // No verdict yet.
  }
  const ok = await kvmBootsGuest(kernel);
  const verdict: AccelVerdict = ok
    ? { accel: 'kvm', reason: 'a probe guest booted under /dev/kvm' }
    : { accel: 'tcg', reason: `/dev/kvm is present but a probe guest did not boot under it within ${PROBE_TIMEOUT_MS} ms` };
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, `${JSON.stringify(verdict)}\n`);
  return verdict;
}

async function kvmBootsGuest(kernel: string): Promise<boolean> {
  if (!fs.existsSync(kernel)) return false;
  const args = [
    '-M', 'microvm,acpi=off', '-accel', 'kvm', '-cpu', 'host,-arch-capabilities',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-m', '64M',
    '-kernel', kernel, '-append', 'console=ttyS0 reboot=t panic=-1', '-serial', 'stdio',
  ];
  return new Promise((resolve) => {
    const child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-4096)));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.on('error', () => resolve(false));
    child.on('exit', (code) => {
      clearTimeout(timer);
      // The probe guest has no root: reaching the panic proves the kernel ran to the end of boot.
      resolve(code === 0 && /VFS: |Kernel panic/.test(out));
    });
  });
}
