// The live model of the host: one EventSource on /console/api/events (the
// controller's events as server-sent events). A snapshot on every (re)connect,
// then one message per change; views subscribe with useLive().
import { useEffect, useState } from 'preact/hooks';
import { currentSession, type InstanceView, type RecentWake } from './api';

export interface HotStandby {
  budget_bytes: number;
  used_bytes: number;
  instances: number;
}

export interface LiveState {
  connected: boolean;
  /** Set when the feed refused us (signed out or the session expired). */
  unauthorized: boolean;
  instances: Map<string, InstanceView>;
  /** The `at` of the state change each instance last showed (the controller's clock). */
  changedAt: Map<string, string>;
  wakes: Map<string, RecentWake[]>;
  hot: HotStandby | null;
  version: number;
}

const state: LiveState = { connected: false, unauthorized: false, instances: new Map(), changedAt: new Map(), wakes: new Map(), hot: null, version: 0 };
const listeners = new Set<() => void>();
let source: EventSource | undefined;

function changed(): void {
  state.version++;
  for (const l of listeners) l();
}

function on<T>(es: EventSource, type: string, apply: (data: T) => void): void {
  es.addEventListener(type, (ev) => {
    apply(JSON.parse((ev as MessageEvent<string>).data) as T);
    changed();
  });
}

export function connect(): void {
  if (source) return;
  state.unauthorized = false;
  const es = new EventSource('/console/api/events');
  source = es;
  es.onopen = () => {
    state.connected = true;
    changed();
  };
  es.onerror = () => {
    state.connected = false;
    // CLOSED: the server answered with an error (401), so EventSource will not retry on its own.
    if (es.readyState === EventSource.CLOSED) {
      source = undefined;
      void currentSession().then((csrf) => {
        if (csrf === undefined) state.unauthorized = true;
        else setTimeout(connect, 1000);
        changed();
      }, () => setTimeout(connect, 1000));
    }
    changed();
  };
  on<{ instances: InstanceView[]; wakes: Record<string, RecentWake[]>; hot_standby: HotStandby }>(es, 'snapshot', (d) => {
    state.instances = new Map(d.instances.map((i) => [i.id, i]));
    state.wakes = new Map(Object.entries(d.wakes));
    state.hot = d.hot_standby;
  });
  on<{ at: string; instance: InstanceView; hot_standby: HotStandby }>(es, 'instance', (d) => {
    const before = state.instances.get(d.instance.id);
    state.instances.set(d.instance.id, { ...d.instance, rss_bytes: before?.rss_bytes ?? null });
    state.changedAt.set(d.instance.id, d.at);
    state.hot = d.hot_standby;
  });
  // A HEALTHCHECK verdict changed: the view again, but not a state change (changedAt stays).
  on<{ instance: InstanceView }>(es, 'health', (d) => {
    const before = state.instances.get(d.instance.id);
    state.instances.set(d.instance.id, { ...d.instance, rss_bytes: before?.rss_bytes ?? null });
  });
  on<{ id: string }>(es, 'removed', (d) => {
    state.instances.delete(d.id);
    state.wakes.delete(d.id);
  });
  on<RecentWake & { id: string }>(es, 'wake', ({ id, ...w }) => {
    state.wakes.set(id, [w, ...(state.wakes.get(id) ?? [])].slice(0, 20));
  });
  on<Record<string, number | null>>(es, 'memory', (d) => {
    for (const [id, rss] of Object.entries(d)) {
      const i = state.instances.get(id);
      if (i) state.instances.set(id, { ...i, rss_bytes: rss });
    }
  });
}

export function disconnect(): void {
  source?.close();
  source = undefined;
  state.connected = false;
  state.instances.clear();
  changed();
}

/** The live state; the calling component re-renders on every change. */
export function useLive(): LiveState {
  const [, setVersion] = useState(0);
  useEffect(() => {
    const l = () => setVersion(state.version);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return state;
}

export function findByName(name: string): InstanceView | undefined {
  for (const i of state.instances.values()) if (i.name === name) return i;
  return undefined;
}
