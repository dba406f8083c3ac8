import { loadKernels } from '../src/kernels/select.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { KvDecoder } from '../src/model/decode.js';

const base = loadKernels();
const times = new Map<string, number>();
const timed = new Proxy(base, {
  get(target, prop, recv) {
    const v = Reflect.get(target, prop, recv);
    if (typeof v !== 'function') return v;
    return (...args: unknown[]) => {
      const t0 = performance.now();
      const r = (v as (...a: unknown[]) => unknown).apply(target, args);
      const name = prop === "sgemm" ? `sgemm ${args[2]}x${args[3]}x${args[4]}` : String(prop);
      times.set(name, (times.get(name) ?? 0) + performance.now() - t0);
      return r;
    };
  },
}) as Kernels;
const cfg = makeConfig(presetShape('cpu-m'), 16, 784, 10);
const p = new ParameterTensors(cfg); initParameters(p, 1);
const B = Number(process.env.B ?? 16);
const dec = new KvDecoder(timed, p, B, 784, (process.env.KV ?? 'f32') as 'f32');
const tok = new Int32Array(B).fill(16);
const t0 = performance.now();
for (let t = 0; t < 784; t++) dec.feed(tok);
const total = performance.now() - t0;
let sum = 0;
for (const [k, v] of [...times].sort((a, b) => b[1] - a[1])) { sum += v; console.log(k.padEnd(30), (v / 1000).toFixed(3)); }
console.log('kernels', (sum / 1000).toFixed(3), 'total', (total / 1000).toFixed(3));
