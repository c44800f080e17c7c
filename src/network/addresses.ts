// Address math for per-VM networks. Every VM's guest has the SAME address in
// its own namespace (so clones of one template snapshot work); the host reaches
// each VM through a /30 of its own, taken from a pool (default 10.211.0.0/16):
// slot i is pool + 4i, its .1 the host end of the veth, its .2 the namespace
// end, which DNATs to the guest. Pure functions; the controller persists which
// slots are in use and passes them in.
import crypto from 'node:crypto';
import { FlickError } from '../errors.js';

export type NetworkErrorCode = 'INVALID_POOL' | 'POOL_EXHAUSTED' | 'INVALID_INDEX' | 'SETUP_FAILED' | 'TEARDOWN_FAILED';
export class NetworkError extends FlickError<NetworkErrorCode> {}

/** Inside every namespace: the guest, its gateway (the tap) and the tap's fixed MAC. */
export const GUEST_IP = '172.31.255.2';
export const GATEWAY_IP = '172.31.255.1';
export const GUEST_PREFIX_LENGTH = 30;
/** Fixed so a template's guest ARP cache (which remembers the gateway's MAC) is right in every clone. */
export const TAP_MAC = '02:f1:1c:00:00:01';
export const GUEST_MAC = '52:54:00:f1:1c:02';
/** Interface names inside the namespace; the same in every namespace. */
export const TAP_NAME = 'tap0';
export const NS_VETH_NAME = 'veth0';

export const DEFAULT_POOL = '10.211.0.0/16';

export interface AddressPool {
  /** First address of the pool as a 32-bit number. */
  base: number;
  prefixLength: number;
  /** How many /30 slots it holds. */
  size: number;
}

export interface SlotAddresses {
  index: number;
  /** Host end of the veth pair. */
  hostIp: string;
  /** Namespace end of the veth pair: the address the host dials (DNAT'd to the guest). */
  nsIp: string;
  prefixLength: 30;
}

export function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new NetworkError('INVALID_POOL', `"${text}" is not an IPv4 address`, { kind: 'user' });
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses "a.b.c.d/len" (len 8..30, aligned to len) into a pool of /30 slots. */
export function parsePool(cidr: string = DEFAULT_POOL): AddressPool {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  const len = m ? Number(m[2]) : NaN;
  if (!m || !(len >= 8 && len <= 30)) {
    throw new NetworkError('INVALID_POOL', `address pool "${cidr}" is not a CIDR between /8 and /30: use e.g. ${DEFAULT_POOL}`, { kind: 'user' });
  }
  const base = parseIpv4(m[1] as string);
  const size = 2 ** (32 - len);
  if (base % size !== 0) {
    throw new NetworkError('INVALID_POOL', `address pool "${cidr}" is not aligned to its prefix: use ${formatIpv4(base - (base % size))}/${len}`, {
      kind: 'user',
    });
  }
  return { base, prefixLength: len, size: size / 4 };
}

export function slotAddresses(pool: AddressPool, index: number): SlotAddresses {
  if (!Number.isInteger(index) || index < 0 || index >= pool.size) {
    throw new NetworkError('INVALID_INDEX', `network slot ${index} is outside the pool (0..${pool.size - 1})`);
  }
  const net = pool.base + index * 4;
  return { index, hostIp: formatIpv4(net + 1), nsIp: formatIpv4(net + 2), prefixLength: 30 };
}

/** The lowest slot not in `used`; POOL_EXHAUSTED when there is none. */
export function allocateIndex(pool: AddressPool, used: Iterable<number>): number {
  const taken = new Set(used);
  for (let i = 0; i < pool.size; i++) if (!taken.has(i)) return i;
  throw new NetworkError('POOL_EXHAUSTED', `all ${pool.size} VM network slots are in use: stop or remove instances, or configure a larger address pool`);
}

/** `used` without `index`: what the controller persists after a VM's network is gone. */
export function releaseIndex(used: Iterable<number>, index: number): Set<number> {
  const next = new Set(used);
  next.delete(index);
  return next;
}

/** 255.255.255.252 for 30. */
export function netmask(prefixLength: number): string {
  return formatIpv4(prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0);
}

/** The namespace that holds a VM's tap. */
export function namespaceName(prefix: string, vmId: string): string {
  return `${prefix}${vmId}`;
}

/** The host end of the veth: IFNAMSIZ allows 15 characters, so a hash of the namespace name. */
export function hostVethName(ns: string): string {
  return `fk${crypto.createHash('sha256').update(ns).digest('hex').slice(0, 12)}`;
}
