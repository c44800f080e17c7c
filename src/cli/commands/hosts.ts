// `flick hosts [-o json]`: the hosts of the cluster (or this host alone) with state, capacity and load.
import type { Command } from 'commander';
import { formatBytes } from '../../image/image-info.js';
import { FlickApi, type HostListView } from '../api-client.js';
import { printJson, renderTable, withOutputOption, type OutputFormat } from '../output.js';

type HostRow = HostListView['hosts'][number];

export function register(program: Command): void {
  withOutputOption(program.command('hosts').description('list the hosts of the cluster with their state, capacity and load')).action(async (opts: { output: OutputFormat }) => {
    const list = await FlickApi.fromEnvironment().hosts();
    if (opts.output === 'json') return printJson(list);
    process.stdout.write(
      renderTable<HostRow>(list.hosts, [
        { header: 'NAME', value: (h) => `${h.name}${h.self ? ' *' : ''}` },
        { header: 'STATE', value: (h) => h.state },
        { header: 'INSTANCES', value: (h) => (h.load ? String(h.load.instances) : '-') },
        { header: 'MEMORY FREE', value: (h) => (h.load ? `${formatBytes(h.load.memory_free_bytes)} / ${formatBytes(h.capacity.memory_bytes)}` : `- / ${formatBytes(h.capacity.memory_bytes)}`) },
        { header: 'CPUS', value: (h) => String(h.capacity.vcpus) },
        { header: 'LOAD', value: (h) => (h.load ? h.load.load_avg_1m.toFixed(2) : '-') },
        { header: 'API', value: (h) => h.api ?? '-' },
        { header: 'PROXY', value: (h) => h.proxy ?? '-' },
      ]),
    );
  });
}
