// The resident set of a process, from its /proc/<pid>/status (proc(5)): the
// console's memory column, and the benchmarks' RAM figures.
import fs from 'node:fs';

/** VmRSS in bytes, or undefined if the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
