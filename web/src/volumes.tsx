// The host's volumes (GET /v1/volumes): size, space used, who mounts them.
import { volumes, type VolumeView } from './api';
import { ago, bytes } from './format';
import { ResourceList } from './resource-list';

export function VolumesView() {
  return (
    <ResourceList<VolumeView>
      title="Volumes"
      load={async () => (await volumes()).volumes}
      rowKey={(v) => v.id}
      empty={<>No volumes. Make one with <code>flick volume create NAME --size 1G</code> and mount it from the run form.</>}
      columns={[
        { label: 'Name', cell: (v) => <>{v.name}{v.cloned_from && <div class="sub">clone of {v.cloned_from}</div>}</> },
        { label: 'State', cell: (v) => <span class={`badge s-${v.state === 'attached' ? 'running' : 'stopped'}`}>{v.state}</span> },
        { label: 'Size', num: true, cell: (v) => bytes(v.size_bytes) },
        { label: 'Used on disk', num: true, cell: (v) => bytes(v.allocated_bytes) },
        { label: 'Mounted by', cell: (v) => v.attached_to.map((a) => <a href={`#/instances/${encodeURIComponent(a.instance)}`}>{a.instance}{a.read_only ? ' (ro)' : ''} </a>) },
        { label: 'Created', cell: (v) => <span title={v.created_at}>{ago(v.created_at)}</span> },
      ]}
    />
  );
}
