// `flick push IMAGE [--host URL]`: sends a built image from the local image
// layout (src/image/layout-path.ts) to a Flick host's registry. Blobs the host
// has are skipped; an interrupted push resumes where it stopped.
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { localImageLayoutDir } from '../../image/layout-path.js';
import { formatImageReference, parseImageReference } from '../../registry/names.js';
import { OciLayout } from '../../registry/oci-layout.js';
import { pushImage } from '../../registry/transfer.js';
import { resolveHostConfig } from '../host-config.js';
import { HostClient } from '../http-client.js';
import { progressReporter } from '../progress.js';
import { CliError } from '../cli-error.js';

/** Upload URLs of unfinished pushes (XDG state dir). */
export function uploadStateDir(): string {
  return path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'flick', 'uploads');
}

export function register(program: Command): void {
  program
    .command('push')
    .description("send a built image to the host's registry (skips what the host has, resumes an interrupted push)")
    .argument('<image>', 'name[:tag] of a built image')
    .option('--host <url>', 'flickd URL (default: FLICK_HOST or the host config)')
    .action(async (image: string, opts: { host?: string }) => {
      const ref = parseImageReference(image);
      if (!ref || ref.digest !== undefined || ref.tag === undefined) {
        throw new CliError('USAGE', `invalid image "${image}": use name[:tag] (lowercase name, e.g. myapp:latest)`, { kind: 'user' });
      }
      const refName = `${ref.name}:${ref.tag}`;
      const layout = new OciLayout(localImageLayoutDir());
      const source = await layout.find({ refName });
      if (!source) {
        throw new CliError('IMAGE_NOT_FOUND', `image "${refName}" not found in ${layout.dir}: build it with 'flick build -t ${refName} .'`, { kind: 'user' });
      }
      const client = new HostClient(resolveHostConfig(opts.host));
      const { digest } = await pushImage({
        client,
        layout,
        source,
        name: ref.name,
        tag: ref.tag,
        stateDir: uploadStateDir(),
        onEvent: progressReporter('pushed'),
      });
      process.stdout.write(`${formatImageReference({ name: ref.name, tag: ref.tag })}@${digest}\n`);
    });
}
