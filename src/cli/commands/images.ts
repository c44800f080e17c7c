// `flick images [-o table|json]`: the microVM images built on this machine (the local OCI layout).
import type { Command } from 'commander';
import { formatMB, imageInfo } from '../../image/image-info.js';
import { OciLayout } from '../../image/oci-layout.js';
import { CliError } from '../cli-error.js';

export function register(program: Command): void {
  program
    .command('images')
    .description('list the microVM images built on this machine')
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (opts: { output: string }) => {
      if (opts.output !== 'table' && opts.output !== 'json') throw new CliError('USAGE', `-o ${opts.output}: use table or json`, { kind: 'user' });
      const layout = new OciLayout();
      const infos = await Promise.all((await layout.list()).map((img) => imageInfo(layout, img)));
      if (opts.output === 'json') {
        process.stdout.write(`${JSON.stringify(infos, null, 2)}\n`);
        return;
      }
      // SIZE is the whole image as pushed: every layer, the kernel and init included.
      const rows = [['NAME', 'DIGEST', 'SIZE', 'CONTAINER IMAGE', 'RATIO', 'MINIMIZED', 'CREATED']];
      for (const i of infos) {
        const ratio = i.source_image_bytes ? `${((100 * i.total_bytes) / i.source_image_bytes).toFixed(1)} %` : '-';
        rows.push([i.ref, i.digest.slice(7, 19), formatMB(i.total_bytes), formatMB(i.source_image_bytes), ratio, i.minimized ?? '-', i.created ?? '-']);
      }
      const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
      for (const r of rows) process.stdout.write(`${r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd()}\n`);
    });
}
