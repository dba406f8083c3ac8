/**
 * The layers point one way. Reads the import statements of src/ (static, `export … from` and
 * dynamic) and checks them against the allowed direction:
 *   cli → pipeline → eval, sample → train → io → model → kernels; data → palette; util, then
 *   parallel (the process's MPI world: who writes files) at the bottom
 * (a folder may import any folder listed as below it in ALLOWED). Also: no cycle between folders,
 * nothing outside src/cli (and no test or benchmark) imports src/cli.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

/** Every folder of src/ and the folders it may import from. */
const ALLOWED: Record<string, readonly string[]> = {
  cli: ['pipeline', 'eval', 'sample', 'train', 'io', 'model', 'kernels', 'data', 'palette', 'util', 'parallel'],
  pipeline: ['eval', 'sample', 'train', 'io', 'model', 'kernels', 'data', 'palette', 'util', 'parallel'],
  eval: ['train', 'io', 'model', 'kernels', 'data', 'palette', 'util', 'parallel'],
  sample: ['train', 'model', 'kernels', 'data', 'palette', 'util', 'parallel'],
  train: ['io', 'model', 'kernels', 'data', 'palette', 'util', 'parallel'],
  io: ['model', 'data', 'palette', 'util', 'parallel'],
  model: ['kernels', 'util', 'parallel'],
  kernels: ['util', 'parallel'],
  data: ['palette', 'util', 'parallel'],
  palette: ['util', 'parallel'],
  util: ['parallel'],
  parallel: [],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** The relative module paths a file imports (type-only imports count: they are dependencies too). */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]/gms, // import … from '…', export … from '…'
    /^\s*import\s+['"]([^'"]+)['"]/gm,                             // import '…' (side effects)
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,                         // import('…')
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1]);
  return found.filter((p) => p.startsWith('.'));
}

/** The src/ folder a path lies in ('index.ts' at the top: ''), or null outside src/. */
function folderOf(path: string): string | null {
  const rel = relative(SRC, path);
  if (rel.startsWith('..')) return null;
  return rel.includes(sep) ? rel.split(sep)[0] : '';
}

interface Edge { from: string; to: string; file: string }

function folderEdges(files: string[]): Edge[] {
  const edges: Edge[] = [];
  for (const file of files) {
    const from = folderOf(file);
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const to = folderOf(resolve(dirname(file), spec));
      if (from !== null && to !== null && from !== to && from !== '') edges.push({ from, to, file: relative(ROOT, file) });
    }
  }
  return edges;
}

/** A cycle among the folders as a list (first = last), or null. */
function findCycle(edges: Edge[]): string[] | null {
  const next = new Map<string, Set<string>>();
  for (const e of edges) next.set(e.from, (next.get(e.from) ?? new Set()).add(e.to));
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    if (state.get(node) === 'done') return null;
    state.set(node, 'open');
    path.push(node);
    for (const n of next.get(node) ?? []) {
      const cycle = visit(n);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of next.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

const srcEdges = folderEdges(tsFiles(SRC));

test('the import parser finds static, re-exported, type-only, multi-line and dynamic imports', () => {
  const source = [
    "import { a } from './a.js';", "import type { B } from '../b/b.js';", "export { c } from './c.js';",
    "import {\n  d,\n  e,\n} from '../d/d.js';", "const f = await import('../f/f.js');", "import 'node:fs';",
  ].join('\n');
  assert.deepEqual(importsOf(source).sort(), ['../b/b.js', '../d/d.js', '../f/f.js', './a.js', './c.js']);
  assert.ok(srcEdges.length > 50, `only ${srcEdges.length} imports between folders found: is the parser reading src/?`);
});

test('every folder of src/ has its place in the layers', () => {
  const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  assert.deepEqual(folders.filter((f) => !(f in ALLOWED)), [], 'a new folder needs its place in ALLOWED');
});

test('imports between src/ folders point one way (cli → pipeline → eval/sample → train → io → model → kernels)', () => {
  const wrong = srcEdges.filter((e) => !(ALLOWED[e.from] ?? []).includes(e.to));
  assert.deepEqual(wrong.map((e) => `${e.file}: ${e.from} → ${e.to}`), []);
});

test('no cycle between src/ folders', () => {
  assert.equal(findCycle(srcEdges)?.join(' → ') ?? null, null);
  assert.deepEqual(findCycle([{ from: 'a', to: 'b', file: '' }, { from: 'b', to: 'a', file: '' }]), ['a', 'b', 'a'], 'the cycle finder finds one');
});

test('only src/cli imports src/cli: no other folder, test or benchmark', () => {
  const outside = [...tsFiles(SRC).filter((f) => folderOf(f) !== 'cli'), ...tsFiles(join(ROOT, 'test')), ...tsFiles(join(ROOT, 'bench'))];
  const cli = join(SRC, 'cli');
  const offenders = outside.flatMap((file) => importsOf(readFileSync(file, 'utf8'))
    .filter((spec) => resolve(dirname(file), spec).startsWith(cli + sep))
    .map((spec) => `${relative(ROOT, file)} imports ${spec}`));
  assert.deepEqual(offenders, []);
});
