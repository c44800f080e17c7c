// Start, stop and remove (with a confirmation), shared by the list and the detail view.
import { useState } from 'preact/hooks';
import { ApiError, instances, type InstanceView } from './api';
import { ConfirmButton } from './confirm';

const RUNNING_LIKE = new Set(['running', 'starting', 'standby', 'stopping']);

export function StateBadge({ i }: { i: InstanceView }) {
  const label = i.state === 'standby' ? `standby · ${i.standby_tier ?? 'cold'}` : i.state;
  return (
    <>
      <span class={`badge s-${i.state} ${i.standby_tier ? `t-${i.standby_tier}` : ''}`}>{label}</span>
      {i.health && i.state === 'running' && (
        <span class={`badge h-${i.health.status}`} data-health={i.health.status} title={`HEALTHCHECK: ${i.health.status} since ${new Date(i.health.since).toLocaleTimeString()}`}>
          {i.health.status}
        </span>
      )}
    </>
  );
}

export function Actions({ i, onRemoved, onError }: { i: InstanceView; onRemoved?: () => void; onError(message: string | undefined): void }) {
  const [busy, setBusy] = useState(false);
  const act = async (what: () => Promise<unknown>) => {
    setBusy(true);
    onError(undefined);
    try {
      await what();
    } catch (e) {
      onError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const up = RUNNING_LIKE.has(i.state);
  return (
    <span class="actions">
      {up ? (
        <button type="button" disabled={busy || i.state === 'stopping'} onClick={() => act(() => instances.stop(i.name))} aria-label={`Stop ${i.name}`}>
          Stop
        </button>
      ) : (
        <button type="button" disabled={busy} onClick={() => act(() => instances.start(i.name))} aria-label={`Start ${i.name}`}>
          Start
        </button>
      )}
      <ConfirmButton
        label="Remove"
        ariaLabel={`Remove ${i.name}`}
        title={`Remove ${i.name}?`}
        disabled={busy}
        onConfirm={() =>
          void act(async () => {
            await instances.remove(i.name);
            onRemoved?.();
          })
        }
      >
        {up ? `It is ${i.state}: it will be stopped first. ` : ''}Its disk state, snapshots and logs go with it. This cannot be undone.
      </ConfirmButton>
    </span>
  );
}
