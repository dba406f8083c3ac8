/**
 * Data parallelism on MPI (`npm run bench -- --only parallel`): the reference training step as
 * 2 ranks × 1 thread against 1 process × 2 threads (same global batch), the all-reduce of the
 * reference model's gradients and of iGPT-S's (76 M floats) over shared memory and TCP loopback,
 * and from those figures SCALING.md: predicted efficiency at 8 and 64 nodes on 10 and 100 Gb/s.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { makeConfig, presetShape } from '../src/model/config.js';
import { parameterCount } from '../src/model/parameters.js';
import type { BenchResult } from './types.js';
import { isError, repoRoot, runJson } from './util.js';

interface StepJson { ranks: number; batch: number; step_s: number; allreduce_s: number; params: number }
interface ReduceJson { floats: number; ranks: number; seconds: number; gbPerSecond: number }

const MPIRUN = ['--allow-run-as-root', '--oversubscribe'];
const node = (script: string, ...args: string[]): string[] => [process.execPath, '--import', 'tsx', join('bench', script), ...args];

/** The training rate assumed for a GPU node in the projection (not measured here). */
const GPU_FLOPS = 200e12;

/** Training FLOP per image (forward + backward) of a GPT of width d, depth L, T positions. */
function flopPerImage(d: number, L: number, T: number): number {
  return 72 * d * d * L * T + 12 * T * T * d * L; // the block matmuls, and attention's QKᵀ and AV (full, not causal-halved)
}

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  if (spawnSync('mpirun', ['--version']).status !== 0) throw new Error('mpirun not found (apt-get install -y openmpi-bin libopenmpi-dev)');
  if (!existsSync(join(repoRoot, 'native-mpi/build/Release/igpt_mpi.node'))) throw new Error('the MPI binding is not built (npm rebuild)');
  const loadBefore = loadavg()[0]!;
  const steps = String(opts.quick ? 2 : 3);
  const single = runJson<StepJson>(node('data_parallel_step.ts', '--steps', steps)[0]!, node('data_parallel_step.ts', '--steps', steps).slice(1), { env: { IGPT_THREADS: '2' } });
  const dual = runJson<StepJson>('mpirun', [...MPIRUN, '-np', '2', ...node('data_parallel_step.ts', '--steps', steps)], { env: { IGPT_THREADS: '1' } });
  if (isError(single)) throw new Error(single.error);
  if (isError(dual)) throw new Error(dual.error);

  const igptS = parameterCount(makeConfig(presetShape('igpt-s'), 512, 1024, 0));
  const reduce = (floats: number, btl: string): ReduceJson => {
    const r = runJson<ReduceJson>('mpirun', [...MPIRUN, '--mca', 'btl', btl, '-np', '2', ...node('../test/fixtures/mpi-collectives.ts', '--bench', String(floats), opts.quick ? '2' : '4')]);
    if (isError(r)) throw new Error(r.error);
    return r;
  };
  const transports = [['shared memory (vader)', 'vader,self'], ['TCP loopback', 'tcp,self']] as const;
  const reductions = [{ what: 'cpu-m gradients', floats: single.params }, { what: 'iGPT-S gradients', floats: igptS }]
    .flatMap(({ what, floats }) => transports.map(([via, btl]) => ({ what, via, ...reduce(floats, btl) })));

  const rows: BenchResult[] = [
    { name: 'training step, 2 ranks × 1 thread (global batch 8)', value: dual.step_s, unit: 's', peer: '1 process × 2 threads', peerValue: single.step_s,
      ratio: single.step_s / dual.step_s, note: 'throughput ratio; target ≥ 0.9' },
    { name: 'its gradient all-reduce (6.5 M floats, shared memory)', value: dual.allreduce_s * 1000, unit: 'ms', note: `${(100 * dual.allreduce_s / dual.step_s).toFixed(2)}% of the step` },
    ...reductions.map((r) => ({ name: `all-reduce of ${r.what} (${(r.floats / 1e6).toFixed(1)} M floats), 2 ranks, ${r.via}`, value: r.gbPerSecond, unit: 'GB/s',
      note: `${(r.seconds * 1000).toFixed(1)} ms; GB/s = buffer bytes / time` })),
  ];
  const load = `${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end`;
  writeFileSync(join(repoRoot, 'SCALING.md'), scalingReport(single, dual, igptS, reductions, load));
  return rows;
}

/** SCALING.md: the measured figures and what they predict for clusters of such nodes. */
function scalingReport(single: StepJson, dual: StepJson, igptS: number, reductions: ({ what: string; via: string } & ReduceJson)[], load: string): string {
  const perImage = single.step_s / single.batch; // one node = this machine, all its cores
  const cpuM = presetShape('cpu-m'), s = presetShape('igpt-s');
  const models = [
    { name: 'cpu-m (784 px)', floats: single.params, flop: flopPerImage(cpuM.nEmbd, cpuM.nLayer, 784) },
    { name: 'iGPT-S (32×32)', floats: igptS, flop: flopPerImage(s.nEmbd, s.nLayer, 1024) },
  ];
  const cpuFlops = models[0]!.flop / perImage; // this node's measured training rate
  const lines: string[] = [];
  for (const m of models) {
    for (const gbits of [10, 100]) {
      for (const nodes of [8, 64]) {
        const ring = (2 * (nodes - 1) / nodes) * (4 * m.floats) / (gbits / 8 * 1e9);
        const cells = [cpuFlops, GPU_FLOPS].map((rate) => {
          const tImage = m.flop / rate;
          const perNode90 = Math.ceil(9 * ring / tImage);
          return `${(100 * (8 * tImage) / (8 * tImage + ring)).toFixed(1)}% | ${perNode90} | ${perNode90 * nodes}`;
        });
        lines.push(`| ${m.name} | ${nodes} | ${gbits} Gb/s | ${(ring * 1000).toFixed(0)} ms | ${cells.join(' | ')} |`);
      }
    }
  }
  const fmtReduce = reductions.map((r) => `| ${r.what} | ${(r.floats / 1e6).toFixed(1)} M | ${r.via} | ${(r.seconds * 1000).toFixed(1)} ms | ${r.gbPerSecond.toFixed(2)} GB/s |`).join('\n');
  return `# Scaling across machines (MPI data parallelism)

Produced by \`npm run bench -- --only parallel\` on ${new Date().toISOString().slice(0, 10)}. This 2-core machine is shared by
several people at once (load average ${load}): every figure below is noisy, and collectives
suffer most, since two ranks progress only while both are scheduled. On a quiet machine the
reference step takes about 2.5 s (BENCHMARKS.md).

## Measured here (2 cores)

| measure | value |
|---|---|
| reference step (cpu-m, global batch 8), 1 process × 2 threads | ${single.step_s.toFixed(2)} s |
| the same, 2 ranks × 1 thread (batch 4 each + gradient all-reduce) | ${dual.step_s.toFixed(2)} s (throughput ${(single.step_s / dual.step_s).toFixed(3)}× the single process; target ≥ 0.9) |
| its gradient all-reduce (${(dual.params / 1e6).toFixed(2)} M floats, shared memory) | ${(dual.allreduce_s * 1000).toFixed(1)} ms (${(100 * dual.allreduce_s / dual.step_s).toFixed(2)}% of the step) |

| all-reduce of | floats | transport (2 ranks) | time | GB/s (buffer bytes / time) |
|---|---|---|---|---|
${fmtReduce}

The all-reduce rates are lower bounds: the ranks busy-poll, and on a loaded machine each waits
while the other is descheduled. One all-reduce of the flat gradient buffer after backward is what
the trainer does: at ${(100 * dual.allreduce_s / dual.step_s).toFixed(1)}% of a step here, overlapping buckets with the backward pass would
save little.

## Predicted for clusters of such nodes

A ring all-reduce moves 2(N−1)/N · bytes through each node's link, so it costs
2(N−1)/N · 4 · parameters / bandwidth (latency terms, 2(N−1) messages of some µs, are left out; at
these sizes the bytes dominate). The trainer does not overlap it with backward, so the efficiency
at b images per node is b · t_image / (b · t_image + t_allreduce). Two kinds of node: this one, at
the rate measured above (${(cpuFlops / 1e9).toFixed(0)} GFLOP/s of training work, loaded: t_image = ${perImage.toFixed(3)} s for cpu-m), and a GPU
node assumed to sustain ${GPU_FLOPS / 1e12} TFLOP/s (not measured: an H100-class GPU at a good
utilization). t_image scales with training FLOP per image (iGPT-S at 1024 positions:
${(models[1]!.flop / models[0]!.flop).toFixed(1)}× cpu-m's). Links are taken at their nominal rate; TCP over real Ethernet reaches
70–90% of it.

| model | nodes | network | all-reduce | 2-core node: efficiency at 8 images/node | its images/node for ≥ 90% | its global batch for ≥ 90% | GPU node: efficiency at 8 images/node | its images/node for ≥ 90% | its global batch for ≥ 90% |
|---|---|---|---|---|---|---|---|---|---|
${lines.join('\n')}

On nodes like this one the network never matters: a step's compute dwarfs the all-reduce even at
one image per node. A node k times faster shrinks t_image k-fold and needs k times the images per
node for the same efficiency; on GPU nodes the gradient all-reduce is the bottleneck unless the
per-node batch is large, the network is 100 Gb/s, or the all-reduce is overlapped with the backward
pass (buckets sent as their layers finish: not implemented, since on CPU nodes it cannot pay).
`;
}
