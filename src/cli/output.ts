// How CLI verbs print: `-o table` (aligned columns, the default on a terminal
// and elsewhere) or `-o json` (the API's data, for scripts), and a spinner on
// stderr while waiting, drawn only on a terminal so logs and tests stay clean.
import { Option, type Command } from 'commander';

export type OutputFormat = 'table' | 'json';

/** Adds `-o, --output json|table` to a verb. */
export function withOutputOption(cmd: Command): Command {
  return cmd.addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'));
}

export function printJson(data: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(`${JSON.stringify(data, null, 2)}\n`);
}

export interface Column<T> {
  header: string;
  value: (row: T) => string;
}

/** Renders rows as aligned columns separated by two spaces (the last column is not padded). */
export function renderTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** Renders one object as "key: value" lines (nested objects inline as JSON). */
export function renderFields(fields: ReadonlyArray<[string, unknown]>): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${formatValue(v)}`).join('\n') + '\n';
}

function formatValue(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** A one-line spinner on stderr; silent unless stderr is a terminal. `stop` is safe to call twice. */
export class Spinner {
  readonly #out: NodeJS.WriteStream;
  #text: string;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;
  readonly #started = Date.now();

  constructor(text: string, out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#text = text;
    if (out.isTTY) {
      this.#timer = setInterval(() => this.#draw(), 80);
      this.#draw();
    }
  }

  set text(text: string) {
    this.#text = text;
  }

  #draw(): void {
    const secs = ((Date.now() - this.#started) / 1000).toFixed(1);
    this.#out.write(`\r${FRAMES[this.#frame++ % FRAMES.length]} ${this.#text} (${secs}s)\x1b[K`);
  }

  /** Clears the line (on a terminal) and prints `final` if given. */
  stop(final?: string): void {
    if (this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#out.write('\r\x1b[K');
    }
    if (final) this.#out.write(`${final}\n`);
  }
}

/** An instance's state as a person reads it: standby shows its tier (`standby (hot)`). */
export function stateText(i: { state: string; standby_tier?: unknown }): string {
  return i.state === 'standby' && typeof i.standby_tier === 'string' ? `standby (${i.standby_tier})` : i.state;
}

/** Wakes with their split by tier: `5 (hot 4, cold 1)`. */
/** The last wake's breakdown on one line: tier, each phase in order, the total. */
export function lastWakeText(w: { tier: string; duration_ms: number; at: string; phases_ms: Record<string, number> } | null | undefined): string | undefined {
  if (!w) return undefined;
  const ms = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
  const phases = Object.entries(w.phases_ms)
    .filter(([k]) => k !== 'total')
    .map(([k, v]) => `${k} ${ms(v)}`);
  const total = w.phases_ms.total !== undefined ? `, ${ms(w.phases_ms.total)} to the first byte` : '';
  return `${w.tier} at ${w.at}: ${ms(w.duration_ms)} in flickd${total}${phases.length ? ` (${phases.join(' · ')})` : ''}`;
}

export function wakesText(i: { wakes?: number | undefined; wakes_hot?: unknown; wakes_cold?: unknown }): string {
  const total = i.wakes ?? 0;
  if (total === 0 || typeof i.wakes_hot !== 'number' || typeof i.wakes_cold !== 'number') return String(total);
  return `${total} (hot ${i.wakes_hot}, cold ${i.wakes_cold})`;
}
