// Trims the ICU data an executable carries built in (node's full-icu: ~33 MB of
// its ~99 MB, ~8 MB of its compressed bytes) to the locales the app keeps: the
// blob behind the `icudt<N>_dat` symbol is an ICU common-data package, so icupkg
// (icu-devtools) rewrites it without the other locales' bundles, and the smaller
// package goes back in place, zero-padded (zeros compress to nothing). Nothing
// else moves, so the binary runs as before. What stays: root and the kept
// locales' bundles in every tree (formats, names, collation, currencies, units,
// time zones), and all locale-independent data (normalization, properties,
// break rules and dictionaries, converters, time-zone rules): `Intl` works for
// the kept locales and falls back to English (root) for the others, as node's
// own small-icu build does. Also dropped: what neither V8 nor node calls
// (transliterators, rule-based number spell-out, Unicode character names), 0.36
// MB of the compressed image; `--icu-locales all` keeps everything. Only executables are trimmed, never a shared
// libicudata another program (PostgreSQL's collations) may want whole.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isElf } from './elf.js';
import { run, runTool } from './exec.js';

/** The locales kept by default; `all` keeps the whole package. */
export const DEFAULT_ICU_LOCALES = ['en'];

/** A locale bundle's language ("de" for "coll/de_AT.res"), or undefined for locale-independent items. */
export function localeOfItem(item: string): string | undefined {
  const m = /^([a-z]{2,3})(?:_[A-Za-z0-9_]*)?\.res$/.exec(item.split('/').pop() ?? '');
  return m?.[1];
}

/** ICU services that neither V8's Intl nor node uses: transliteration, RBNF spell-out, character names (regex \\N{…}). */
export function unusedService(item: string): boolean {
  return /(^|\/)(translit|rbnf)\/|(^|\/)unames\.icu$/.test(item);
}

/** The languages an image's environment asks for (LANG, LC_ALL, LANGUAGE: "de_DE.UTF-8" → "de"). */
export function localesFromEnv(env: string[]): string[] {
  const out = new Set<string>();
  for (const e of env) {
    const m = /^(?:LANG|LC_ALL|LANGUAGE)=(.*)$/.exec(e);
    if (!m) continue;
    for (const part of m[1]!.split(':')) {
      const lang = /^([a-z]{2,3})(?:[_.@]|$)/.exec(part)?.[1];
      if (lang) out.add(lang);
    }
  }
  return [...out];
}

/** icu-devtools puts icupkg in /usr/sbin, which root's PATH has and others' may not. */
function hasIcupkg(): boolean {
  return [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin'].some((d) => d && fs.existsSync(path.join(d, 'icupkg')));
}

interface IcuBlob {
  /** Package name icupkg expects in the file name and items ("icudt78l"). */
  name: string;
  offset: number;
  size: number;
}

/** Finds the ICU data blob in an executable, through its dynamic symbol and the LOAD segment holding it. */
async function findBlob(file: string): Promise<IcuBlob | undefined> {
  const head = await fsp.readFile(file, { encoding: null, flag: 'r' }).then((b) => b.subarray(0, 20));
  // ET_EXEC or ET_DYN with an interpreter is an executable; shared libraries are left alone.
  if (!isElf(head)) return undefined;
  const headers = await runTool('readelf', ['-W', '-l', file]);
  if (headers.code !== 0 || !/Requesting program interpreter/.test(headers.stdout)) return undefined;
  const syms = await runTool('readelf', ['-W', '--dyn-syms', file]);
  const m = /^\s*\d+:\s+([0-9a-f]+)\s+(\S+)\s+OBJECT\s+\S+\s+\S+\s+\S+\s+(icudt(\d+)_dat)\s*$/m.exec(syms.stdout);
  if (!m) return undefined;
  const vaddr = Number.parseInt(m[1]!, 16);
  const size = Number(m[2]);
  for (const l of headers.stdout.split('\n')) {
    const p = l.trim().split(/\s+/);
    if (p[0] !== 'LOAD') continue;
    const [off, va, , filesz] = p.slice(1, 5).map((x) => Number.parseInt(x, 16));
    if (vaddr >= va! && vaddr + size <= va! + filesz!) return { name: `icudt${m[4]}l`, offset: vaddr - va! + off!, size };
  }
  return undefined;
}

export interface IcuTrim {
  file: string;
  beforeBytes: number;
  afterBytes: number;
}

/** Trims the ICU data of one executable in place; undefined if it carries none (or icupkg is missing). */
export async function trimIcu(file: string, locales: string[]): Promise<IcuTrim | undefined> {
  const blob = await findBlob(file);
  if (!blob) return undefined;
  const keep = new Set(locales);
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-icu-'));
  try {
    const input = path.join(work, `${blob.name}.dat`);
    const fd = await fsp.open(file, 'r+');
    try {
      const data = Buffer.alloc(blob.size);
      await fd.read(data, 0, blob.size, blob.offset);
      await fsp.writeFile(input, data);
      const list = await runTool('icupkg', ['-l', input]);
      if (list.code !== 0) return undefined;
      const drop = list.stdout.split('\n').map((l) => l.trim()).filter((i) => {
        const lang = localeOfItem(i);
        return (lang !== undefined && !keep.has(lang)) || unusedService(i);
      });
      if (drop.length === 0) return undefined;
      const dropList = path.join(work, 'drop.txt');
      await fsp.writeFile(dropList, `${drop.join('\n')}\n`);
      await fsp.mkdir(path.join(work, 'out'));
      const output = path.join(work, 'out', `${blob.name}.dat`);
      await run('icupkg', ['-r', dropList, input, output]);
      const trimmed = await fsp.readFile(output);
      if (trimmed.length > blob.size) return undefined;
      const padded = Buffer.concat([trimmed, Buffer.alloc(blob.size - trimmed.length)]);
      await fd.write(padded, 0, padded.length, blob.offset);
      return { file, beforeBytes: blob.size, afterBytes: trimmed.length };
    } finally {
      await fd.close();
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/** Trims every executable over 16 MB under `stage` that carries ICU data; `locales` ['all'] trims nothing. */
export async function trimIcuInTree(stage: string, locales: string[]): Promise<IcuTrim[]> {
  if (locales.includes('all') || !hasIcupkg()) return [];
  const out: IcuTrim[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && (await fsp.stat(p)).size > 16 << 20) {
        const t = await trimIcu(p, locales);
        if (t) out.push({ ...t, file: `/${path.relative(stage, p)}` });
      }
    }
  };
  await walk(stage);
  return out;
}
