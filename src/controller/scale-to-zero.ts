// Scale to zero, the proxy's Waker (Controller.waker() hands it out): this
// file is its face and the suspend path
// (after a cooldown with no request in flight). Templates: template-snapshot.ts;
// wake: wake.ts; in-flight accounting and cooldown: activity.ts.
//
// Two tiers of standby (hot-standby.ts): *hot* keeps the paused VMM process (a
// wake is `cont` plus a clock sync), *cold* has none (a wake restores: the
// template for stateless instances, the instance's own state for stateful
// ones). A stateless instance promises nothing about its memory across
// standby: a cold wake starts from the template, a hot wake resumes where it
// paused. Policy `on` suspends only with no open client connection; `idle`
// also with idle ones open (the proxy re-wakes under them on their next byte).
import { describeError } from '../errors.js';
import type { InstanceRecord, NewInstanceRecord } from './state/instance-record.js';
import type { MicroVm, VmConfig } from '../vmm/driver.js';
import type { AwakeInstance, Waker } from '../proxy/waker.js';
import { Activity } from './activity.js';
import type { HotStandby, HotStandbyConfig } from './hot-standby.js';
import type { InstanceHost } from './instance-host.js';
import { StandbyTiers } from './standby-tiers.js';
import type { ControllerMetrics, StandbyTier } from './metrics.js';
import { asleepAtCreate, startAsleep, takeTemplate, type TemplateContext } from './template-snapshot.js';
import type { TemplateStore } from './templates.js';
import { WakePath } from './wake.js';

export interface ScaleToZeroOptions {
  templates: TemplateStore;
  metrics: ControllerMetrics;
  hot: HotStandbyConfig;
  /** GET / requests an HTTP app gets before its template is taken (template-warmup.ts); 0: none. */
  templateWarmupRequests: number;
}

export class ScaleToZero implements Waker {
  readonly #t: InstanceHost;
  readonly #metrics: ControllerMetrics;
  readonly #templates: TemplateContext;
  readonly #activity: Activity;
  readonly #wakes: WakePath;
  readonly #tiers: StandbyTiers;

  constructor(host: InstanceHost, opts: ScaleToZeroOptions) {
    this.#t = host;
    this.#metrics = opts.metrics;
    this.#templates = { host, templates: opts.templates, warmupRequests: opts.templateWarmupRequests };
    this.#tiers = new StandbyTiers(host, opts.hot, opts.metrics);
    this.#activity = new Activity(host, (id) => this.suspend(id));
    this.#wakes = new WakePath(host, this.#tiers.hot, (rec) => this.onRunning(rec), (template, dir) => opts.templates.ownCopy(template, dir));
  }

  /** The hot tier: which instances keep a paused process, the budget, page-out timers. */
  get hot(): HotStandby {
    return this.#tiers.hot;
  }

  /** Finds or takes the shared template of `rec`'s configuration (template-snapshot.ts). */
  takeTemplate(rec: InstanceRecord, vm: MicroVm): Promise<void> {
    return takeTemplate(this.#templates, rec, vm);
  }

  /** Start into cold standby when a template exists; false if the instance must boot (template-snapshot.ts). */
  startAsleep(rec: InstanceRecord, config: VmConfig): Promise<boolean> {
    return startAsleep(this.#templates, rec, config);
  }

  /** `rec` as create stores it when its template exists; undefined when it must boot (template-snapshot.ts). */
  asleepAtCreate(rec: NewInstanceRecord, config: VmConfig, key: string): Promise<NewInstanceRecord | undefined> {
    return asleepAtCreate(this.#templates, rec, config, key);
  }

  /** The proxy's entry: where to send a request for `id`, waking the instance if it sleeps. */
  ensureAwake(id: string, signal?: AbortSignal): Promise<AwakeInstance> {
    return this.#wakes.ensureAwake(id, signal);
  }

  /** Restores a standby instance (template or own state). Concurrent calls share one wake. */
  wake(id: string): Promise<AwakeInstance> {
    return this.#wakes.wake(id);
  }

  /**
   * Suspends a running instance now if it has no request in flight (no-op
   * otherwise): hot when the hot tier is on (or `tier` asks), else cold. On an
   * instance already in hot standby, `tier: 'cold'` demotes it.
   */
  suspend(id: string, opts: { tier?: StandbyTier; force?: boolean } = {}): Promise<void> {
    const rec0 = this.#t.get(id);
    if (rec0?.status.state === 'standby' && rec0.status.standbyTier === 'hot' && opts.tier === 'cold') return this.demote(id);
    return this.#t.serialize(id, async () => {
      let rec = this.#t.get(id);
      if (rec === undefined || rec.status.state !== 'running' || this.#blocker(rec) !== undefined) return;
      if (rec.spec.scaleToZero.policy === 'off') return;
      if (rec.spec.scaleToZero.policy === 'on' && !opts.force && this.#activity.connections(id) > 0) return;
      const vm = this.#t.vm(id);
      if (vm === undefined) return;
      // A VM the driver says is heavy when paused (booted under TCG) goes cold at its first standby.
      const tier: StandbyTier = opts.tier ?? (this.hot.enabled && !vm.heavyWhenPaused ? 'hot' : 'cold');
      // In the same turn as the in-flight check: from here the proxy forwards nothing to this VM.
      this.#wakes.sleep(id, tier === 'hot' ? 'paused' : 'ended');
      this.#activity.clearIdle(id);
      rec = this.#t.transition(rec, 'draining');
      try {
        await vm.pause();
        if (tier === 'hot') {
          this.#t.transition(this.#t.fresh(id), 'standby', { standbyTier: 'hot' });
          this.#metrics.of(id).suspends.hot += 1;
          this.hot.add(id);
          return;
        }
        await this.#tiers.endPaused(this.#t.fresh(id), vm);
        this.#metrics.of(id).suspends.cold += 1;
      } catch (err) {
        await this.#t.kill(id, vm);
        this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `suspend failed: ${describeError(err)}` });
      }
    });
  }

  /**
   * Why a suspend asked for now would not happen (suspend() returns without
   * one), or undefined. `drains`: it goes by itself (requests finish, the
   * template is written), so an asked suspend may wait for it.
   */
  suspendBlocker(id: string): { drains: boolean; reason: string } | undefined {
    const rec = this.#t.get(id);
    return rec === undefined || rec.status.state !== 'running' ? undefined : this.#blocker(rec);
  }

  /** What keeps a running instance from suspending whatever its policy: requests in flight, no template yet, no VM. */
  #blocker(rec: InstanceRecord): { drains: boolean; reason: string } | undefined {
    const id = rec.id;
    const n = this.#activity.inFlight(id);
    if (n > 0) return { drains: true, reason: `${n} request(s) in flight` };
    if (!rec.spec.scaleToZero.stateful && rec.status.snapshots.template === undefined) return { drains: true, reason: 'its template (the snapshot its wakes restore) is still being written' };
    if (this.#t.vm(id) === undefined) return { drains: false, reason: 'flickd holds no VM process for it' };
    return undefined;
  }

  /** Hot → cold (see standby-tiers.ts). */
  demote(id: string): Promise<void> {
    return this.#tiers.demote(id);
  }

  /** A hot-standby VM died on its own (see standby-tiers.ts). */
  onHotVmDied(id: string): Promise<void> {
    return this.#tiers.onHotVmDied(id);
  }

  /** Whether the instance runs now (no wake needed): the proxy's balancer counts it awake. */
  isAwake(id: string): boolean {
    return this.#t.get(id)?.status.state === 'running';
  }

  requestStarted(id: string): void {
    this.#activity.requestStarted(id);
  }

  requestFinished(id: string): void {
    this.#activity.requestFinished(id);
  }

  /** Called when an instance becomes running: start its cooldown. */
  onRunning(rec: InstanceRecord): void {
    this.#activity.onRunning(rec);
  }

  connectionOpened(id: string): void {
    this.#activity.connectionOpened(id);
  }

  connectionClosed(id: string): void {
    this.#activity.connectionClosed(id);
  }

  /** The instance's VM is gone (stop, crash): addresses handed out so far are dead. */
  onStopped(id: string): void {
    this.#activity.clearIdle(id);
    this.#wakes.sleep(id);
    this.hot.remove(id);
  }

  forget(id: string): void {
    this.onStopped(id);
    this.#activity.forget(id);
  }

  dispose(): void {
    this.#activity.dispose();
    this.hot.dispose();
  }
}
