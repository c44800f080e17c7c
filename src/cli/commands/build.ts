// `flick build [-f Dockerfile] [-t NAME[:TAG]] [--build-arg K=V]... [--no-minimize] CONTEXT`:
// an unchanged Dockerfile in, a specialized microVM image in the local layout out.
// Progress goes to stderr; the image reference goes to stdout.
import type { Command } from 'commander';
import { buildImage } from '../../image/build.js';
import { defaultTraceRunner } from '../../image/trace-runner.js';
import { CliError } from '../cli-error.js';

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** 10^6 bytes, the unit the image-size goal is stated in. */
function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export function register(program: Command): void {
  program
    .command('build')
    .description('build a microVM image from a Dockerfile (daemonless, with buildah)')
    .argument('<context>', 'the build context folder')
    .option('-f, --file <Dockerfile>', 'the Dockerfile (default: CONTEXT/Dockerfile)')
    .option('-t, --tag <name[:tag]>', 'name the image (default: the context folder name, tag latest)')
    .option('--build-arg <K=V>', 'set a build-time ARG (repeatable)', collect, [])
    .option('--no-minimize', 'keep the whole root filesystem instead of only what the app uses')
    .option('--creds <user:password>', "credentials for the registry FROM pulls from (flickd accepts flick:<token>)")
    .option('--icu-locales <list>', "locales the built-in ICU data of an executable (node) keeps: comma-separated, or 'all' (default: en and the image's LANG)")
    .option('--allow-unready', 'build even if the app exits during the traced run (keeps the full root filesystem)')
    .action(async (context: string, opts: { file?: string; tag?: string; buildArg: string[]; minimize: boolean; creds?: string; allowUnready?: boolean; icuLocales?: string }) => {
      const buildArgs = new Map<string, string>();
      for (const kv of opts.buildArg) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new CliError('USAGE', `--build-arg ${kv}: expected KEY=VALUE`, { kind: 'user' });
        buildArgs.set(kv.slice(0, i), kv.slice(i + 1));
      }
      // Ctrl-C stops the build at its next step and removes its scratch files and buildah image; a second one exits at once.
      const abort = new AbortController();
      const onSignal = () => {
        if (abort.signal.aborted) process.exit(130);
        process.stderr.write('stopping the build (press Ctrl-C again to exit at once)\n');
        abort.abort(new CliError('INTERRUPTED', 'build interrupted', { kind: 'user' }));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const tracer = opts.minimize ? await defaultTraceRunner((l) => process.stderr.write(`${l}\n`)) : undefined;
      const r = await buildImage({
        context,
        buildArgs,
        minimize: opts.minimize,
        ...(opts.file ? { dockerfile: opts.file } : {}),
        ...(opts.tag ? { tag: opts.tag } : {}),
        ...(tracer ? { tracer } : {}),
        ...(opts.creds ? { creds: opts.creds } : {}),
        ...(opts.allowUnready ? { allowUnready: true } : {}),
        ...(opts.icuLocales ? { icuLocales: opts.icuLocales.split(',').map((l) => l.trim()).filter(Boolean) } : {}),
        signal: abort.signal,
        progress: (l) => process.stderr.write(`${l}\n`),
      });
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const ratio = (100 * r.totalBytes) / r.sourceImageBytes;
      const how = { traced: 'minimized (closure + traced run)', closure: 'minimized (closure only)', full: 'full root filesystem', 'full-fallback': 'full root filesystem (see above why minimization fell back)' }[r.minimization];
      process.stderr.write(
        `built ${r.ref} in ${r.seconds.toFixed(1)} s: container image ${mb(r.sourceImageBytes)}, microVM image ${mb(r.totalBytes)} ` +
          `(${ratio.toFixed(1)} % of the container image; every layer as pushed, the kernel and init included), ${how}\n`,
      );
      process.stdout.write(`${r.ref}\n`);
    });
}
