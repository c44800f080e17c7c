// What it takes to wire one VM's network, as data: the `ip -batch` lines and
// the iptables-restore input. Pure, so the rules can be read and unit-tested;
// namespace-network.ts runs them. The pattern is Firecracker's "network
// connectivity for clones" (docs/snapshotting/network-for-clones.md in
// firecracker-microvm/firecracker): same guest address in every namespace,
// DNAT from the namespace's veth address to it.
import {
  GATEWAY_IP,
  GUEST_IP,
  GUEST_PREFIX_LENGTH,
  NS_VETH_NAME,
  TAP_MAC,
  TAP_NAME,
  hostVethName,
  type SlotAddresses,
} from './addresses.js';

export interface NetworkPlan {
  ns: string;
  hostVeth: string;
  slot: SlotAddresses;
  /** Let the guest open connections out (masqueraded through the host). Off by default. */
  egress: boolean;
}

export function makePlan(ns: string, slot: SlotAddresses, egress = false): NetworkPlan {
  return { ns, hostVeth: hostVethName(ns), slot, egress };
}

/** Run on the host with `ip -batch -` after `ip netns add`. */
export function hostLinkCommands(p: NetworkPlan): string[] {
  return [
    `link add ${p.hostVeth} type veth peer name ${NS_VETH_NAME} netns ${p.ns}`,
    `addr add ${p.slot.hostIp}/${p.slot.prefixLength} dev ${p.hostVeth}`,
    `link set ${p.hostVeth} up`,
  ];
}

/** Run with `ip -n <ns> -batch -`. The tap is persistent: it outlives QEMU, so a restore needs no network work. */
export function namespaceLinkCommands(p: NetworkPlan): string[] {
  return [
    'link set lo up',
    `addr add ${p.slot.nsIp}/${p.slot.prefixLength} dev ${NS_VETH_NAME}`,
    `link set ${NS_VETH_NAME} up`,
    `tuntap add dev ${TAP_NAME} mode tap`,
    `link set ${TAP_NAME} address ${TAP_MAC}`,
    `addr add ${GATEWAY_IP}/${GUEST_PREFIX_LENGTH} dev ${TAP_NAME}`,
    `link set ${TAP_NAME} up`,
    `route add default via ${p.slot.hostIp}`,
  ];
}

/**
 * iptables-restore input for the namespace. New connections may only go from
 * the veth to the guest (the host dialling in); the guest can open nothing
 * (not the namespace, the host, its API or other VMs) unless egress is on.
 */
export function namespaceRules(p: NetworkPlan): string {
  const lines = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    `-A PREROUTING -i ${NS_VETH_NAME} -d ${p.slot.nsIp}/32 -j DNAT --to-destination ${GUEST_IP}`,
    ...(p.egress ? [`-A POSTROUTING -s ${GUEST_IP}/32 -o ${NS_VETH_NAME} -j MASQUERADE`] : []),
    'COMMIT',
    '*filter',
    ':INPUT DROP [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    `-A FORWARD -i ${NS_VETH_NAME} -o ${TAP_NAME} -d ${GUEST_IP}/32 -m conntrack --ctstate DNAT -j ACCEPT`,
    ...(p.egress ? [`-A FORWARD -i ${TAP_NAME} -o ${NS_VETH_NAME} -s ${GUEST_IP}/32 -j ACCEPT`] : []),
    'COMMIT',
    '',
  ];
  return lines.join('\n');
}

/**
 * Host-side iptables rules (egress only), each tagged with the namespace name
 * as a comment so teardown and the sweep can find them. Returned as argument
 * lists for `iptables -A …`; replace `-A` by `-D` to remove one.
 */
export function hostEgressRules(p: NetworkPlan): string[][] {
  if (!p.egress) return [];
  const tag = ['-m', 'comment', '--comment', p.ns];
  return [
    ['-t', 'nat', '-A', 'POSTROUTING', '-s', `${p.slot.nsIp}/32`, '!', '-o', p.hostVeth, ...tag, '-j', 'MASQUERADE'],
    ['-t', 'filter', '-A', 'FORWARD', '-i', p.hostVeth, ...tag, '-j', 'ACCEPT'],
    ['-t', 'filter', '-A', 'FORWARD', '-o', p.hostVeth, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', ...tag, '-j', 'ACCEPT'],
  ];
}

/** `iptables -S` lines (of one table) that carry a comment starting with `prefix`, turned into delete arguments. */
export function taggedRuleDeletions(table: string, listing: string, prefix: string): string[][] {
  const out: string[][] = [];
  for (const line of listing.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const m = /--comment "?([^"\s]+)"?/.exec(line);
    if (!m || !(m[1] as string).startsWith(prefix)) continue;
    // iptables -S quotes only when needed; our comments are namespace names without spaces.
    const words = line.replace(/"/g, '').split(/\s+/);
    words[0] = '-D';
    out.push(['-t', table, ...words]);
  }
  return out;
}
