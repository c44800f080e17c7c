// Small pure helpers: byte and time formatting, and the `flick run` command
// line equivalent to the run form (quoted for a POSIX shell).
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function ms(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  if (n < 10) return `${n.toFixed(1)} ms`;
  if (n < 10_000) return `${Math.round(n)} ms`;
  return `${(n / 1000).toFixed(1)} s`;
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '–';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A word as a POSIX shell reads it back unchanged. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface RunFields {
  image: string;
  name: string;
  port: string; // "8080" | "8080:80" | "" ; always http
  env: string; // one K=V per line
  memoryMb: string;
  vcpus: string;
  policy: '' | 'on' | 'idle' | 'off';
  cooldownMs: string;
  stateful: boolean;
  args: string; // one per line
  volumes: string; // one NAME:/path[:ro] per line
  replicas: string; // empty: one instance; N: a service of N
}

export const EMPTY_RUN: RunFields = { image: '', name: '', port: '', env: '', memoryMb: '', vcpus: '', policy: '', cooldownMs: '', stateful: false, args: '', volumes: '', replicas: '' };

const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);

/**
 * The request body POST /v1/instances gets. Fields are passed as typed (numbers
 * parsed loosely) so that the API, not the page, says what is wrong with them.
 */
export function runBody(f: RunFields): Record<string, unknown> {
  const body: Record<string, unknown> = { image: f.image.trim() };
  if (f.name.trim()) body.name = f.name.trim();
  const args = lines(f.args);
  if (args.length) body.args = args;
  const env = lines(f.env);
  if (env.length) body.env = Object.fromEntries(env.map((l) => (l.includes('=') ? [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] : [l, ''])));
  if (f.port.trim()) {
    const [port, guest] = f.port.trim().split(':');
    body.ports = [{ port: num(port ?? ''), guest_port: num(guest ?? port ?? ''), protocol: 'http' }];
  }
  const vols = lines(f.volumes);
  if (vols.length) {
    body.volumes = vols.map((l) => {
      const [name = '', path = '', mode] = l.split(':');
      return { name, path, ...(mode === 'ro' ? { read_only: true } : {}) };
    });
  }
  if (f.replicas.trim()) body.replicas = num(f.replicas);
  if (f.memoryMb.trim()) body.memory_mb = num(f.memoryMb);
  if (f.vcpus.trim()) body.vcpus = num(f.vcpus);
  if (f.policy || f.cooldownMs.trim() || f.stateful) {
    body.scale_to_zero = {
      ...(f.policy ? { policy: f.policy } : {}),
      ...(f.cooldownMs.trim() ? { cooldown_time_ms: num(f.cooldownMs) } : {}),
      ...(f.stateful ? { stateful: true } : {}),
    };
  }
  return body;
}

/** A number if the text is one, else the text itself (the API then names the field). */
function num(s: string): number | string {
  const t = s.trim();
  return t !== '' && Number.isFinite(Number(t)) ? Number(t) : t;
}

/** The `flick run` line that sends the same request. */
export function runCommand(f: RunFields): string {
  const w: string[] = ['flick', 'run'];
  if (f.name.trim()) w.push('--name', f.name.trim());
  if (f.replicas.trim()) w.push('--replicas', f.replicas.trim());
  if (f.port.trim()) w.push('-p', `${f.port.trim()}/http`);
  for (const e of lines(f.env)) w.push('-e', e);
  for (const v of lines(f.volumes)) w.push('-v', v);
  if (f.memoryMb.trim()) w.push('-m', `${f.memoryMb.trim()}M`);
  if (f.vcpus.trim()) w.push('--vcpus', f.vcpus.trim());
  const s2z = [f.policy ? `policy=${f.policy}` : '', f.cooldownMs.trim() ? `cooldown-time=${f.cooldownMs.trim()}` : '', f.stateful ? 'stateful=true' : ''].filter(Boolean);
  if (s2z.length) w.push('--scale-to-zero', s2z.join(','));
  w.push(f.image.trim() || 'IMAGE');
  w.push(...lines(f.args));
  return w.map(shellQuote).join(' ');
}
