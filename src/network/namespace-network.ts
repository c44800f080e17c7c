// Per-VM networks on this host: a namespace `<prefix><name>` holding the VM's
// tap, a veth pair to the host and the namespace's NAT and filter rules (see
// plan.ts). Runs `ip` and `iptables` (iptables-nft on Debian 12). Whatever
// attach() creates, detach() and the sweep remove; a failed attach removes
// what it made before it rejects.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { NetworkAttachment } from '../vmm/driver.js';
import {
  DEFAULT_POOL,
  GATEWAY_IP,
  GUEST_IP,
  GUEST_MAC,
  GUEST_PREFIX_LENGTH,
  NetworkError,
  TAP_NAME,
  hostVethName,
  namespaceName,
  parsePool,
  slotAddresses,
  type AddressPool,
} from './addresses.js';
import { hostEgressRules, hostLinkCommands, makePlan, namespaceLinkCommands, namespaceRules, taggedRuleDeletions, type NetworkPlan } from './plan.js';

export const DEFAULT_NAMESPACE_PREFIX = 'flick-vm-';
const NETNS_DIR = '/run/netns';

export interface NamespaceNetworkConfig {
  /** Namespace name prefix; tests use their own so a sweep never touches a running flickd's VMs. */
  prefix?: string;
  /** CIDR the host-reachable /30s come from. */
  pool?: string;
  /** Let guests open connections out through the host (masqueraded). Off: guests can only answer. */
  egress?: boolean;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {}); // a command that exits early closes its stdin; 'close' reports it
    child.stdin.end(input ?? '');
  });
}

async function mustRun(what: string, cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) {
    throw new NetworkError('SETUP_FAILED', `VM network: ${what} failed (${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}); check that 'ip' and 'iptables' work as root`);
  }
  return r.stdout;
}

export function namespaceExists(ns: string): boolean {
  return fs.existsSync(`${NETNS_DIR}/${ns}`);
}

/** The NetworkAttachment for a VM whose namespace follows `plan`. */
function attachmentOf(plan: NetworkPlan): NetworkAttachment {
  return {
    netns: plan.ns,
    tap: TAP_NAME,
    guestMac: GUEST_MAC,
    guestIp: GUEST_IP,
    gatewayIp: GATEWAY_IP,
    prefixLength: GUEST_PREFIX_LENGTH,
    hostReachableIp: plan.slot.nsIp,
  };
}

export class NamespaceNetwork {
  readonly prefix: string;
  readonly pool: AddressPool;
  readonly egress: boolean;

  constructor(config: NamespaceNetworkConfig = {}) {
    this.prefix = config.prefix ?? DEFAULT_NAMESPACE_PREFIX;
    this.pool = parsePool(config.pool ?? DEFAULT_POOL);
    this.egress = config.egress ?? false;
  }

  /** The network named `<prefix><name>` on address slot `index` (the pool names its own `n<slot>`). */
  plan(name: string, index: number): NetworkPlan {
    return makePlan(namespaceName(this.prefix, name), slotAddresses(this.pool, index), this.egress);
  }

  /**
   * Creates the VM's namespace, tap, veth and rules, or finds them intact
   * (after a flickd restart the VM may still be running in them).
   */
  async attach(name: string, index: number): Promise<NetworkAttachment> {
    const plan = this.plan(name, index);
    if (await this.#intact(plan)) return attachmentOf(plan);
    await teardown(plan.ns, plan.hostVeth);
    try {
      await mustRun('creating the namespace', 'ip', ['netns', 'add', plan.ns]);
      await mustRun('creating the veth pair', 'ip', ['-batch', '-'], `${hostLinkCommands(plan).join('\n')}\n`);
      await mustRun('creating the tap', 'ip', ['-n', plan.ns, '-batch', '-'], `${namespaceLinkCommands(plan).join('\n')}\n`);
      // One process sets forwarding and loads the rules; /proc/sys/net is per namespace.
      await mustRun(
        'loading the namespace rules',
        'nsenter',
        [`--net=${NETNS_DIR}/${plan.ns}`, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && iptables-restore'],
        namespaceRules(plan),
      );
      for (const rule of hostEgressRules(plan)) await mustRun('adding the egress rule', 'iptables', rule);
      return attachmentOf(plan);
    } catch (err) {
      await teardown(plan.ns, plan.hostVeth);
      throw err;
    }
  }

  /** Removes the VM's namespace (and with it the tap and veth) and its host rules. Safe when already gone. */
  async detach(name: string, index: number): Promise<void> {
    const plan = this.plan(name, index);
    await teardown(plan.ns, plan.hostVeth);
  }

  async #intact(plan: NetworkPlan): Promise<boolean> {
    if (!namespaceExists(plan.ns)) return false;
    const r = await run('ip', ['-o', '-4', 'addr', 'show', 'dev', plan.hostVeth]);
    return r.code === 0 && r.stdout.includes(` ${plan.slot.hostIp}/`);
  }
}

/** Deletes one namespace, its host veth and its tagged host rules; each step tolerates "already gone". */
async function teardown(ns: string, hostVeth: string): Promise<void> {
  // Deleting the namespace destroys the tap and the veth's inner end, and with it the pair.
  if (namespaceExists(ns)) {
    const r = await run('ip', ['netns', 'del', ns]);
    if (r.code !== 0 && namespaceExists(ns)) {
      throw new NetworkError('TEARDOWN_FAILED', `VM network: cannot delete namespace ${ns}: ${r.stderr.trim()}; remove it with 'ip netns del ${ns}'`);
    }
  }
  await run('ip', ['link', 'del', hostVeth]); // absent in the normal case
  await deleteTaggedRules(ns, true);
}

async function deleteTaggedRules(tag: string, exact: boolean): Promise<void> {
  for (const table of ['nat', 'filter']) {
    const listing = await run('iptables', ['-t', table, '-S']);
    if (listing.code !== 0) continue;
    for (const del of taggedRuleDeletions(table, listing.stdout, tag)) {
      const comment = del[del.indexOf('--comment') + 1];
      if (exact && comment !== tag) continue;
      await run('iptables', del);
    }
  }
}

/**
 * Removes namespaces named `<prefix>…` (except those in `keep`), their host
 * veths and tagged host rules: what a crash left behind. Used at flickd start
 * and by tests.
 */
export async function sweepLeftovers(prefix: string, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
  let names: string[] = [];
  try {
    names = fs.readdirSync(NETNS_DIR);
  } catch {
    // No /run/netns: no namespace was ever made.
  }
  const removed: string[] = [];
  for (const ns of names) {
    if (!ns.startsWith(prefix) || keep.has(ns)) continue;
    await teardown(ns, hostVethName(ns));
    removed.push(ns);
  }
  if (keep.size === 0) await deleteTaggedRules(prefix, false);
  return removed;
}
