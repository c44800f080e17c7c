// What Flick persists about an instance. One JSON document per instance (the
// `data` column), versioned, plus a few indexed columns the store queries by.
// Field names are camelCase here; the API turns them into its snake_case wire form.
import type { InstanceState } from '../controller/states.js';
import type { Snapshot, VmConfig } from '../vmm/driver.js';
import type { VolumeMountSpec } from '../controller/seams.js';
import type { InstanceCounters, RestartPolicy, ScaleToZeroConfig, ServiceConfig } from '../controller/state/instance-record.js';

export type { HttpService, InstanceCounters, RestartPolicy, ScaleToZeroConfig, ScaleToZeroPolicy, ServiceConfig, TcpService } from '../controller/state/instance-record.js';

export const INSTANCE_RECORD_VERSION = 1;

export interface InstanceRecord {
  version: typeof INSTANCE_RECORD_VERSION;
  id: string;
  name: string;
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
  /** Volumes the instance holds from create to rm (absent in records from before volumes). */
  volumes?: VolumeMountSpec[];
  state: InstanceState;
  /** Why the instance is failed (or why its last start failed). */
  error?: string;
  /** Index into the host's instance address range; stays with the instance until rm. */
  networkIndex: number | null;
  /** The VMM process, while there is one (re-adopted after a flickd restart). */
  pid: number | null;
  /** The VmConfig the live VM was booted with, so a restarted flickd can adopt it. */
  vm: VmConfig | null;
  /** The folder the instance owns: runDir, logs, snapshots. */
  dir: string;
  snapshots: { template?: Snapshot; own?: Snapshot };
  /** In standby: `hot` keeps the paused VMM process (pid set), `cold` has none. */
  standbyTier?: 'hot' | 'cold';
  counters: InstanceCounters;
  lastExitCode: number | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  stoppedAt: string | null;
}
