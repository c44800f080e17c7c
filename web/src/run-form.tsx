// Run an instance from a pushed image: the fields of `flick run`, sent as the
// same POST /v1/instances, so the API's own messages say what is wrong. The
// equivalent command line is shown (and copied) as the form is filled in.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, images, instances, services, type ImageView } from './api';
import { CopyCommand } from './copy';
import { EMPTY_RUN, runBody, runCommand, type RunFields } from './format';

export function RunForm() {
  const [f, setF] = useState<RunFields>(EMPTY_RUN);
  const [list, setList] = useState<ImageView[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    // The form appears once the images are known, with the first one filled in (nothing typed yet to overwrite).
    images().then((r) => {
      setF((old) => (old.image || !r.images[0] ? old : { ...old, image: r.images[0].ref }));
      setList(r.images);
    }, (e: unknown) => {
      setList([]);
      setError(e instanceof ApiError ? e.message : String(e));
    });
  }, []);
  const set = <K extends keyof RunFields>(k: K) => (e: Event) => {
    const t = e.currentTarget as HTMLInputElement;
    const value = (t.type === 'checkbox' ? t.checked : t.value) as RunFields[K];
    setF((old) => ({ ...old, [k]: value }));
  };
  const text = (k: keyof RunFields, label: string, hint: string, extra: Record<string, string> = {}) => (
    <div class="field">
      <label for={`f-${k}`}>{label}</label>
      <input id={`f-${k}`} name={k} value={f[k] as string} onInput={set(k)} aria-describedby={`h-${k}`} {...extra} />
      <small id={`h-${k}`}>{hint}</small>
    </div>
  );
  return (
    <section aria-labelledby="run-h">
      <div class="head">
        <h1 id="run-h">Run an instance</h1>
      </div>
      {list === undefined && <p class="empty">Loading images…</p>}
      {list !== undefined && <form
        class="run"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            const body = runBody(f);
            // With replicas it is a service (POST /v1/services), as `flick run --replicas N` makes one.
            if (body.replicas !== undefined) {
              await services.create(body);
              location.hash = '#/services';
            } else {
              const made = await instances.create(body);
              location.hash = `#/instances/${encodeURIComponent(made.name)}`;
            }
          } catch (err) {
            setError(err instanceof ApiError ? err.message : String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <div class="field">
          <label for="f-image">Image</label>
          <input id="f-image" name="image" list="images-list" value={f.image} onInput={set('image')} aria-describedby="h-image" required />
          <datalist id="images-list">
            {list?.map((i) => (
              <option value={i.ref} />
            ))}
          </datalist>
          <small id="h-image">An image pushed to this host ({list?.length ?? 0} here), e.g. hello:latest</small>
        </div>
        {text('name', 'Name', 'Also the host name <name>.localhost; default IMAGE-xxxx')}
        {text('port', 'HTTP port', 'PORT or PORT:GUEST the app serves HTTP on, e.g. 8080 (default: the image\'s EXPOSE)', { inputmode: 'numeric' })}
        {text('memoryMb', 'Memory (MiB)', 'Guest memory, e.g. 256', { inputmode: 'numeric' })}
        {text('vcpus', 'vCPUs', 'Virtual CPUs, e.g. 1', { inputmode: 'numeric' })}
        {text('replicas', 'Replicas', 'Empty: one instance. N: a service of N instances behind <name>.localhost (needs a name)', { inputmode: 'numeric' })}
        <div class="field">
          <label for="f-policy">Scale to zero</label>
          <select id="f-policy" name="policy" value={f.policy} onChange={set('policy')}>
            <option value="">image default</option>
            <option value="on">on: sleep after the cooldown</option>
            <option value="idle">idle: sleep even with open connections</option>
            <option value="off">off: always running</option>
          </select>
        </div>
        {text('cooldownMs', 'Cooldown (ms)', 'Idle time before standby, e.g. 1000', { inputmode: 'numeric' })}
        <div class="field check">
          <label>
            <input type="checkbox" name="stateful" checked={f.stateful} onChange={set('stateful')} /> stateful (wake with its own memory, not the template's)
          </label>
        </div>
        <div class="field wide">
          <label for="f-env">Environment</label>
          <textarea id="f-env" name="env" rows={3} value={f.env} onInput={set('env')} aria-describedby="h-env" />
          <small id="h-env">One NAME=value per line</small>
        </div>
        <div class="field wide">
          <label for="f-volumes">Volumes</label>
          <textarea id="f-volumes" name="volumes" rows={2} value={f.volumes} onInput={set('volumes')} aria-describedby="h-volumes" />
          <small id="h-volumes">One NAME:/path (or NAME:/path:ro) per line, mounted before the app starts; see Volumes</small>
        </div>
        <div class="field wide">
          <label for="f-args">Arguments</label>
          <textarea id="f-args" name="args" rows={2} value={f.args} onInput={set('args')} aria-describedby="h-args" />
          <small id="h-args">One per line; replaces the image's CMD</small>
        </div>
        <div class="field wide">
          <span class="label">The same with the CLI</span>
          <CopyCommand command={runCommand(f)} label="Copy command" />
        </div>
        {error && (
          <p class="error wide" role="alert" data-testid="run-error">
            {error}
          </p>
        )}
        <div class="wide row">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Creating…' : 'Run'}
          </button>
          <a href="#/instances">Cancel</a>
        </div>
      </form>}
    </section>
  );
}
