// `flick console [--open]`: prints (or opens in a browser) a sign-in link to the
// host's web console. The link carries a one-time code, valid for a minute,
// that the console exchanges for a session cookie: the token stays here.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { z } from 'zod';
import { FlickApi } from '../api-client.js';

const CodeSchema = z.object({ status: z.literal('success'), data: z.object({ code: z.string(), path: z.string(), expires_at: z.string() }) });

export function register(program: Command): void {
  program
    .command('console')
    .description('print a one-time sign-in link to the web console (valid for a minute)')
    .option('--open', 'open the link in the default browser (xdg-open)')
    .action(async (opts: { open?: boolean }) => {
      const api = FlickApi.fromEnvironment();
      const { data } = await api.host.json('POST', '/console/api/codes', CodeSchema);
      const link = `${api.host.url}${data.path}`;
      process.stdout.write(`${link}\n`);
      if (opts.open) spawn('xdg-open', [link], { stdio: 'ignore', detached: true }).on('error', () => process.stderr.write('flick: could not run xdg-open: open the link above by hand\n')).unref();
    });
}
