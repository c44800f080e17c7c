// What Flick persists about an instance, split the way kraftkit's machine API
// splits it: `spec` is what the user asked for (the same on every host, written
// only by create and by later spec changes), `status` is what the host that owns
// the instance observed (its VM process, run folder, network, snapshots, standby
// tier, counters). Beside them, the metadata every backend keeps: id, name,
// owner and `revision`. Field names are camelCase here; the API turns them into
// its snake_case wire form. Owned by the controller (src/controller/state/
// state-store.ts is the seam); src/store and src/cluster only store these.
import type { InstanceState } from '../states.js';
import type { Snapshot, VmConfig } from '../../vmm/driver.js';
import type { VolumeMountSpec } from '../seams.js';

/** The record format; a backend that reads an older one migrates it (src/store/migrations.ts). */
export const INSTANCE_RECORD_VERSION = 2;

export type RestartPolicy = 'never' | 'on-failure' | 'always';
export type ScaleToZeroPolicy = 'on' | 'idle' | 'off';
export type StandbyTier = 'hot' | 'cold';

export interface ScaleToZeroConfig {
  policy: ScaleToZeroPolicy;
  cooldownTimeMs: number;
  /** true: suspend saves the instance's own state; false: wakes restore the template. */
  stateful: boolean;
}

export interface HttpService {
  /** Host name the proxy routes by, e.g. "hello.localhost". */
  hostname: string;
  guestPort: number;
  /** PEM certificate (chain) and key the proxy's HTTPS listener presents for this host (SNI); absent: its default one. */
  tls?: { cert: string; key: string };
  /** `redirect`: plain HTTP gets a 308 to HTTPS (`-p 80:443/http+redirect`). Absent: served on both. */
  plain?: 'redirect';
}

export interface TcpService {
  hostPort: number;
  guestPort: number;
}

export interface ServiceConfig {
  http?: HttpService;
  tcp: TcpService[];
}

/** The HEALTHCHECK status: `starting` until the guest's first report. */
export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

export interface InstanceHealth {
  status: HealthStatus;
  /** When it last changed (ISO 8601). */
  since: string;
  /** Consecutive failures behind `unhealthy` (the check's retries). */
  failingStreak?: number;
}

export interface InstanceCounters {
  boots: number;
  wakes: number;
  restarts: number;
  /** Wakes by standby tier (absent in records written before tiers existed). */
  wakesHot?: number;
  wakesCold?: number;
}

/** What the user asked for, defaults filled in at create. Immutable but for explicit spec updates. */
export interface InstanceSpec {
  image: { ref: string; digest: string };
  /** Replaces the image's Cmd when non-empty. */
  args: string[];
  env: Record<string, string>;
  memoryMb: number;
  vcpus: number;
  service: ServiceConfig;
  autostart: boolean;
  restartPolicy: RestartPolicy;
  scaleToZero: ScaleToZeroConfig;
  /** Volumes the instance holds from create to rm (absent when it has none). */
  volumes?: VolumeMountSpec[];
}

/** What the owning host observed and did. Written by that host only, always revision-checked. */
export interface InstanceStatus {
  state: InstanceState;
  /** Why the instance is failed (or why its last start failed). */
  error?: string;
  /** The address slot (src/network) the live VM's namespace holds; null while it holds none. */
  networkIndex: number | null;
  /** The VMM process, while there is one (re-adopted after a flickd restart). */
  pid: number | null;
  /** The VmConfig the live VM was booted with, so a restarted flickd can adopt it. */
  vm: VmConfig | null;
  /** The folder the instance owns on its host: runDir, logs, snapshots. */
  dir: string;
  snapshots: { template?: Snapshot; own?: Snapshot };
  /** In standby: `hot` keeps the paused VMM process (pid set), `cold` has none. */
  standbyTier?: StandbyTier;
  counters: InstanceCounters;
  /** The image's HEALTHCHECK status while its VM runs; absent without a HEALTHCHECK or without a VM. */
  health?: InstanceHealth;
  lastExitCode: number | null;
  startedAt: string | null;
  stoppedAt: string | null;
  /** In a cluster, the host this instance was claimed from when its host died (absent: created here). */
  movedFrom?: string;
}

export interface InstanceRecord {
  readonly version: typeof INSTANCE_RECORD_VERSION;
  readonly id: string;
  /** Unique among instances; immutable. */
  readonly name: string;
  readonly createdAt: string;
  /** Set by the store on every write. */
  readonly updatedAt: string;
  /**
   * The host that acts on the instance (boots, suspends, wakes it); only it
   * writes `status`. A single host owns everything it creates; in a cluster an
   * ownership change is a fenced write (StateStore.claim).
   */
  readonly owner: string;
  /**
   * Increases with every write of this record (SQLite: a store-wide counter;
   * etcd: the key's mod_revision). Every update names the revision it read, and
   * fails with STALE_REVISION if the record moved on meanwhile.
   */
  readonly revision: number;
  readonly spec: Readonly<InstanceSpec>;
  readonly status: Readonly<InstanceStatus>;
}

/** What create hands the store: the store sets owner, revision and updatedAt. */
export type NewInstanceRecord = Omit<InstanceRecord, 'owner' | 'revision' | 'updatedAt'>;
