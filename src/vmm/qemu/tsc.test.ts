import assert from 'node:assert/strict';
import { test } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tcgGuestTimers, tscKhzFromCpuinfo, tscKhzFromKernelLog } from './tsc.js';

const cpu = (flags: string, mhz = '2596.122') => `processor\t: 0\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu tsc ${flags}\n\nprocessor\t: 1\ncpu MHz\t\t: 1.000\n`;

test('cpuinfo gives the TSC rate only where "cpu MHz" cannot be a live core frequency', () => {
  assert.equal(tscKhzFromCpuinfo(cpu('constant_tsc tsc_known_freq'), false), 2596122);
  assert.equal(tscKhzFromCpuinfo(cpu('constant_tsc aperfmperf'), false), undefined);
  assert.equal(tscKhzFromCpuinfo(cpu('constant_tsc'), true), undefined);
  assert.equal(tscKhzFromCpuinfo(cpu('nonstop_tsc'), false), undefined);
  assert.equal(tscKhzFromCpuinfo(cpu('constant_tsc', 'garbage'), false), undefined);
});

test('the kernel log prefers the refined calibration, then the detected TSC', () => {
  const lines = ['6,1,0,-;tsc: Detected 2400.000 MHz processor', '6,2,0,-;tsc: Detected 2593.990 MHz TSC', '6,9,0,-;tsc: Refined TSC clocksource calibration: 2593.906 MHz'];
  assert.equal(tscKhzFromKernelLog(lines), 2593906);
  assert.equal(tscKhzFromKernelLog(lines.slice(0, 2)), 2593990);
  assert.equal(tscKhzFromKernelLog(lines.slice(0, 1)), 2400000);
  assert.equal(tscKhzFromKernelLog(['nothing here']), undefined);
});

test('the APIC timer period follows the kernel build config beside the vmlinux', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-tsc-'));
  try {
    fs.writeFileSync(path.join(dir, 'config'), 'CONFIG_X=y\nCONFIG_HZ=250\n');
    assert.equal(tcgGuestTimers(path.join(dir, 'vmlinux')).lapicTimerPeriod, 4_000_000);
    // An image's kernel blob has no config beside it: Flick's fragment says HZ.
    fs.writeFileSync(path.join(dir, 'fragment'), 'CONFIG_HZ_100=y\n');
    assert.equal(tcgGuestTimers(path.join(dir, 'none', 'vmlinux'), path.join(dir, 'fragment')).lapicTimerPeriod, 10_000_000);
    assert.equal(tcgGuestTimers(path.join(dir, 'none', 'vmlinux'), path.join(dir, 'nofragment')).lapicTimerPeriod, undefined);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
