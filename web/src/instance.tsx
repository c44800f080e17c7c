// One instance: what it is (configuration), how it wakes (latency histogram
// by tier, recent wakes, boot time) and what it prints (console log, following).
import { useEffect, useState } from 'preact/hooks';
import { Actions, StateBadge } from './actions';
import { ApiError, instances, type InstanceMetrics } from './api';
import { CopyCommand } from './copy';
import { ago, bytes, ms, shellQuote } from './format';
import { WakeHistogram } from './histogram';
import { findByName, useLive } from './live';
import { LogTail } from './log-tail';

export function InstanceDetail({ name }: { name: string }) {
  const live = useLive();
  const i = findByName(name);
  const wakes = i ? (live.wakes.get(i.id) ?? []) : [];
  const [metrics, setMetrics] = useState<InstanceMetrics | undefined>();
  const [error, setError] = useState<string | undefined>();

  // Metrics when the view opens and after each wake or boot (no timer).
  const key = `${i?.id}:${i?.wakes}:${i?.boots}:${wakes[0]?.at ?? ''}`;
  useEffect(() => {
    if (!i) return;
    instances.metrics(i.name).then(setMetrics, (e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
  }, [key]);

  if (!i) {
    return (
      <section>
        <p class="empty">
          {live.connected ? <>No instance named “{name}” (removed?).</> : 'Loading…'} <a href="#/instances">Back to the instances</a>
        </p>
      </section>
    );
  }
  const s2z = i.scale_to_zero.policy !== 'off';
  const config: Array<[string, string]> = [
    ['image', i.image],
    ['digest', i.image_digest.slice(0, 19)],
    ['id', i.id],
    ['memory', `${i.memory_mb} MiB guest · ${bytes(i.rss_bytes)} host RAM now`],
    ['vCPUs', String(i.vcpus)],
    ['args', i.args?.length ? i.args.map(shellQuote).join(' ') : '(the image\'s CMD)'],
    ['env', Object.entries(i.env).map(([k, v]) => `${k}=${v}`).join(' ') || '–'],
    ['http', i.service.http ? `${i.service.http.hostname} → guest :${i.service.http.guest_port}` : '–'],
    ['tcp', i.service.tcp.map((t) => `${t.port} → ${t.guest_port}`).join(', ') || '–'],
    ['volumes', (i.volumes ?? []).map((v) => `${v.name} at ${v.path}${v.read_only ? ' (ro)' : ''}`).join(', ') || '–'],
    ['scale to zero', `${i.scale_to_zero.policy}, cooldown ${ms(i.scale_to_zero.cooldown_time_ms)}${i.scale_to_zero.stateful ? ', stateful' : ''}`],
    ['restart', i.restart_policy],
    ['health', i.health ? `${i.health.status} since ${new Date(i.health.since).toLocaleString()} (${ago(i.health.since)})` : 'no HEALTHCHECK'],
    ['address', i.address ?? '–'],
    ['template', i.template ?? '–'],
    ['created', `${new Date(i.created_at).toLocaleString()} (${ago(i.created_at)})`],
  ];
  return (
    <section class="detail" aria-labelledby="detail-h" data-name={i.name} data-state={i.state}>
      <div class="head">
        <a href="#/instances" class="back" aria-label="Back to the instances">←</a>
        <h1 id="detail-h">{i.name}</h1>
        <StateBadge i={i} />
        <span class="spacer" />
        {s2z && i.state === 'running' && (
          <>
            <button type="button" onClick={() => instances.suspend(i.name, 'hot').catch((e: Error) => setError(e.message))}>Suspend hot</button>
            <button type="button" onClick={() => instances.suspend(i.name, 'cold').catch((e: Error) => setError(e.message))}>Suspend cold</button>
          </>
        )}
        <Actions i={i} onError={setError} onRemoved={() => (location.hash = '#/instances')} />
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {i.error && <p class="error">{i.error}</p>}
      <div class="cards">
        <div class="card"><div class="k">URL</div><div class="v">{i.url ? <a href={i.url} target="_blank" rel="noreferrer noopener">{i.url}</a> : '–'}</div></div>
        <div class="card"><div class="k">Boot time</div><div class="v" data-testid="boot">{ms(metrics?.boot_ms)}</div></div>
        <div class="card"><div class="k">Wakes hot / cold</div><div class="v">{i.wakes_hot} / {i.wakes_cold}</div></div>
        <div class="card"><div class="k">Requests (proxy)</div><div class="v">{metrics?.proxy?.requests ?? '–'}</div></div>
      </div>
      <div class="grid">
        <div class="panel">
          <h2>Wake latency</h2>
          {metrics ? <WakeHistogram hot={metrics.wake_latency_ms.hot} cold={metrics.wake_latency_ms.cold} /> : <p class="empty">Loading…</p>}
          {metrics && (
            <p class="sub" data-testid="wake-means">
              {(['hot', 'cold'] as const).map((t) => {
                const h = metrics.wake_latency_ms[t];
                return `${t}: ${h.count} wake${h.count === 1 ? '' : 's'}${h.count ? `, mean ${ms(h.sum_ms / h.count)}` : ''}`;
              }).join(' · ')}
            </p>
          )}
          <p class="sub">From the wake decision until the app can take the request; since flickd started.</p>
        </div>
        <div class="panel">
          <h2>Recent wakes</h2>
          {wakes.length === 0 ? (
            <p class="empty">No wakes yet{s2z ? '' : ' (scale to zero is off)'}.</p>
          ) : (
            <div class="scroll" tabIndex={0} aria-label="Recent wakes, newest first">
            <table class="wakes" data-testid="recent-wakes">
              <thead><tr><th scope="col">When</th><th scope="col">Tier</th><th scope="col" class="num">Latency</th></tr></thead>
              <tbody>
                {wakes.map((w) => (
                  <tr key={w.at}><td title={w.at}>{new Date(w.at).toLocaleTimeString()}</td><td><span class={`badge t-${w.tier}`}>{w.tier}</span> <span class="sub">{w.mode}</span></td><td class="num">{ms(w.duration_ms)}</td></tr>
                ))}
              </tbody>
            </table>
            </div>
          )}
        </div>
      </div>
      <LogTail name={i.name} />
      <div class="panel">
        <h2>Configuration</h2>
        <dl class="config">
          {config.map(([k, v]) => (
            <div key={k}><dt>{k}</dt><dd>{v}</dd></div>
          ))}
        </dl>
        <CopyCommand command={`flick logs -f ${shellQuote(i.name)}`} label="Copy" />
      </div>
    </section>
  );
}
