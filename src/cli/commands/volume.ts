// `flick volume create NAME --size 1G | ls | get NAME | rm NAME | clone SRC NEW`:
// the host's volumes (REST /v1/volumes), each with -o json.
import type { Command } from 'commander';
import { z } from 'zod';
import { FlickApi } from '../api-client.js';
import { printJson, renderFields, renderTable, withOutputOption, type OutputFormat } from '../output.js';

const VolumeViewSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    size_bytes: z.number(),
    allocated_bytes: z.number(),
    state: z.string(),
    attached_to: z.array(z.object({ instance: z.string(), read_only: z.boolean() }).passthrough()),
    cloned_from: z.string().nullable(),
    created_at: z.string(),
  })
  .passthrough();
type VolumeView = z.infer<typeof VolumeViewSchema>;
const envelope = <T extends z.ZodType>(data: T) => z.object({ status: z.literal('success'), data });

function size(bytes: number): string {
  if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30}G`;
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)}G`;
  if (bytes >= 2 ** 20) return `${Math.round(bytes / 2 ** 20)}M`;
  return `${Math.round(bytes / 1024)}K`;
}

const attached = (v: VolumeView) => (v.attached_to.length === 0 ? '-' : v.attached_to.map((a) => `${a.instance}${a.read_only ? ':ro' : ''}`).join(','));

function show(v: VolumeView, output: OutputFormat): void {
  if (output === 'json') return printJson(v);
  process.stdout.write(
    renderFields([
      ['name', v.name],
      ['id', v.id],
      ['size', size(v.size_bytes)],
      ['on disk', size(v.allocated_bytes)],
      ['state', v.state],
      ['attached to', attached(v)],
      ['cloned from', v.cloned_from],
      ['created', v.created_at],
    ]),
  );
}

export function register(program: Command): void {
  const volume = program.command('volume').description('volumes: ext4 block devices that outlive instances (flick run -v NAME:/path[:ro])');
  const path = (name: string) => `/v1/volumes/${encodeURIComponent(name)}`;

  withOutputOption(volume.command('create').description('create an empty volume').argument('<name>').requiredOption('--size <size>', 'its size, e.g. 1G or 512M')).action(
    async (name: string, opts: { size: string; output: OutputFormat }) => {
      const api = FlickApi.fromEnvironment();
      const v = (await api.host.json('POST', '/v1/volumes', envelope(VolumeViewSchema), { name, size: opts.size })).data;
      if (opts.output === 'json') return printJson(v);
      process.stdout.write(`${v.name} created (${size(v.size_bytes)}, ${size(v.allocated_bytes)} on disk)\n`);
    },
  );

  withOutputOption(volume.command('ls').alias('list').description('list the volumes')).action(async (opts: { output: OutputFormat }) => {
    const api = FlickApi.fromEnvironment();
    const list = (await api.host.json('GET', '/v1/volumes', envelope(z.object({ volumes: z.array(VolumeViewSchema) })))).data.volumes;
    if (opts.output === 'json') return printJson(list);
    process.stdout.write(
      renderTable<VolumeView>(list, [
        { header: 'NAME', value: (v) => v.name },
        { header: 'SIZE', value: (v) => size(v.size_bytes) },
        { header: 'ON DISK', value: (v) => size(v.allocated_bytes) },
        { header: 'STATE', value: (v) => v.state },
        { header: 'ATTACHED TO', value: attached },
        { header: 'CLONED FROM', value: (v) => v.cloned_from ?? '-' },
      ]),
    );
  });

  withOutputOption(volume.command('get').description('show one volume').argument('<name>')).action(async (name: string, opts: { output: OutputFormat }) => {
    show((await FlickApi.fromEnvironment().host.json('GET', path(name), envelope(VolumeViewSchema))).data, opts.output);
  });

  withOutputOption(volume.command('rm').description('remove volumes no instance holds').argument('<names...>')).action(async (names: string[], opts: { output: OutputFormat }) => {
    const api = FlickApi.fromEnvironment();
    for (const name of names) {
      await api.host.json('DELETE', path(name), envelope(z.unknown()));
      if (opts.output === 'json') printJson({ name, state: 'removed' });
      else process.stdout.write(`${name} removed\n`);
    }
  });

  withOutputOption(volume.command('clone').description('a copy-on-write clone of SRC (instant, a few hundred KiB until written)').argument('<src>').argument('<new>')).action(
    async (src: string, name: string, opts: { output: OutputFormat }) => {
      const v = (await FlickApi.fromEnvironment().host.json('POST', `${path(src)}/clone`, envelope(VolumeViewSchema), { name })).data;
      if (opts.output === 'json') return printJson(v);
      process.stdout.write(`${v.name} cloned from ${src} (${size(v.allocated_bytes)} on disk)\n`);
    },
  );
}
