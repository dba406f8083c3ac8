/**
 * How far half-float decoding moves a model's predictions: 4 sequences decoded side by side in f32
 * (exact) and f16, fed the same pixels; prints the largest logit and probability differences.
 *   node --import tsx bench/f16_error.ts <model folder>
 */
import { loadModelFolder } from '../src/io/hf.js';
import { loadKernels } from '../src/kernels/select.js';
import { paletteSizeOf, sosTokenOf } from '../src/model/config.js';
import { KvDecoder } from '../src/model/decode.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node --import tsx bench/f16_error.ts <model folder>');
const kernels = loadKernels();
if (!kernels.attentionDecodeHalf) throw new Error('these kernels have no half floats');
const { config, params } = loadModelFolder(dir);
const B = 4, T = config.nPositions, V = paletteSizeOf(config);
const exact = new KvDecoder(kernels, params, B, T, 'f32'), half = new KvDecoder(kernels, params, B, T, 'f16');
const feed = new Int32Array(B).fill(sosTokenOf(config));

const softmax = (logits: Float32Array, at: number): number[] => {
  const row = Array.from(logits.subarray(at, at + V));
  const max = Math.max(...row);
  const e = row.map((x) => Math.exp(x - max));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / total);
};

let maxLogit = 0, maxLogitDiff = 0, maxProbDiff = 0;
for (let t = 0; t < T; t++) {
  const a = exact.feed(feed), b = half.feed(feed);
  for (let i = 0; i < B; i++) {
    const pa = softmax(a, i * V), pb = softmax(b, i * V);
    for (let v = 0; v < V; v++) {
      maxLogit = Math.max(maxLogit, Math.abs(a[i * V + v]));
      maxLogitDiff = Math.max(maxLogitDiff, Math.abs(a[i * V + v] - b[i * V + v]));
      maxProbDiff = Math.max(maxProbDiff, Math.abs(pa[v] - pb[v]));
    }
    // Feed the exact decoder's likeliest pixel to both: the same sequences, realistic contexts.
    feed[i] = pa.indexOf(Math.max(...pa));
  }
}
console.log(JSON.stringify({ model: dir, positions: T, maxAbsLogit: +maxLogit.toFixed(3),
                             maxLogitDiff: +maxLogitDiff.toExponential(2), maxProbabilityDiff: +maxProbDiff.toExponential(2) }));
