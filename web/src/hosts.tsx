// The cluster's hosts (GET /v1/hosts): one row, this host, when flickd runs alone.
import { hosts, type HostView } from './api';
import { ago, bytes } from './format';
import { ResourceList } from './resource-list';

export function HostsView() {
  return (
    <ResourceList<HostView>
      title="Hosts"
      load={async () => (await hosts()).hosts}
      rowKey={(h) => h.name}
      empty="No hosts."
      columns={[
        { label: 'Host', cell: (h) => <>{h.name}{h.self && <span class="sub"> (this host)</span>}<div class="sub">{h.api ?? ''}</div></> },
        { label: 'State', cell: (h) => <span class={`badge s-${h.state === 'up' ? 'running' : 'failed'}`}>{h.state}</span> },
        { label: 'Instances', num: true, cell: (h) => h.load?.instances ?? '–' },
        { label: 'Memory free / total', num: true, cell: (h) => `${bytes(h.load?.memory_free_bytes)} / ${bytes(h.capacity.memory_bytes)}` },
        { label: 'vCPUs', num: true, cell: (h) => h.capacity.vcpus },
        { label: 'Load (1 min)', num: true, cell: (h) => h.load?.load_avg_1m.toFixed(2) ?? '–' },
        { label: 'Last seen', cell: (h) => (h.last_seen ? ago(h.last_seen) : '–') },
      ]}
    />
  );
}
