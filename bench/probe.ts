/**
 * Linear-probe benchmark: our L-BFGS multinomial logistic regression against scikit-learn's
 * LogisticRegression(solver='lbfgs') on the same features — raw Fashion-MNIST pixels, 10k train /
 * 10k test, the same L2 (sklearn C = 1 / (l2 · N)), the same tolerance and iteration cap.
 * Reports test accuracy of both (target: within 0.3 points) and fit time (target: not slower).
 *
 *   node --import tsx bench/probe.ts [--quick]
 * (IGPT_KERNELS=portable|native picks the default backend.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_FASHION_MNIST_DIR } from '../src/data/datasets.js';
import { readIdxImageSet } from '../src/data/idx.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { loadKernels } from '../src/kernels/select.js';
import { pixelFeatures } from '../src/eval/lowdata.js';
import { accuracy, trainLogisticRegression } from '../src/eval/logistic.js';
import type { BenchResult } from './types.js';
import { isError, python, repoRoot, runJson } from './util.js';

interface SklearnJson { accuracy: number; fitSeconds: number; iterations: number }

const L2 = 1e-2;
const TOL = 1e-4;
const MAX_ITER = 500;

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const nTrain = opts.quick ? 2000 : 10000;
  const nTest = opts.quick ? 2000 : 10000;
  const dir = DEFAULT_FASHION_MNIST_DIR;
  const trainSet = readIdxImageSet(join(dir, 'train-images-idx3-ubyte.gz'), join(dir, 'train-labels-idx1-ubyte.gz'));
  const testSet = readIdxImageSet(join(dir, 't10k-images-idx3-ubyte.gz'), join(dir, 't10k-labels-idx1-ubyte.gz'));
  const dim = trainSet.height * trainSet.width;
  const trainX = pixelFeatures(trainSet.pixels, nTrain, dim);
  const trainY = trainSet.labels.slice(0, nTrain);
  const testX = pixelFeatures(testSet.pixels, nTest, dim);
  const testY = testSet.labels.slice(0, nTest);
  const C = 1 / (L2 * nTrain);
  const setup = `Fashion-MNIST raw pixels, ${nTrain} train / ${nTest} test, l2 ${L2} (sklearn C ${C}), tol ${TOL}`;

  const results: BenchResult[] = [];
  // The default backend (native when built), the portable one, and — quick runs only, they are
  // slow — the kernel-free loops.
  const kernels = loadKernels();
  const variants: { label: string; kernels: Kernels | undefined }[] = [{ label: `${kernels.name} kernels`, kernels }];
  if (kernels.name !== 'portable') variants.push({ label: 'portable kernels', kernels: createPortableKernels() });
  if (opts.quick) variants.push({ label: 'no kernels', kernels: undefined });

  const tmp = mkdtempSync(join(tmpdir(), 'igpt-probe-bench-'));
  let peer: SklearnJson | { error: string };
  try {
    const file = (name: string, data: Float32Array | Int32Array) => {
      const path = join(tmp, name);
      writeFileSync(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return path;
    };
    peer = runJson<SklearnJson>(python, [join(repoRoot, 'bench', 'sklearn_probe.py'),
      '--train-x', file('train_x.f32', trainX), '--train-y', file('train_y.i32', trainY),
      '--test-x', file('test_x.f32', testX), '--test-y', file('test_y.i32', testY),
      '--dim', String(dim), '--C', String(C), '--max-iter', String(MAX_ITER), '--tol', String(TOL)]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const sk = isError(peer) ? null : peer;
  const peerFailure = isError(peer) ? peer.error : '';

  for (const v of variants) {
    const t0 = performance.now();
    const model = trainLogisticRegression(trainX, trainY, nTrain, dim, 10, { l2: L2, tol: TOL, maxIter: MAX_ITER, kernels: v.kernels });
    const seconds = (performance.now() - t0) / 1000;
    const acc = 100 * accuracy(model, testX, testY, v.kernels);
    const perIter = (s: number, it: number) => `${(1000 * s / Math.max(1, it)).toFixed(1)} ms/iteration`;
    const note = `${setup}; ours ${model.iterations} iterations (${model.stop}, ${perIter(seconds, model.iterations)})` +
      (sk ? `, sklearn ${sk.iterations} (${perIter(sk.fitSeconds, sk.iterations)})` : `; sklearn failed: ${peerFailure}`);
    results.push({
      name: `probe fit time (${v.label})`, value: seconds, unit: 's',
      ...(sk ? { peer: 'scikit-learn 1.2 lbfgs', peerValue: sk.fitSeconds, ratio: sk.fitSeconds / seconds } : {}),
      // The time ratio is partly algorithmic: the two stop after different iteration counts.
      note: `${note}; ratio > 1: we are faster; partly algorithmic (different iteration counts): compare the time per iteration`,
    });
    results.push({
      name: `probe test accuracy (${v.label})`, value: acc, unit: '%',
      ...(sk ? { peer: 'scikit-learn 1.2 lbfgs', peerValue: 100 * sk.accuracy, ratio: acc / (100 * sk.accuracy) } : {}),
      note: sk ? `difference ${(acc - 100 * sk.accuracy).toFixed(2)} points (target |diff| <= 0.3)` : note,
    });
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run({ quick: process.argv.includes('--quick') });
  for (const r of results) console.log(JSON.stringify(r));
}
