// `flick ls`: the instances on the host, one line each.
import { InvalidArgumentError, type Command } from 'commander';
import { MAX_PAGE } from '../../api/list-page.js';
import { INSTANCE_STATES } from '../../controller/states.js';
import { FlickApi, instanceUrl, type InstanceView } from '../api-client.js';
import { printJson, renderTable, stateText, wakesText, withOutputOption, type OutputFormat } from '../output.js';

export function register(program: Command): void {
  withOutputOption(
    program
      .command('ls')
      .alias('list')
      .description('list the instances on the host')
      .option('--limit <n>', 'at most N instances (a page; prints how to get the next one)', parseLimit)
      .option('--state <state>', `only instances in this state (${INSTANCE_STATES.join(', ')})`, parseState)
      .option('--after <id>', 'the page after this instance id (what the previous page printed)'),
  ).action(async (opts: { output: OutputFormat; limit?: number; state?: string; after?: string }) => {
    const api = FlickApi.fromEnvironment();
    let instances: InstanceView[];
    let next: string | null = null;
    if (opts.limit !== undefined || opts.state !== undefined || opts.after !== undefined) {
      const page = await api.listPage({ limit: opts.limit ?? MAX_PAGE, ...(opts.state ? { state: opts.state } : {}), ...(opts.after ? { after: opts.after } : {}) });
      instances = page.instances;
      next = page.next;
    } else {
      instances = await api.list();
    }
    if (opts.output === 'json') return printJson(instances);
    process.stdout.write(
      renderTable<InstanceView>(instances, [
        { header: 'NAME', value: (i) => i.name },
        { header: 'STATE', value: (i) => stateText(i) },
        // A HEALTH column only when some instance has a HEALTHCHECK.
        ...(instances.some((i) => i.health) ? [{ header: 'HEALTH', value: (i: InstanceView) => i.health?.status ?? '-' }] : []),
        { header: 'SERVICE', value: (i) => (typeof i.service_name === 'string' ? i.service_name : '-') },
        { header: 'IMAGE', value: (i) => i.image },
        { header: 'MEMORY', value: (i) => `${i.memory_mb}M` },
        { header: 'SCALE-TO-ZERO', value: (i) => (i.scale_to_zero.policy === 'off' ? 'off' : `${i.scale_to_zero.policy}${i.scale_to_zero.stateful ? ',stateful' : ''}`) },
        { header: 'WAKES', value: (i) => wakesText(i) },
        { header: 'URL', value: (i) => instanceUrl(i) ?? '-' },
      ]),
    );
    if (next !== null) process.stderr.write(`more: flick ls --limit ${opts.limit ?? MAX_PAGE}${opts.state ? ` --state ${opts.state}` : ''} --after ${next}\n`);
  });
}

function parseLimit(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw new InvalidArgumentError(`--limit must be a whole number from 1 to ${MAX_PAGE}`);
  return n;
}

function parseState(v: string): string {
  if (!(INSTANCE_STATES as readonly string[]).includes(v)) throw new InvalidArgumentError(`--state must be one of ${INSTANCE_STATES.join(', ')}`);
  return v;
}
