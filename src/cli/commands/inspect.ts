// `flick inspect [-o json] IMAGE`: one local image's sizes, provenance and run config.
import type { Command } from 'commander';
import { formatBytes, formatMB, imageInfo } from '../../image/image-info.js';
import { OciLayout } from '../../image/oci-layout.js';
import { CliError } from '../cli-error.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show a local microVM image: sizes, source, command, user, ports')
    .argument('<image>', 'NAME[:TAG] or a digest prefix')
    .option('-o, --output <format>', 'text or json', 'text')
    .action(async (ref: string, opts: { output: string }) => {
      if (opts.output !== 'text' && opts.output !== 'json') throw new CliError('USAGE', `-o ${opts.output}: use text or json`, { kind: 'user' });
      const layout = new OciLayout();
      const i = await imageInfo(layout, await layout.resolve(ref));
      if (opts.output === 'json') {
        process.stdout.write(`${JSON.stringify(i, null, 2)}\n`);
        return;
      }
      const ratio = i.source_image_bytes ? ` (${((100 * i.total_bytes) / i.source_image_bytes).toFixed(1)} % of the container image)` : '';
      const lines = [
        `name:            ${i.ref}`,
        `digest:          ${i.digest}`,
        `created:         ${i.created ?? '-'}`,
        `size:            ${formatMB(i.total_bytes)}${ratio}, every layer as pushed: kernel ${formatMB(i.kernel_bytes)}, init ${formatMB(i.initrd_bytes)}, root filesystem ${formatMB(i.rootfs?.size_bytes)}`,
        `container image: ${formatMB(i.source_image_bytes)} ${i.source_image ?? ''}`.trimEnd(),
        `root filesystem: ${i.rootfs ? `${i.rootfs.media_type}, ${formatBytes(i.rootfs.size_bytes)}` : '-'}; minimized: ${i.minimized ?? '-'}`,
        `entrypoint:      ${JSON.stringify(i.config.entrypoint)}`,
        `cmd:             ${JSON.stringify(i.config.cmd)}`,
        `working dir:     ${i.config.working_dir}`,
        `user:            ${i.config.user || 'root'} (uid ${i.config.uid ?? 0}, gid ${i.config.gid ?? 0})`,
        `ports:           ${i.config.exposed_ports.join(', ') || '-'}`,
        `healthcheck:     ${i.config.healthcheck ? `${JSON.stringify(i.config.healthcheck.argv)} every ${i.config.healthcheck.intervalMs / 1000} s, timeout ${i.config.healthcheck.timeoutMs / 1000} s, retries ${i.config.healthcheck.retries}` : '-'}`,
        `stop signal:     ${i.config.stop_signal ?? 'SIGTERM'}`,
        `volumes:         ${i.config.volumes.length ? `${i.config.volumes.join(', ')} (keep their data with flick run -v NAME:PATH)` : '-'}`,
        `env:             ${i.config.env.join('\n                 ')}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
