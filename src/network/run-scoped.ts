// Namespace prefixes and address pools scoped to one process, for tests and
// benchmarks: two runs at once (two people's suites, a report running every
// benchmark) must never sweep or address each other's VMs. A prefix is
// `<tag><pid in base 36>-`; a crashed run's namespaces are swept by the next
// run of the same tag once its pid is gone.
import fs from 'node:fs';
import { sweepLeftovers } from './namespace-network.js';

export function runPrefix(tag: string, pid = process.pid): string {
  return `${tag}${pid.toString(36)}-`;
}

/**
 * A /24 inside 10.<secondOctet>.0.0/16 picked by pid (64 runs can hold one at once); each run has four,
 * `slot` 0–3, for a second flickd of its own.
 */
export function runPool(secondOctet: number, slot = 0, pid = process.pid): string {
  if (!Number.isInteger(slot) || slot < 0 || slot > 3) throw new RangeError(`runPool: slot ${slot} is not 0-3`);
  return `10.${secondOctet}.${(pid % 64) * 4 + slot}.0/24`;
}

/** Removes namespaces `<tag><pid>-…` whose process no longer exists. */
export async function sweepDeadRuns(tag: string): Promise<void> {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/run/netns');
  } catch {
    return;
  }
  const pattern = new RegExp(`^${tag.replace(/[^a-z0-9-]/g, '')}([0-9a-z]+)-`);
  const owners = new Set(names.flatMap((n) => pattern.exec(n)?.[1] ?? []));
  for (const owner of owners) {
    const pid = parseInt(owner, 36);
    if (pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
    await sweepLeftovers(runPrefix(tag, pid));
  }
}
