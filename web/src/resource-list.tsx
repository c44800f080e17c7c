// A list view of one REST collection (volumes, hosts, and later services):
// loaded when opened and on "Refresh", shown as a table that turns into cards
// on a phone. Each view gives its columns; the loading, errors and empty state are here.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api';

export interface Column<T> {
  label: string;
  num?: boolean;
  /** `reload` fetches the list again (after an action in the row). */
  cell(row: T, reload: () => void): ComponentChildren;
}

export function ResourceList<T>(props: { title: string; load(): Promise<T[]>; columns: Column<T>[]; rowKey(row: T): string; empty: ComponentChildren; note?: ComponentChildren }) {
  const [rows, setRows] = useState<T[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    props.load().then((r) => {
      setRows(r);
      setError(undefined);
    }, (e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
  }, [tick]);
  const [first, ...rest] = props.columns;
  const reload = () => setTick((n) => n + 1);
  const id = `${props.title.toLowerCase()}-h`;
  return (
    <section aria-labelledby={id}>
      <div class="head">
        <h1 id={id}>{props.title}</h1>
        {rows && <span class="count">{rows.length}</span>}
        <span class="spacer" />
        <button type="button" onClick={reload}>Refresh</button>
      </div>
      {props.note}
      {error && <p class="error" role="alert">{error}</p>}
      {rows && rows.length === 0 && <p class="empty">{props.empty}</p>}
      {rows && rows.length > 0 && first && (
        <div class="table-wrap">
          <table class="cards-on-phone">
            <thead>
              <tr>
                {props.columns.map((c) => <th scope="col" class={c.num ? 'num' : undefined}>{c.label}</th>)}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={props.rowKey(r)} data-key={props.rowKey(r)}>
                  <th scope="row" data-label={first.label}>{first.cell(r, reload)}</th>
                  {rest.map((c) => <td class={c.num ? 'num' : undefined} data-label={c.label}>{c.cell(r, reload)}</td>)}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
