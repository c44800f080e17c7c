// The flick CLI: parses argv with commander and hands each verb to its file in
// commands/. Errors become exit codes here and nowhere else.
import { Command, CommanderError } from 'commander';
import { describeError, isFlickError } from '../errors.js';
import { EXIT_SOFTWARE, EXIT_USAGE, exitCodeFor } from './exit-codes.js';
import { diskFullError, isDiskFull, LimitError } from '../limits/limits.js';
import { register as registerGuest } from './commands/guest.js';
import { register as registerBase } from './commands/base.js';
import { register as registerBuild } from './commands/build.js';
import { register as registerImages } from './commands/images.js';
import { register as registerInspect } from './commands/inspect.js';
import { register as registerPush } from './commands/push.js';
import { register as registerPull } from './commands/pull.js';
import { register as registerHost } from './commands/host.js';
import { register as registerHosts } from './commands/hosts.js';
import { register as registerRun } from './commands/run.js';
import { register as registerLs } from './commands/ls.js';
import { register as registerGet } from './commands/get.js';
import { register as registerLogs } from './commands/logs.js';
import { register as registerStart } from './commands/start.js';
import { register as registerStop } from './commands/stop.js';
import { register as registerRm } from './commands/rm.js';
import { register as registerServices } from './commands/services.js';
import { register as registerDeploy } from './commands/deploy.js';
import { register as registerConsole } from './commands/console.js';
import { register as registerVolume } from './commands/volume.js';
import { register as registerFork } from './commands/fork.js';

export function buildProgram(): Command {
  const program = new Command('flick')
    .description('Run apps from ordinary Dockerfiles as microVMs that start in milliseconds and cost nothing while idle.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // One line per verb; each verb's file owns its options and output.
  registerGuest(program);
  registerBase(program);
  registerBuild(program);
  registerImages(program);
  registerInspect(program);
  registerPush(program);
  registerPull(program);
  registerHost(program);
  registerHosts(program);
  registerRun(program);
  registerLs(program);
  registerGet(program);
  registerLogs(program);
  registerStart(program);
  registerStop(program);
  registerRm(program);
  registerServices(program);
  registerDeploy(program);
  registerConsole(program);
  registerVolume(program);
  registerFork(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    // A full disk, wherever it struck (buildah, packing, a download), gets one clear message (src/limits).
    if (isDiskFull(err) && !(err instanceof LimitError)) err = diskFullError(err, `flick ${argv.slice(2, 4).join(' ')}`);
    process.stderr.write(`flick: ${describeError(err)}\n`);
    if (!isFlickError(err) && process.env.FLICK_DEBUG) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    process.exitCode = isFlickError(err) ? exitCodeFor(err) : EXIT_SOFTWARE;
  }
}
