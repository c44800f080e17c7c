// What scale to zero works through: the controller internals it is handed
// (WakeTarget), and what a wake hands the proxy (Upstream).
import type { InstanceRecord } from '../store/instance-record.js';
import type { InstanceStore } from '../store/instance-store.js';
import type { MicroVm, VmConfig, VmmDriver } from '../vmm/driver.js';
import type { InstanceEventEmitter } from './events.js';
import type { HotStandbyConfig } from './hot-standby.js';
import type { MemoryReclaimer } from './memory-reclaim.js';
import type { ControllerMetrics } from './metrics.js';
import type { ControllerLogger } from './seams.js';
import type { InstanceState } from './states.js';
import type { TemplateStore } from './templates.js';

/** Where the proxy sends an awake instance's traffic (the proxy's AwakeInstance, plus the port). */
export interface Upstream {
  host: string;
  port: number;
  /** Aborted, synchronously, the moment the controller decides to suspend or stop the instance (reason PAUSED: hot standby). */
  asleep: AbortSignal;
  /** The VM process behind `host` (its pid): the proxy's pooled connections are that process's guest's. */
  session?: string;
}

/** The controller internals scale-to-zero works through (passed in by the controller). */
export interface WakeTarget {
  store: InstanceStore;
  driver: VmmDriver;
  events: InstanceEventEmitter;
  log: ControllerLogger;
  readyTimeoutMs: number;
  live(id: string): MicroVm | undefined;
  watch(id: string, vm: MicroVm): void;
  expectExit(id: string): void;
  serialize<T>(id: string, fn: () => Promise<T>): Promise<T>;
  transition(rec: InstanceRecord, to: InstanceState, patch?: Partial<InstanceRecord>): InstanceRecord;
  fresh(id: string): InstanceRecord;
  templates: TemplateStore;
  /** The template key of an instance (what its guest memory depends on). */
  templateKey(rec: InstanceRecord): Promise<string>;
  /** Takes a network for a VM about to run, persists it with the record, returns `config` with it. */
  attachNetwork(id: string, config: VmConfig): Promise<VmConfig>;
  /** The instance's VM has ended: its network goes (no-op when it holds none). */
  releaseNetwork(id: string): Promise<void>;
  reclaimer: MemoryReclaimer;
  metrics: ControllerMetrics;
  hot: HotStandbyConfig;
  /** GET / requests an HTTP app gets before its template is taken (template-warmup.ts); 0: none. */
  templateWarmupRequests: number;
}
