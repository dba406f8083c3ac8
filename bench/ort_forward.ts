/**
 * onnxruntime-node peer for bench/model.ts: the forward pass of the ONNX file that
 * bench/torch_igpt.py --mode export writes, on the CPU execution provider.
 *   node --import tsx bench/ort_forward.ts <model.onnx> [batch 32] [steps 3] [threads 2]
 * Prints one JSON line: {"peer", "ort", "median_s", "min_s", "peak_rss_mib"}.
 */
import { createRequire } from 'node:module';

type OrtTensor = object;
interface Ort {
  env: { versions?: { common?: string } };
  Tensor: new (type: string, data: BigInt64Array, dims: number[]) => OrtTensor;
  InferenceSession: { create(path: string, options: object): Promise<{ run(feeds: Record<string, OrtTensor>): Promise<unknown> }> };
}
// onnxruntime-node is an optional dependency: bench/model.ts checks that it resolves first.
const ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;

const [path, batchArg = '32', stepsArg = '3', threadsArg = '2'] = process.argv.slice(2);
if (!path) throw new Error('usage: ort_forward.ts <model.onnx> [batch] [steps] [threads]');
const B = Number(batchArg), steps = Number(stepsArg), T = 784, colors = 16;
const session = await ort.InferenceSession.create(path, {
  executionProviders: ['cpu'], intraOpNumThreads: Number(threadsArg), interOpNumThreads: 1, graphOptimizationLevel: 'all',
});
const ids = BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T === 0 ? colors : (i * 7919) % colors));
const feeds = { ids: new ort.Tensor('int64', ids, [B, T]) };
await session.run(feeds); // warm-up
const times: number[] = [];
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  await session.run(feeds);
  times.push((performance.now() - t0) / 1000);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({
  peer: 'onnxruntime-node', ort: ort.env.versions?.common ?? 'unknown', batch: B,
  median_s: +times[times.length >> 1]!.toFixed(4), min_s: +times[0]!.toFixed(4), steps,
  peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
}));
