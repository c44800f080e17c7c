// The console's shell: sign-in, the top bar and the views. Hash routes
// (#/instances, #/instances/<name>, #/run, #/images) so flickd serves one page.
// A new view is one entry in VIEWS.
import { render, type ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { currentSession, logout, setCsrf } from './api';
import { connect, disconnect, useLive } from './live';
import { Login } from './login';
import { InstancesView } from './instances';
import { InstanceDetail } from './instance';
import { RunForm } from './run-form';
import { ImagesView } from './images';
import { VolumesView } from './volumes';
import { ServicesView } from './services';
import { HostsView } from './hosts';
import { bytes } from './format';

interface ViewEntry {
  path: string;
  label: string;
  render(rest: string[]): ComponentChildren;
}

const VIEWS: ViewEntry[] = [
  { path: 'instances', label: 'Instances', render: (rest) => (rest[0] ? <InstanceDetail name={rest[0]} /> : <InstancesView />) },
  { path: 'services', label: 'Services', render: () => <ServicesView /> },
  { path: 'run', label: 'Run', render: () => <RunForm /> },
  { path: 'images', label: 'Images', render: () => <ImagesView /> },
  { path: 'volumes', label: 'Volumes', render: () => <VolumesView /> },
  { path: 'hosts', label: 'Hosts', render: () => <HostsView /> },
];

function useHash(): string[] {
  const read = () => location.hash.replace(/^#\/?/, '').split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const on = () => setParts(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return parts;
}

function App() {
  const [signedIn, setSignedIn] = useState<boolean | undefined>(undefined);
  const live = useLive();
  const [view = 'instances', ...rest] = useHash();

  useEffect(() => {
    currentSession().then((csrf) => {
      setCsrf(csrf);
      setSignedIn(csrf !== undefined);
    }, () => setSignedIn(false));
  }, []);
  useEffect(() => {
    if (signedIn) connect();
  }, [signedIn]);
  useEffect(() => {
    if (live.unauthorized) setSignedIn(false);
  }, [live.unauthorized]);
  // The first render of the live list: the page is interactive (bench/console.ts reads this mark).
  useEffect(() => {
    if (live.connected && performance.getEntriesByName('console-ready').length === 0) performance.mark('console-ready');
  }, [live.connected, live.version]);

  if (signedIn === undefined) return <main class="loading" aria-busy="true" />;
  if (!signedIn) {
    return (
      <Login
        error={location.hash.includes('error=code') ? 'That sign-in link was used or has expired: run `flick console` again.' : undefined}
        onSignedIn={(csrf) => {
          setCsrf(csrf);
          if (location.hash.includes('login')) location.hash = '#/instances';
          setSignedIn(true);
        }}
      />
    );
  }
  const entry = VIEWS.find((v) => v.path === view) ?? VIEWS[0]!;
  return (
    <>
      <header class="bar">
        <a class="brand" href="#/instances">flick</a>
        <nav aria-label="Views">
          {VIEWS.map((v) => (
            <a href={`#/${v.path}`} aria-current={v === entry ? 'page' : undefined}>
              {v.label}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {live.hot && (
          <span class="hot" title="Host RAM the hot standby tier holds, of its budget">
            hot standby {bytes(live.hot.used_bytes)} / {bytes(live.hot.budget_bytes)}
          </span>
        )}
        <span class={`conn ${live.connected ? 'on' : 'off'}`} role="status" data-testid="connection">
          {live.connected ? 'live' : 'reconnecting…'}
        </span>
        <button
          class="link"
          type="button"
          onClick={async () => {
            await logout().catch(() => undefined);
            disconnect();
            setCsrf(undefined);
            setSignedIn(false);
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" data-ready={live.connected ? 'true' : undefined}>{entry.render(rest)}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
