// Start, stop and remove (with a confirmation dialog), shared by the list and the detail view.
import { useRef, useState } from 'preact/hooks';
import { ApiError, instances, type InstanceView } from './api';

const RUNNING_LIKE = new Set(['running', 'starting', 'standby', 'stopping']);

export function StateBadge({ i }: { i: InstanceView }) {
  const label = i.state === 'standby' ? `standby · ${i.standby_tier ?? 'cold'}` : i.state;
  return <span class={`badge s-${i.state} ${i.standby_tier ? `t-${i.standby_tier}` : ''}`}>{label}</span>;
}

export function Actions({ i, onRemoved, onError }: { i: InstanceView; onRemoved?: () => void; onError(message: string | undefined): void }) {
  const dialog = useRef<HTMLDialogElement>(null);
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
      <button type="button" class="danger" disabled={busy} onClick={() => dialog.current?.showModal()} aria-label={`Remove ${i.name}`}>
        Remove
      </button>
      <dialog ref={dialog} aria-labelledby={`rm-${i.id}`}>
        <form
          method="dialog"
          onSubmit={(e) => {
            const confirmed = (e.submitter as HTMLButtonElement | null)?.value === 'remove';
            if (confirmed) void act(async () => {
              await instances.remove(i.name);
              onRemoved?.();
            });
          }}
        >
          <h2 id={`rm-${i.id}`}>Remove {i.name}?</h2>
          <p>
            {up ? 'It is ' + i.state + ': it will be stopped first. ' : ''}Its disk state, snapshots and logs go with it. This cannot be undone.
          </p>
          <div class="row">
            <button type="submit" value="cancel" autoFocus>
              Cancel
            </button>
            <button type="submit" value="remove" class="danger">
              Remove
            </button>
          </div>
        </form>
      </dialog>
    </span>
  );
}
