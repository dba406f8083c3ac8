/**
 * The reference training step (cpu-m: d 256, 8 layers, 8 heads; 784 pixels, 16 colors + SOS;
 * global batch 8) through the real Trainer, in one process or as one rank of `mpirun -np N`.
 * Prints one JSON line from rank 0: median seconds per step, and the median time of the
 * gradient all-reduce alone (timed separately, after the steps, on the same buffer).
 *   node --import tsx bench/data_parallel_step.ts [--steps 3]
 *   mpirun -np 2 node --import tsx bench/data_parallel_step.ts [--steps 3]
 */
import { parseArgs } from 'node:util';
import { loadKernels } from '../src/kernels/select.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { ImageGPT } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { world } from '../src/parallel/world.js';
import { Trainer } from '../src/train/trainer.js';
import { median, randomTokenDataset, timingOptions } from './util.js';

const { values: a } = parseArgs({ options: { steps: { type: 'string', default: '3' }, batch: { type: 'string', default: '8' } } });
const comm = world();
const steps = Number(a.steps), batch = Number(a.batch);
const side = 28, T = side * side, k = 16;
const data = randomTokenDataset(side, k, 64);
const config = makeConfig(presetShape('cpu-m'), k, T, 0);
const params = new ParameterTensors(config);
initParameters(params, 0);
const model = new ImageGPT(loadKernels(), config, params);
const trainer = new Trainer(model, data, timingOptions(batch, steps + 1, 1e-4), comm);
await trainer.step(); // warm-up: buffers, thread pool, MPI connections
const times: number[] = [];
trainer.onReport = (r) => times.push(r.seconds);
for (let s = 0; s < steps; s++) await trainer.step();
await trainer.settle();
const reduce: number[] = [];
for (let s = 0; s < 3; s++) {
  comm.barrier();
  const t0 = performance.now();
  comm.allReduce(model.grads.data);
  reduce.push((performance.now() - t0) / 1000);
}
if (comm.rank === 0) {
  process.stdout.write(JSON.stringify({
    ranks: comm.size, threads: Number(process.env.IGPT_THREADS ?? 0) || undefined, batch, step_s: median(times),
    allreduce_s: comm.size > 1 ? median(reduce) : 0, params: params.count,
  }) + '\n');
}
