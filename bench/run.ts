/**
 * `npm run bench`: every hot path against its peer or limit, written to BENCHMARKS.md.
 *   npm run bench                    all benchmarks (about 15 minutes on 2 cores)
 *   npm run bench -- --quick         fewer repetitions
 *   npm run bench -- --only model,probe
 *   npm run bench -- --step-json     only the reference training step: {"step_s": ..., "step_s_bf16": ...}
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { BenchResult } from './types.js';
import { repoRoot } from './util.js';

type Bench = { run(opts: { quick: boolean }): Promise<BenchResult[]> };

/** Each benchmark module and what it measures, in report order. */
const BENCHES: { name: string; about: string; load: () => Promise<Bench> }[] = [
  { name: 'kernels', about: 'GEMM and fused attention: native vs PyTorch', load: () => import('./kernels.js') },
  { name: 'portable', about: 'the portable (TypeScript/WebAssembly) kernels', load: () => import('./portable.js') },
  { name: 'model', about: 'training step, forward pass and sampling of the reference config vs PyTorch and onnxruntime', load: () => import('./model.js') },
  { name: 'palette', about: 'k-means palette fit and quantization vs scikit-learn', load: () => import('./palette.js') },
  { name: 'probe', about: 'L-BFGS linear probe vs scikit-learn LogisticRegression', load: () => import('./probe.js') },
  { name: 'io', about: 'checkpoint save/load vs torch.save/torch.load', load: () => import('./io.js') },
  { name: 'webgpu', about: 'WGSL GEMM on the adapter Node finds (on SwiftShader, the CPU: correctness only)', load: () => import('./webgpu.js') },
  { name: 'parallel', about: 'data parallelism on MPI: 2 ranks vs 1 process, all-reduce GB/s (also writes SCALING.md)', load: () => import('./parallel.js') },
];

const { values } = parseArgs({ options: {
  quick: { type: 'boolean', default: false }, only: { type: 'string' }, 'step-json': { type: 'boolean', default: false },
} });
process.env.IGPT_QUIET = '1';

if (values['step-json']) {
  const { trainStepSeconds, bf16Step } = await import('./model.js');
  const steps = values.quick ? 2 : 3;
  const line: Record<string, unknown> = { step_s: trainStepSeconds(steps), config: 'd256 L8 h8, 784 pixels, vocab 16+SOS, batch 8' };
  // Where bf16 products run: their step time, and its speedup over float32 alternating in one process.
  const bf16 = bf16Step('train', 8, steps);
  if (!('error' in bf16) && !('skipped' in bf16)) Object.assign(line, { step_s_bf16: bf16.bf16_median_s, bf16_speedup: bf16.speedup });
  console.log(JSON.stringify(line));
  process.exit(0);
}

const only = values.only?.split(',');
const sections: string[] = [];
for (const b of BENCHES) {
  if (only && !only.includes(b.name)) continue;
  process.stderr.write(`bench ${b.name}: ${b.about}\n`);
  const t0 = performance.now();
  let rows: BenchResult[];
  try {
    rows = await (await b.load()).run({ quick: values.quick });
  } catch (err) {
    rows = [{ name: `${b.name} failed`, value: NaN, unit: '', note: err instanceof Error ? err.message : String(err) }];
  }
  const seconds = (performance.now() - t0) / 1000;
  for (const r of rows) process.stderr.write(`  ${formatRow(r)}\n`);
  sections.push(`## ${b.name}: ${b.about}\n\n(${seconds.toFixed(0)} s)\n\n| measure | ours | peer | peer's | ratio | note |\n|---|---|---|---|---|---|\n` +
    rows.map((r) => `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.peer ?? ''} | ${r.peerValue !== undefined ? fmt(r.peerValue) + ' ' + r.unit : ''} | ${r.ratio !== undefined ? fmtRatio(r.ratio) + '×' : ''} | ${r.note ?? ''} |`).join('\n'));
}
const command = `npm run bench${process.argv.slice(2).length ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
const header = `# Benchmarks\n\nProduced by \`${command}\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}.\n` +
  'Peers run in the same invocation, so ratios hold even where absolute times are noisy (shared machine).\n' +
  'Ratios are stated so that > 1 favours igpt unless the note says otherwise.\n' +
  'This file is written whole by the bench; the analysis of its figures is in [BENCHMARK-ANALYSIS.md](BENCHMARK-ANALYSIS.md).\n\n';
writeFileSync(join(repoRoot, only ? `BENCHMARKS-${only.join('-')}.md` : 'BENCHMARKS.md'), header + sections.join('\n\n') + '\n');
process.stderr.write(`wrote ${only ? `BENCHMARKS-${only.join('-')}.md` : 'BENCHMARKS.md'}\n`);

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3);
}
/** Ratios to three significant digits: more would be noise on a shared machine. */
function fmtRatio(x: number): string {
  return Number.isFinite(x) ? String(+x.toPrecision(3)) : String(x);
}
function formatRow(r: BenchResult): string {
  return `${r.name}: ${fmt(r.value)} ${r.unit}${r.peer ? ` | ${r.peer}: ${r.peerValue !== undefined ? fmt(r.peerValue) : '?'}` : ''}${r.ratio !== undefined ? ` | ratio ${fmtRatio(r.ratio)}` : ''}${r.note ? ` (${r.note})` : ''}`;
}
