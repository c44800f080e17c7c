// Frozen layers (<dataDir>/volumes/.layers/<id>.qcow2): which ones no volume's head reads through any
// more, as the heads' backing chains on disk say, and their removal.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { backingChain } from './disk-file.js';

/**
 * Removes the layers in `dir` no head reads through (after rm, a failed clone, or a crash mid-clone).
 * With `candidates` (the layers a removed head read through) only those may go, and the scan stops
 * once each is seen in use: with 1,000 branches of one layer, a rm reads a chain or two instead of
 * 1,000 (~8 ms each).
 */
export async function collectLayers(dir: string, heads: () => readonly string[], candidates?: ReadonlySet<string>): Promise<void> {
  const layers = candidates ? [...candidates].filter((l) => path.dirname(l) === dir && fs.existsSync(l)) : fs.readdirSync(dir).map((l) => path.join(dir, l));
  const unused = new Set(layers);
  if (unused.size === 0) return;
  for (const head of heads()) {
    // A head whose chain cannot be read might read through any layer: keep them all this time.
    const chain = await backingChain(head).catch(() => undefined);
    if (!chain) return;
    for (const f of chain) unused.delete(path.resolve(f));
    if (unused.size === 0) return;
  }
  for (const l of unused) await fsp.rm(l, { force: true });
}
