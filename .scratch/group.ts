import { loadKernels } from '../src/kernels/select.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { sampleAutoregressive } from '../src/sample/sampler.js';
const k = loadKernels();
const cfg = makeConfig(presetShape('cpu-m'), 16, 784, 0);
const p = new ParameterTensors(cfg); initParameters(p, 0);
const o = { temperature: 1, topK: 0, topP: 1, seed: 1, precision: (process.env.KV ?? 'f16') as 'f16' };
for (let r = 0; r < 3; r++) {
  let t0 = performance.now();
  sampleAutoregressive(k, p, { count: 16, knownPixels: 0 }, o);
  const one = (performance.now() - t0) / 1000;
  t0 = performance.now();
  for (const g of [4, 4, 4, 4]) sampleAutoregressive(k, p, { count: g, knownPixels: 0 }, o);
  const four = (performance.now() - t0) / 1000;
  t0 = performance.now();
  sampleAutoregressive(k, p, { count: 8, knownPixels: 0 }, o); sampleAutoregressive(k, p, { count: 8, knownPixels: 0 }, o);
  const two = (performance.now() - t0) / 1000;
  console.log(`16 at once ${one.toFixed(2)} s, 2×8 ${two.toFixed(2)} s, 4×4 ${four.toFixed(2)} s`);
}
