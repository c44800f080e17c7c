// The shape of the source tree, checked: no import cycle among src/'s
// TypeScript files (type-only imports count: a cycle of types is still two
// modules that cannot be understood apart), and the core's seams hold: the
// controller imports no concrete store, and neither it nor the proxy imports
// etcd, a transport (the API, the CLI, the daemon) or the cluster.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from './paths.js';

const SRC = path.join(PACKAGE_ROOT, 'src');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every `import … from './x.js'`, `import type …`, `export … from` and `import('./x.js')` of a file, as src/ paths. */
export function relativeImports(file: string, source: string): string[] {
  const specs = new Set<string>();
  const patterns = [/(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/g, /\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g];
  // Comments may quote imports (module headers do): drop them first.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  for (const re of patterns) for (const m of code.matchAll(re)) specs.add(m[1]!);
  return [...specs].map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of tsFiles(SRC)) g.set(f, relativeImports(f, fs.readFileSync(f, 'utf8')).filter((t) => fs.existsSync(t)));
  return g;
}

/** Strongly connected components with more than one file (or a file importing itself): Tarjan's algorithm. */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) !== idx.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.map((f) => path.relative(SRC, f)).sort());
  }
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

test('the import parser sees value, type-only, re-export and dynamic imports, not ones in comments', () => {
  const f = path.join(SRC, 'a', 'b.ts');
  const got = relativeImports(
    f,
    [
      "import fs from 'node:fs';",
      "import { x } from './x.js';",
      "import type { Y } from '../y.js';",
      'import {\n  z,\n  type W,\n} from "./z.js";',
      "export { q } from './q.js';",
      "export type { R } from './r.js';",
      "const m = await import('./m.js');",
      "// import { no } from './commented.js';",
      "/* import { no } from './block.js'; */",
    ].join('\n'),
  );
  assert.deepEqual(got.map((p) => path.relative(SRC, p)).sort(), ['a/m.ts', 'a/q.ts', 'a/r.ts', 'a/x.ts', 'a/z.ts', 'y.ts']);
});

test('a cycle is found when there is one', () => {
  const g = new Map([
    [path.join(SRC, 'a.ts'), [path.join(SRC, 'b.ts')]],
    [path.join(SRC, 'b.ts'), [path.join(SRC, 'c.ts')]],
    [path.join(SRC, 'c.ts'), [path.join(SRC, 'a.ts')]],
    [path.join(SRC, 'd.ts'), [path.join(SRC, 'a.ts')]],
  ]);
  assert.deepEqual(cycles(g), [['a.ts', 'b.ts', 'c.ts']]);
});

test('no import cycle among src/ TypeScript files (type-only imports included)', () => {
  const g = graph();
  assert.ok(g.size > 100, `read ${g.size} files`);
  assert.deepEqual(cycles(g), []);
});

test('the controller imports no concrete store, and the core (controller, proxy) no transport, etcd or cluster', () => {
  const forbidden: Array<[string, RegExp, string]> = [
    ['controller/', /^(store|cluster|api|cli|daemon|console)\//, 'the controller owns the state seam (controller/state/) and knows no store behind it, nor any transport'],
    ['proxy/', /^(store|cluster|api|cli|daemon|console|controller)\//, 'the proxy speaks only its own seams (Waker, RouteTable)'],
  ];
  const found: string[] = [];
  for (const [file, deps] of graph()) {
    const rel = path.relative(SRC, file);
    for (const [folder, bad, why] of forbidden) {
      if (!rel.startsWith(folder) || rel.endsWith('.test.ts') || rel.endsWith('testing.ts')) continue;
      for (const d of deps) if (bad.test(path.relative(SRC, d))) found.push(`${rel} imports ${path.relative(SRC, d)}: ${why}`);
    }
    // No module with etcd in its name (a client package, src/cluster's etcd-client), anywhere in the core.
    const etcd = /(?:\bfrom\s+|\bimport\s*\(\s*)['"][^'"]*etcd[^'"]*['"]/;
    if ((rel.startsWith('controller/') || rel.startsWith('proxy/')) && etcd.test(fs.readFileSync(file, 'utf8'))) found.push(`${rel} imports an etcd module`);
  }
  assert.deepEqual(found, []);
});

test('the cluster uses the controller only through its public surface and the state seam', () => {
  // The controller (its class and the types of its inputs and outputs), the create input and its
  // defaults, the route name of a host name, and the seam a state backend implements; tests may use
  // the seam's contract and test records as well.
  const surface = new Set(['controller.ts', 'spec.ts', 'routing.ts', 'state/instance-record.ts', 'state/state-store.ts', 'state/read-model.ts']);
  const forTests = new Set(['state/contract.ts', 'state/testing.ts']);
  const found: string[] = [];
  for (const [file, deps] of graph()) {
    const rel = path.relative(SRC, file);
    if (!rel.startsWith('cluster/')) continue;
    const test = rel.endsWith('.test.ts');
    for (const d of deps) {
      const dep = path.relative(path.join(SRC, 'controller'), d);
      if (dep.startsWith('..') || surface.has(dep) || (test && forTests.has(dep))) continue;
      found.push(`${rel} imports controller/${dep}: use the controller's public surface (controller.ts re-exports the types of its inputs and outputs)`);
    }
  }
  assert.deepEqual(found, []);
});
