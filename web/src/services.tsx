// The host's services (GET /v1/services): replicas behind one name; each
// member's state comes live from the feed (members are instances). Scale sets
// a service's number of instances (PUT /v1/services/{name}/scale).
import { useState } from 'preact/hooks';
import { ApiError, services, type ServiceView } from './api';
import { ConfirmButton } from './confirm';
import { CopyCommand } from './copy';
import { ago } from './format';
import { useLive } from './live';
import { ResourceList } from './resource-list';

export function ServicesView() {
  const live = useLive();
  const [error, setError] = useState<string | undefined>();
  const stateOf = (id: string, fallback: string) => {
    const i = live.instances.get(id);
    return i ? (i.state === 'standby' ? `standby · ${i.standby_tier ?? 'cold'}` : i.state) : fallback;
  };
  return (
    <ResourceList<ServiceView>
      title="Services"
      load={async () => (await services.list()).services}
      rowKey={(s) => s.name}
      note={error && <p class="error" role="alert">{error}</p>}
      empty={<>No services. Run one with a number of replicas from the run form, or <code>flick run --name web --replicas 3 IMAGE</code>.</>}
      columns={[
        { label: 'Service', cell: (s) => <>{s.name}<div class="sub">{s.image}</div></> },
        { label: 'Replicas', num: true, cell: (s) => `${s.instances.filter((m) => live.instances.get(m.id)?.state === 'running').length} running / ${s.replicas}` },
        {
          label: 'Instances',
          cell: (s) => (
            <span class="members">
              {s.instances.map((m) => (
                <a href={`#/instances/${encodeURIComponent(m.name)}`} class={`badge s-${live.instances.get(m.id)?.state ?? m.state} t-${live.instances.get(m.id)?.standby_tier ?? ''}`} title={stateOf(m.id, m.state)}>
                  {m.name}
                </a>
              ))}
            </span>
          ),
        },
        { label: 'URL', cell: (s) => (s.url ? <a href={s.url} target="_blank" rel="noreferrer noopener">{s.url.replace(/^https?:\/\//, '')}</a> : '–') },
        { label: 'Created', cell: (s) => <span title={s.created_at}>{ago(s.created_at)}</span> },
        {
          label: 'Actions',
          cell: (s, reload) => (
            <>
            {s.autoscale === null && <ScaleControl service={s} onDone={reload} onError={setError} />}
            <ConfirmButton
              label="Remove"
              ariaLabel={`Remove service ${s.name}`}
              title={`Remove service ${s.name}?`}
              onConfirm={() => {
                setError(undefined);
                services.remove(s.name).then(reload, (e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
              }}
            >
              Its {s.instances.length} instance(s) are stopped and removed with it.
            </ConfirmButton>
            </>
          ),
        },
      ]}
    />
  );
}

/** A number input and a Scale button (Enter in the input scales too), with the CLI command it equals. */
function ScaleControl({ service, onDone, onError }: { service: ServiceView; onDone: () => void; onError: (m: string | undefined) => void }) {
  const [n, setN] = useState(String(service.replicas));
  const [busy, setBusy] = useState(false);
  const submit = (e: Event) => {
    e.preventDefault();
    onError(undefined);
    setBusy(true);
    services
      .scale(service.name, Number(n))
      .then(onDone, (err: unknown) => onError(err instanceof ApiError ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return (
    <form class="scale" onSubmit={submit}>
      <input type="number" min={0} step={1} value={n} aria-label={`Replicas of ${service.name}`} onInput={(e) => setN((e.target as HTMLInputElement).value)} />
      <button type="submit" disabled={busy} aria-label={`Scale service ${service.name}`}>
        Scale
      </button>
      <CopyCommand command={`flick service scale ${service.name} ${n === '' ? 'N' : n}`} label="Copy CLI" />
    </form>
  );
}
