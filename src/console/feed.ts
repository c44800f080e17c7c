// The console's live feed: server-sent events (HTML Living Standard §9.2,
// text/event-stream) fed by the controller's events, so an open console sees
// each state change as the controller makes it, with no polling per row.
//   snapshot  {instances, wakes, hot_standby}     first, on every (re)connect
//   instance  {at, from, to, instance}            a state change (the instance's view after it)
//   removed   {id, name}
//   health    {at, instance}                      a HEALTHCHECK status change (the instance's view after it)
//   wake      {id, tier, mode, duration_ms, at}   and the instance's recent wakes
//   memory    {<id>: rss bytes | null}            host RAM of the VMs, sampled while someone watches
// The recent wakes (the last WAKES_KEPT per instance) live here, in memory.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstanceEvents } from '../controller/events.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { rssBytes } from './proc-rss.js';
import type { RecentWake } from './wire.js';

export const WAKES_KEPT = 20;

export interface FeedController {
  on<K extends keyof InstanceEvents>(type: K, listener: (e: InstanceEvents[K]) => void): () => void;
  list(): InstanceRecord[];
  get(idOrName: string): InstanceRecord;
  hotStandby(): { budgetBytes: number; usedBytes: number; instances: string[] };
}

export interface ConsoleFeedOptions {
  controller: FeedController;
  /** The instance as /v1 shows it (the API's own view, with its URL). */
  view(rec: InstanceRecord): Record<string, unknown>;
  /** How often the VMs' RAM is sampled while a console is open. Default 2 s. */
  memoryEveryMs?: number;
  /** A comment line keeps idle connections (and proxies) from timing out. Default 15 s. */
  heartbeatMs?: number;
}

export class ConsoleFeed {
  readonly #opts: ConsoleFeedOptions;
  readonly #clients = new Set<ServerResponse>();
  readonly #wakes = new Map<string, RecentWake[]>();
  readonly #rss = new Map<string, number | null>();
  readonly #off: Array<() => void>;
  #timers: NodeJS.Timeout[] = [];

  constructor(opts: ConsoleFeedOptions) {
    this.#opts = opts;
    const c = opts.controller;
    this.#off = [
      c.on('state', (e) => {
        let rec: InstanceRecord;
        try {
          rec = c.get(e.id);
        } catch {
          return; // removed in the same turn
        }
        this.#send('instance', { at: e.at, from: e.from, to: e.to, instance: opts.view(rec), hot_standby: this.#hot() });
      }),
      c.on('health', (e) => {
        let rec: InstanceRecord;
        try {
          rec = c.get(e.id);
        } catch {
          return;
        }
        this.#send('health', { at: e.at, instance: opts.view(rec) });
      }),
      c.on('removed', (e) => {
        this.#wakes.delete(e.id);
        this.#rss.delete(e.id);
        this.#send('removed', { id: e.id, name: e.name });
      }),
      c.on('wake', (e) => {
        const w: RecentWake = { tier: e.mode === 'resume' ? 'hot' : 'cold', mode: e.mode, duration_ms: e.durationMs, at: new Date().toISOString() };
        const list = [w, ...(this.#wakes.get(e.id) ?? [])].slice(0, WAKES_KEPT);
        this.#wakes.set(e.id, list);
        this.#send('wake', { id: e.id, ...w });
      }),
    ];
  }

  /** Streams the feed to one browser until it goes away. */
  attach(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // Each event is one small write: send it now rather than wait for more (Nagle).
    req.socket.setNoDelay(true);
    res.write('retry: 1000\n\n');
    const c = this.#opts.controller;
    const instances = c.list().map((r) => ({ ...this.#opts.view(r), rss_bytes: this.#rss.get(r.id) ?? null }));
    res.write(frame('snapshot', { instances, wakes: Object.fromEntries(this.#wakes), hot_standby: this.#hot() }));
    this.#clients.add(res);
    if (this.#clients.size === 1) this.#startTimers();
    res.once('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0) this.#stopTimers();
    });
  }

  recentWakes(id: string): RecentWake[] {
    return this.#wakes.get(id) ?? [];
  }

  /** Ends every stream and stops listening. Safe to call twice. */
  dispose(): void {
    for (const off of this.#off.splice(0)) off();
    this.#stopTimers();
    for (const res of this.#clients) res.end();
    this.#clients.clear();
  }

  #hot() {
    const h = this.#opts.controller.hotStandby();
    return { budget_bytes: h.budgetBytes, used_bytes: h.usedBytes, instances: h.instances.length };
  }

  #send(event: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    const text = frame(event, data);
    for (const res of this.#clients) res.write(text);
  }

  #startTimers(): void {
    this.#sampleMemory();
    this.#timers = [
      setInterval(() => this.#sampleMemory(), this.#opts.memoryEveryMs ?? 2000),
      setInterval(() => {
        for (const res of this.#clients) res.write(': keep-alive\n\n');
      }, this.#opts.heartbeatMs ?? 15_000),
    ];
    for (const t of this.#timers) t.unref();
  }

  #stopTimers(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** One message with what changed since the last sample. */
  #sampleMemory(): void {
    const changed: Record<string, number | null> = {};
    for (const rec of this.#opts.controller.list()) {
      const rss = rec.status.pid ? (rssBytes(rec.status.pid) ?? null) : null;
      if (this.#rss.get(rec.id) !== rss) {
        this.#rss.set(rec.id, rss);
        changed[rec.id] = rss;
      }
    }
    if (Object.keys(changed).length > 0) this.#send('memory', changed);
  }
}

function frame(event: string, data: unknown): string {
  // JSON has no raw newlines, so one data line carries it.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
