// `flick pull IMAGE [--host URL]`: fetches an image from a Flick host's registry
// into the local image layout (src/image/layout-path.ts), skipping blobs already there.
import type { Command } from 'commander';
import { localImageLayoutDir } from '../../image/layout-path.js';
import { parseImageReference } from '../../registry/names.js';
import { OciLayout } from '../../registry/oci-layout.js';
import { pullImage } from '../../registry/transfer.js';
import { resolveHostConfig } from '../host-config.js';
import { HostClient } from '../http-client.js';
import { progressReporter } from '../progress.js';
import { CliError } from '../cli-error.js';

export function register(program: Command): void {
  program
    .command('pull')
    .description("fetch an image from the host's registry into the local image store")
    .argument('<image>', 'name[:tag] or name@sha256:…')
    .option('--host <url>', 'flickd URL (default: FLICK_HOST or the host config)')
    .action(async (image: string, opts: { host?: string }) => {
      const ref = parseImageReference(image);
      if (!ref) throw new CliError('USAGE', `invalid image "${image}": use name[:tag] or name@sha256:…`, { kind: 'user' });
      const reference = ref.digest ?? ref.tag ?? 'latest';
      // An image pulled by digest alone is named by its digest's first 12 hex digits.
      const refName = `${ref.name}:${ref.tag ?? ref.digest!.slice('sha256:'.length, 'sha256:'.length + 12)}`;
      const client = new HostClient(resolveHostConfig(opts.host));
      const { digest } = await pullImage({
        client,
        layout: new OciLayout(localImageLayoutDir()),
        name: ref.name,
        reference,
        refName,
        onEvent: progressReporter('pulled'),
      });
      process.stdout.write(`${refName}@${digest}\n`);
    });
}
