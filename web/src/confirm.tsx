// A button that asks before it does something that cannot be undone (a native <dialog>: focus and Escape for free).
import type { ComponentChildren } from 'preact';
import { useRef } from 'preact/hooks';

export function ConfirmButton(props: { label: string; ariaLabel: string; title: string; disabled?: boolean; onConfirm(): void; children: ComponentChildren }) {
  const dialog = useRef<HTMLDialogElement>(null);
  return (
    <>
      <button type="button" class="danger" disabled={props.disabled} onClick={() => dialog.current?.showModal()} aria-label={props.ariaLabel}>
        {props.label}
      </button>
      <dialog ref={dialog} aria-label={props.title}>
        <form
          method="dialog"
          onSubmit={(e) => {
            if ((e.submitter as HTMLButtonElement | null)?.value === 'confirm') props.onConfirm();
          }}
        >
          <h2>{props.title}</h2>
          <p>{props.children}</p>
          <div class="row">
            <button type="submit" value="cancel" autoFocus>
              Cancel
            </button>
            <button type="submit" value="confirm" class="danger confirm">
              {props.label}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
