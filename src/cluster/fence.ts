// The host-side fence: a host that has not renewed its lease for half of
// its TTL asks whether it alone lost etcd. If it cannot read etcd itself but a
// peer host can (asked over the peer's API, with the cluster's token), the
// cluster is about to give its stateless instances to other hosts: it stops
// them and refuses to wake them before its lease lapses, so a moved instance
// does not run on two hosts at once. If no peer reaches etcd either (etcd is
// down for everyone, or this host is cut off from all of it), it keeps serving:
// nobody can move anything without etcd, and "etcd down -> every host keeps
// serving what it holds" stands. The fence lifts once the lease is renewed
// again; the agent then starts what the catalog (read fresh) still gives to
// this host and removes what it gave away.
// Decided in the README ("A cluster"): the remaining window is a host cut off
// from etcd and from every peer but not from its clients.

/**
 * The fence is considered once the lease has gone unrenewed for this share of its TTL (renewals
 * come every third of it): probing etcd, the peers and etcd again, then killing, fits in what is
 * left before the lapse, and the other hosts wait FENCE_GRACE_MS more before they start a moved
 * instance (agent.ts).
 */
export const FENCE_AT_SHARE_OF_TTL = 1 / 2;
/** How long this host's own etcd probe may take (a healthy etcd answers in milliseconds). */
export const PROBE_MS = 500;
/** After a host is seen down, how long the others leave it to finish fencing before they move its instances. */
export const FENCE_GRACE_MS = 1000;
/** Probes of etcd and of the peers at most this often while the lease stays unrenewed. */
export const FENCE_CHECK_EVERY_MS = 1000;

export interface FenceConfig {
  ttlMs: number;
  /** When the host's lease was last renewed (ms since epoch). */
  lastRenewedAt: () => number;
  /** Whether this host reads etcd now (a fresh, bounded, linearizable read). */
  reachesEtcd: () => Promise<boolean>;
  /** Whether any peer host reads etcd now (each asked over its API, bounded). */
  peerReachesEtcd: () => Promise<boolean>;
  /** Stop this host's stateless instances and refuse their wakes. */
  fence: () => Promise<void>;
  /** The lease is renewed again: undo the fence for what is still this host's. */
  lift: () => Promise<void>;
  log: (line: string) => void;
  now?: () => number;
}

export class HostFence {
  readonly #c: FenceConfig;
  #fenced = false;
  #busy = false;
  #lastCheck = -Infinity;

  constructor(config: FenceConfig) {
    this.#c = config;
  }

  get fenced(): boolean {
    return this.#fenced;
  }

  /** Called on every tick of the agent; does at most one thing at a time. */
  async check(): Promise<void> {
    if (this.#busy) return;
    const now = (this.#c.now ?? Date.now)();
    const unrenewedMs = now - this.#c.lastRenewedAt();
    const stale = unrenewedMs >= this.#c.ttlMs * FENCE_AT_SHARE_OF_TTL;
    // Fenced: waits for a renewal. Not fenced: probes while the lease stays unrenewed, at most once a second.
    if (this.#fenced ? stale : !stale || now - this.#lastCheck < FENCE_CHECK_EVERY_MS) return;
    this.#busy = true;
    try {
      if (this.#fenced) {
        this.#fenced = false;
        this.#c.log('cluster: the lease is renewed again: lifting the fence (starting what is still this host\'s)');
        await this.#c.lift();
        return;
      }
      this.#lastCheck = now;
      if (await this.#c.reachesEtcd()) return;
      if (!(await this.#c.peerReachesEtcd())) return;
      // Asked again after the peers: an election that ended meanwhile is not a cut.
      if (await this.#c.reachesEtcd()) return;
      this.#fenced = true;
      this.#c.log(`cluster: lease unrenewed for ${unrenewedMs} ms and etcd unreachable from here, but a peer reaches it: this host's stateless instances are being moved, so it stops them now (fence)`);
      await this.#c.fence();
    } finally {
      this.#busy = false;
    }
  }
}
