// The instances list: one row per instance, updated in place from the live feed
// (state and standby tier, RAM, wakes by tier, the last wake, the URL).
import { useState } from 'preact/hooks';
import { Actions, StateBadge } from './actions';
import { bytes, ms } from './format';
import { useLive } from './live';

export function InstancesView() {
  const live = useLive();
  const [error, setError] = useState<string | undefined>();
  const list = [...live.instances.values()].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section aria-labelledby="instances-h">
      <div class="head">
        <h1 id="instances-h">Instances</h1>
        <span class="count">{list.length}</span>
        <span class="spacer" />
        <a class="button primary" href="#/run">
          Run an instance
        </a>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list.length === 0 ? (
        <p class="empty">No instances yet. Push an image and run it from here, or with <code>flick run</code>.</p>
      ) : (
        <div class="table-wrap">
          <table class="cards-on-phone instances">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Memory</th>
                <th scope="col" class="num">Wakes hot / cold</th>
                <th scope="col" class="num">Last wake</th>
                <th scope="col">URL</th>
                <th scope="col"><span class="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((i) => {
                const last = live.wakes.get(i.id)?.[0];
                return (
                  <tr key={i.id} data-name={i.name} data-state={i.state} data-tier={i.standby_tier ?? ''} data-at={live.changedAt.get(i.id) ?? ''}>
                    <th scope="row" data-label="Name">
                      <a href={`#/instances/${encodeURIComponent(i.name)}`}>{i.name}</a>
                      <div class="sub">
                        {i.image}
                        {i.service_name && <> · service <a href="#/services">{i.service_name}</a></>}
                      </div>
                    </th>
                    <td data-label="State">
                      <StateBadge i={i} />
                    </td>
                    <td class="num" data-label="Memory" title="Host RAM of the VM now, of its guest memory">
                      {i.rss_bytes ? bytes(i.rss_bytes) : '–'} <span class="sub">/ {i.memory_mb} MiB</span>
                    </td>
                    <td class="num" data-label="Wakes hot / cold" data-testid="wakes">
                      {i.wakes_hot} / {i.wakes_cold}
                    </td>
                    <td class="num" data-label="Last wake">
                      {last ? `${ms(last.duration_ms)} ${last.tier}` : '–'}
                    </td>
                    <td data-label="URL">{i.url ? <a href={i.url} target="_blank" rel="noreferrer noopener">{i.url.replace(/^https?:\/\//, '')}</a> : i.address ?? '–'}</td>
                    <td class="right">
                      <Actions i={i} onError={setError} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
