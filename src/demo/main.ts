// The main demo (`bash scripts/demo.sh`, after setup): a host up, the example
// node app built from its unchanged Dockerfile, pushed, run with scale to zero,
// a request through the proxy, standby (cold: the VM that booted ends), the
// wake and its latency, then standby again (hot: the restored VM stays paused)
// and that wake; the host is left running. Every step is the flick command a user would type, shown as it
// runs. A second run reuses the host and the build caches and replaces the
// instance.
import { describeError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';
import path from 'node:path';
import { bold, dim, flick, formatMs, getInstance, green, heading, request, show, urlFromRun, waitForState } from './steps.js';

const APP = path.join('examples', 'hello-node');
const IMAGE = 'hello-node:latest';
const NAME = 'hello';
const COOLDOWN = '3s';
/** flickd's default; FLICK_DEMO_PROXY=HOST:PORT picks another (a port taken on this host). */
const PROXY = process.env.FLICK_DEMO_PROXY ?? '127.0.0.1:7451';

async function main(): Promise<void> {
  process.chdir(PACKAGE_ROOT);
  process.stdout.write(`${bold('Flick demo')}: a Dockerfile in, a microVM out, scaled to zero and woken by a request.\n`);

  heading(1, 'Start the host daemon (registry, API, ingress proxy)');
  // The proxy's address said out loud: if the port is taken, flickd says so now, not at the first request.
  show((await flick(['host', 'up', '--proxy-listen', PROXY])).stdout);

  heading(2, `Build ${APP} from its unchanged Dockerfile`);
  // The Dockerfile says FROM node:20-slim: without Docker Hub a local base stands in, built here once, cached after.
  show((await flick(['base', 'build', '--node'], { progress: false })).stdout);
  await flick(['build', APP], { progress: true });

  heading(3, "Push it to the host's registry");
  show((await flick(['push', IMAGE])).stdout);

  heading(4, `Run it with scale to zero (standby after ${COOLDOWN} without requests)`);
  const existing = await getInstance(NAME).catch(() => undefined);
  if (existing) show((await flick(['rm', '-f', NAME])).stdout); // a second run replaces the instance
  const run = await flick(['run', '--name', NAME, '-p', '8080/http', '--scale-to-zero', `policy=on,cooldown-time=${COOLDOWN}`, IMAGE]);
  show(run.stdout);
  const url = urlFromRun(run.stdout);

  heading(5, 'A request through the proxy');
  process.stdout.write(`${dim(`$ curl ${url.href}`)}\n`);
  const first = await request(url);
  show(`${first.body.trim()}   ${dim(`(HTTP ${first.status}, first byte in ${formatMs(first.firstByteMs)}: the instance was running)`)}`);

  heading(6, 'Wait for standby: no requests, so the instance is put to sleep');
  const t0 = Date.now();
  const asleep = await waitForState(NAME, 'standby', 120_000);
  show(`standby after ${((Date.now() - t0) / 1000).toFixed(1)} s (${asleep.standby_tier ?? 'cold'} tier: ${asleep.standby_tier === 'hot' ? 'the VMM is paused, and its guest RAM goes back to its file soon' : 'no process at all, just a snapshot on disk'})`);
  show((await flick(['ls'])).stdout);

  heading(7, 'The next request wakes it');
  process.stdout.write(`${dim(`$ curl ${url.href}`)}\n`);
  const woken = await request(url);
  const warm = await request(url);
  const after = await getInstance(NAME);
  show(`${woken.body.trim()}   ${dim(`(HTTP ${woken.status})`)}`);
  show(green(`woke from ${asleep.standby_tier ?? 'cold'} standby and answered in ${formatMs(woken.firstByteMs)} (first byte, through the proxy); the next request took ${formatMs(warm.firstByteMs)}`));
  show(`wakes so far: ${after.wakes ?? '?'}; state now: ${after.state}`);

  heading(8, 'Idle again: this time the paused VM stays (hot standby)');
  // The VM that booted went cold at its first standby (under TCG it holds its boot's translations);
  // the restored one that serves from now on is kept paused, within the host's hot-standby budget.
  const again = await waitForState(NAME, 'standby', 120_000);
  show(`standby again (${again.standby_tier ?? 'cold'} tier${again.standby_tier === 'hot' ? ': the VMM is paused, its guest RAM goes back to its file but for what it used last' : ''})`);
  show((await flick(['ls'])).stdout);
  process.stdout.write(`${dim(`$ curl ${url.href}`)}\n`);
  const hot = await request(url);
  const hotAfter = await getInstance(NAME);
  show(`${hot.body.trim()}   ${dim(`(HTTP ${hot.status})`)}`);
  show(green(`woke from ${again.standby_tier ?? 'cold'} standby and answered in ${formatMs(hot.firstByteMs)} (first byte, through the proxy)`));
  show(`wakes so far: ${hotAfter.wakes ?? '?'} (hot ${hotAfter.wakes_hot ?? 0}, cold ${hotAfter.wakes_cold ?? 0}); state now: ${hotAfter.state}`);

  process.stdout.write(
    `\n${bold('Done.')} The host keeps running; the app sleeps when idle and wakes on the next request:\n` +
      `  curl ${url.href}          (or open it in a browser on this machine)\n` +
      `  flick ls / flick get ${NAME} / flick logs ${NAME}\n` +
      `To stop everything:  flick rm -f ${NAME} && flick host down\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`\ndemo: ${describeError(err)}\n`);
  process.exitCode = 1;
});
