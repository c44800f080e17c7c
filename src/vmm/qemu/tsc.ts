// The guest's timer rates, handed to every TCG guest on its command line so it
// never calibrates them itself: the host's TSC frequency (`tsc_early_khz=`) and
// QEMU's APIC timer rate (`lapic_timer_period=`, a parameter Flick's kernel
// patch adds: guest/kernel/patches/lapic-timer-period.patch). Under TCG a guest's rdtsc reads the
// host's TSC, but the guest's own calibration (against the emulated PIT; the
// microvm machine has no HPET and, with acpi=off, no PM timer) fails whenever
// the host is busy: the guest then marks its TSC unstable, falls back to the
// jiffies clocksource, cannot run high-resolution timers or stop its tick, and
// takes 100 timer interrupts a second while idle (~1.2 % of a host core per VM
// under TCG, measured; the "idle VMs that spin"). Its APIC timer calibration
// against the PIT is as fragile: a few per cent off under load, it fails its
// verification ("APIC timer disabled due to verification failure") and the
// guest ticks at 100 Hz through the PIT (~1 in 8 boots on a busy host). With
// both rates given, the guest keeps the TSC clocksource, runs tickless and
// idles at ~0.
import fs from 'node:fs';
import path from 'node:path';
import { KERNEL_FRAGMENT } from '../../guest/kernel.js';

/** QEMU's emulated local APIC counts its bus clock at 1 GHz (hw/intc/apic.c: one count per ns before the divider). */
const QEMU_APIC_BUS_HZ = 1_000_000_000;

export interface GuestTimers {
  tscKhz?: number;
  /** APIC bus clocks per guest jiffy. */
  lapicTimerPeriod?: number;
}

/**
 * The timer rates for a TCG guest of `kernel`. Its HZ comes from its build config
 * (`config` beside a vmlinux in the kernel cache), else from Flick's kernel
 * fragment: an image carries the kernel `flick build` took from this host's
 * cache, as a blob with no config beside it.
 */
export function tcgGuestTimers(kernel: string, fragment = KERNEL_FRAGMENT): GuestTimers {
  const hz = kernelHz(path.join(path.dirname(kernel), 'config')) ?? kernelHz(fragment);
  return { tscKhz: hostTscKhz(), ...(hz ? { lapicTimerPeriod: Math.round(QEMU_APIC_BUS_HZ / hz) } : {}) };
}

const hzByConfig = new Map<string, number | undefined>();

function kernelHz(configFile: string): number | undefined {
  if (!hzByConfig.has(configFile)) {
    let hz: number | undefined;
    try {
      const text = fs.readFileSync(configFile, 'utf8');
      const v = Number(/^CONFIG_HZ=(\d+)$/m.exec(text)?.[1] ?? /^CONFIG_HZ_(\d+)=y$/m.exec(text)?.[1]);
      hz = v > 0 ? v : undefined;
    } catch {
      hz = undefined; // a kernel built elsewhere: it calibrates its APIC timer itself
    }
    hzByConfig.set(configFile, hz);
  }
  return hzByConfig.get(configFile);
}

let cached: number | undefined | null = null;

/** The host TSC's frequency in kHz, or undefined when this host does not say (the guest then calibrates). */
export function hostTscKhz(): number | undefined {
  if (cached === null) cached = fromCpuinfo() ?? fromKernelLog();
  return cached;
}

/** Parses /proc/cpuinfo; "cpu MHz" is the TSC's rate only with a constant TSC and no live-frequency source (aperfmperf, cpufreq). */
export function tscKhzFromCpuinfo(cpuinfo: string, hasCpufreq: boolean): number | undefined {
  const first = cpuinfo.split('\n\n')[0] ?? '';
  const flags = new Set((/^flags\s*:(.*)$/m.exec(first)?.[1] ?? '').trim().split(/\s+/));
  if (!flags.has('constant_tsc') || flags.has('aperfmperf') || hasCpufreq) return undefined;
  return khz(/^cpu MHz\s*:\s*([0-9.]+)$/m.exec(first)?.[1]);
}

/** Parses kernel log lines: the refined calibration if the kernel made one, else the TSC (or processor) it detected. */
export function tscKhzFromKernelLog(lines: string[]): number | undefined {
  const find = (re: RegExp) => lines.map((l) => re.exec(l)?.[1]).filter((x) => x !== undefined).at(-1);
  return khz(find(/tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz/) ?? find(/tsc: Detected ([0-9.]+) MHz TSC/) ?? find(/tsc: Detected ([0-9.]+) MHz processor/));
}

function khz(mhz: string | undefined): number | undefined {
  const v = mhz === undefined ? NaN : Math.round(Number(mhz) * 1000);
  return Number.isFinite(v) && v > 100_000 ? v : undefined;
}

function fromCpuinfo(): number | undefined {
  try {
    return tscKhzFromCpuinfo(fs.readFileSync('/proc/cpuinfo', 'utf8'), fs.existsSync('/sys/devices/system/cpu/cpu0/cpufreq'));
  } catch {
    return undefined;
  }
}

/** Reads what the kernel's ring buffer still holds (/dev/kmsg, root only; boot lines may have rotated out). */
function fromKernelLog(): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync('/dev/kmsg', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  const lines: string[] = [];
  const buf = Buffer.alloc(8192);
  try {
    for (;;) {
      try {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n <= 0) break;
        lines.push(buf.toString('utf8', 0, n));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EPIPE') continue; // a record was overwritten while we read
        break; // EAGAIN: the end of the buffer
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return tscKhzFromKernelLog(lines);
}
