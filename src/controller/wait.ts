// Waiting for an instance to reach a state (the API's `wait?state=`, the CLI's
// "until ready"): resolves on the state event, fails fast when the instance
// fails or is removed instead, and gives up after a timeout or an abort.
import type { InstanceRecord } from './state/instance-record.js';
import type { StateReads } from './state/state-store.js';
import type { InstanceEventEmitter } from './events.js';
import { ControllerError, type InstanceState } from './states.js';

export function waitForState(
  store: StateReads,
  events: InstanceEventEmitter,
  target: Pick<InstanceRecord, 'id' | 'name'>,
  state: InstanceState,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<InstanceRecord> {
  const { id, name } = target;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, rec?: InstanceRecord): void => {
      if (settled) return;
      settled = true;
      offState();
      offRemoved();
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(rec!);
    };
    const check = (): void => {
      const rec = store.get(id);
      if (rec === undefined) return finish(new ControllerError('INSTANCE_NOT_FOUND', `instance "${name}" was removed while waiting for it to be ${state}`, { kind: 'user' }));
      // An instance in standby serves (its first request wakes it): waiting for "running" ends there too.
      if (rec.status.state === state || (state === 'running' && rec.status.state === 'standby')) return finish(undefined, rec);
      if (rec.status.state === 'failed') return finish(new ControllerError('START_FAILED', `instance "${name}" failed${rec.status.error ? `: ${rec.status.error}` : ''}: see 'flick logs ${name}'`));
    };
    const onAbort = (): void => finish(new ControllerError('WAIT_TIMEOUT', `stopped waiting for instance "${name}": the request was cancelled`));
    const offState = events.on('state', (e) => e.id === id && check());
    const offRemoved = events.on('removed', (e) => e.id === id && check());
    const timer = setTimeout(
      () => finish(new ControllerError('WAIT_TIMEOUT', `instance "${name}" did not become ${state} within ${opts.timeoutMs} ms: it is ${store.get(id)?.status.state ?? 'gone'}`, { kind: 'user' })),
      opts.timeoutMs ?? 2 ** 31 - 1,
    );
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    check();
  });
}
