import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeConfig } from '../src/model/config.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { createNativeKernels, nativeAvailable, nativeCacheBytes } from '../src/kernels/native.js';
import { createPortableKernels } from '../src/kernels/portable.js';
import { KvDecoder, type KvCachePrecision } from '../src/model/decode.js';
import { computeLogits } from '../src/model/model.js';
import { initParameters, ParameterTensors } from '../src/model/parameters.js';
import { decodeGroupFor, sampleAutoregressive, sampleBert, samplePixel } from '../src/sample/sampler.js';
import { Rng } from '../src/util/rng.js';
import { availableBackends } from './backends.js';
import { relativeError } from './relative-error.js';

const cfg = makeConfig({ nEmbd: 16, nLayer: 2, nHead: 2 }, 5, 12, 0);

function randomParameters(seed: number): ParameterTensors {
  const p = new ParameterTensors(cfg);
  initParameters(p, seed);
  const rng = new Rng(seed + 1);
  for (let i = 0; i < p.data.length; i++) p.data[i] += rng.normal() * 0.3;
  return p;
}

/** Feeds random sequences through a KvDecoder and compares every position's logits with the full forward pass. */
function decoderAgainstFullForward(kernels: Kernels, precision: KvCachePrecision) {
  const params = randomParameters(1);
  const B = 3, T = cfg.nPositions, V = cfg.vocabSize - 1;
  const rng = new Rng(2);
  const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? V : rng.int(V)));
  const full = computeLogits(kernels, params, inputs, B, T);
  const decoder = new KvDecoder(kernels, params, B, T, precision);
  const feed = new Int32Array(B);
  let maxDiff = 0, maxRef = 0;
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) feed[b] = inputs[b * T + t];
    const logits = decoder.feed(feed);
    for (let b = 0; b < B; b++) {
      for (let v = 0; v < V; v++) {
        const ref = full[(b * T + t) * V + v];
        maxDiff = Math.max(maxDiff, Math.abs(logits[b * V + v] - ref));
        maxRef = Math.max(maxRef, Math.abs(ref));
      }
    }
  }
  return { maxDiff, maxRef, decoder, feed };
}

for (const { name, kernels } of availableBackends()) {
  test(`${name}: the KV-cache decoder gives the full forward's logits at every position`, () => {
    const { maxDiff, maxRef, decoder, feed } = decoderAgainstFullForward(kernels, 'f32');
    assert.equal(decoder.precision, 'f32');
    assert.ok(maxDiff <= 1e-5 * maxRef, `max |diff| ${maxDiff} vs max |logit| ${maxRef}`);
    assert.throws(() => decoder.feed(feed), /full/);
  });

  // Half floats exist only where the CPU converts them (native on x86 with F16C).
  if (kernels.attentionDecodeHalf) test(`${name}: the half-float decoder stays within half-float rounding of the full forward`, () => {
    const { maxDiff, maxRef, decoder } = decoderAgainstFullForward(kernels, 'f16');
    assert.equal(decoder.precision, 'f16');
    // Weights and cached keys/values rounded to 11 significant bits (relative 2^-11 each).
    assert.ok(maxDiff <= 5e-3 * maxRef, `max |diff| ${maxDiff} vs max |logit| ${maxRef}`);
    assert.ok(maxDiff > 1e-7 * maxRef, 'the half-float decoder computed exactly what the float one does: halves unused?');
  });

  for (const precision of ['f32', ...(kernels.attentionDecodeHalf ? ['f16' as const] : [])] as KvCachePrecision[]) {
    test(`${name}: prefill (${precision}) leaves the caches and logits of feeding one position at a time, across chunks`, () => {
      // 144 positions: a prefill of 100 crosses the 64-position chunk boundary.
      const long = makeConfig({ nEmbd: 16, nLayer: 2, nHead: 2 }, 5, 144, 0);
      const params = new ParameterTensors(long);
      initParameters(params, 4);
      const rng = new Rng(5);
      for (let i = 0; i < params.data.length; i++) params.data[i] += rng.normal() * 0.3;
      const B = 2, T = long.nPositions, V = 5, P = 100;
      const inputs = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? V : rng.int(V)));
      const column = (t: number): Int32Array => Int32Array.from({ length: B }, (_, b) => inputs[b * T + t]);
      const stepped = new KvDecoder(kernels, params, B, T, precision);
      const steppedLogits: Float32Array[] = [];
      for (let t = 0; t < T; t++) steppedLogits.push(stepped.feed(column(t)).slice());
      const prefilled = new KvDecoder(kernels, params, B, T, precision);
      const positionMajor = new Int32Array(P * B);
      for (let t = 0; t < P; t++) positionMajor.set(column(t), t * B);
      const compare = (logits: Float32Array, t: number) => {
        const err = relativeError(logits, steppedLogits[t]);
        assert.ok(err < 1e-5, `position ${t}: prefilled logits differ by ${err.toExponential(2)}`);
      };
      compare(prefilled.prefill(positionMajor, P), P - 1);
      assert.equal(prefilled.position, P);
      for (let t = P; t < T; t++) compare(prefilled.feed(column(t)), t); // the caches hold the prefilled keys and values
      assert.throws(() => prefilled.prefill(positionMajor, 1), /cannot prefill 1 positions: the decoder has 0 left/);
    });
  }

  test(`${name}: sampling keeps the given rows, is greedy at temperature 0 and follows the seed, across decoding groups`, async () => {
    const params = randomParameters(3);
    const n = cfg.nPositions;
    // Groups of 8 on every backend (for a model this small, each backend's own choice is one group).
    const group = 8;
    const grouped: Kernels = { ...kernels, decodeGroup: () => group };
    const count = group + 3; // two groups, the second one partial
    const prefix = Int32Array.from({ length: count * n }, (_, i) => (i * 7 + (i >> 3)) % 5);
    prefix.copyWithin(group * n, 0, n); // the first image of each group starts alike
    const req = { count, prefix, knownPixels: 4 };
    const a = await sampleAutoregressive(grouped, params, req, { temperature: 1, topK: 0, topP: 1, seed: 7 });
    const b = await sampleAutoregressive(grouped, params, req, { temperature: 1, topK: 0, topP: 1, seed: 7 });
    assert.deepEqual(a, b);
    for (let img = 0; img < count; img++) for (let t = 0; t < 4; t++) assert.equal(a[img * n + t], prefix[img * n + t]);
    // A random stream per image: a group does not repeat another one's draws.
    assert.notDeepEqual(a.subarray(0, n), a.subarray(group * n, (group + 1) * n));
    // … and the images do not depend on how the set is cut: other decode groups, or the set sampled
    // in two pieces (as MPI ranks do, each saying where its piece starts), give the same images.
    const o7 = { temperature: 1, topK: 0, topP: 1, seed: 7 };
    assert.deepEqual(await sampleAutoregressive({ ...kernels, decodeGroup: () => 3 }, params, req, o7), a);
    const cut = 5;
    const head = await sampleAutoregressive(grouped, params, { count: cut, prefix: prefix.subarray(0, cut * n), knownPixels: 4 }, o7);
    const tailReq = { count: count - cut, prefix: prefix.subarray(cut * n), knownPixels: 4 };
    const tail = await sampleAutoregressive(grouped, params, { ...tailReq, firstImage: cut }, o7);
    assert.deepEqual(Int32Array.from([...head, ...tail]), a);
    assert.notDeepEqual(await sampleAutoregressive(grouped, params, tailReq, o7), tail, 'the piece\'s first image index chose nothing');
    const g1 = await sampleAutoregressive(grouped, params, req, { temperature: 0, topK: 0, topP: 1, seed: 1 });
    const g2 = await sampleAutoregressive(grouped, params, req, { temperature: 0, topK: 0, topP: 1, seed: 2 });
    assert.deepEqual(g1, g2);
    // Greedy means each sampled pixel is the argmax of the full forward's logits.
    const inputs = new Int32Array(count * n);
    for (let img = 0; img < count; img++) {
      inputs[img * n] = 5;
      for (let t = 1; t < n; t++) inputs[img * n + t] = g1[img * n + t - 1];
    }
    const logits = computeLogits(kernels, params, inputs, count, n);
    for (let i = 0; i < count * n; i++) {
      if (i % n < 4) continue;
      let best = 0;
      for (let v = 1; v < 5; v++) if (logits[i * 5 + v] > logits[i * 5 + best]) best = v;
      assert.equal(g1[i], best, `pixel ${i}`);
    }
    const c = await sampleAutoregressive(grouped, params, req, { temperature: 1, topK: 0, topP: 1, seed: 8 });
    assert.notDeepEqual(a, c);
    // The hidden pixels of the prefix must not reach the samples: other hidden content, same samples.
    const otherHidden = prefix.map((v, i) => (i % n < 4 ? v : (v + 1 + (i % 3)) % 5));
    assert.deepEqual(await sampleAutoregressive(grouped, params, { ...req, prefix: otherHidden }, { temperature: 1, topK: 0, topP: 1, seed: 7 }), a);
  });

  test(`${name}: BERT in-filling keeps known pixels and fills every unknown one`, async () => {
    const params = randomParameters(4);
    const n = cfg.nPositions;
    const tokens = Int32Array.from({ length: n }, (_, i) => i % 5);
    const known = Uint8Array.from({ length: n }, (_, i) => (i < n / 2 ? 1 : 0));
    const fill = (input: Int32Array): Promise<Int32Array> => sampleBert(kernels, params, input, known, 1,
      { temperature: 1, topK: 0, topP: 1, seed: 1, passes: 3, order: 'confident' });
    const out = await fill(tokens);
    for (let i = 0; i < n; i++) {
      assert.ok(out[i] >= 0 && out[i] < 5);
      if (known[i]) assert.equal(out[i], tokens[i]);
    }
    // The hidden pixels of the input must not reach the output: other hidden content, same output
    // (an in-filler that returned its input, or read the pixels it was to guess, fails here).
    const otherHidden = tokens.map((v, i) => (known[i] ? v : (v + 1 + (i % 3)) % 5));
    assert.deepEqual(await fill(otherHidden), out);
    assert.notDeepEqual(out, otherHidden);
    // Three images filled together, or the last two as a piece starting at image 1 (an MPI rank's share): the same.
    const o = { temperature: 1, topK: 0, topP: 1, seed: 1, passes: 3, order: 'random' as const };
    const three = Int32Array.from({ length: 3 * n }, (_, i) => (i * 3 + 1) % 5);
    const known3 = Uint8Array.from({ length: 3 * n }, (_, i) => (i % n < n / 2 ? 1 : 0));
    const whole = await sampleBert(kernels, params, three, known3, 3, o);
    const piece = await sampleBert(kernels, params, three.subarray(n), known3.subarray(n), 2, o, 1);
    assert.deepEqual(piece, whole.subarray(n));
    assert.notDeepEqual(await sampleBert(kernels, params, three.subarray(n), known3.subarray(n), 2, o), piece, 'the piece\'s first image index chose nothing');
  });
}

test('samplePixel honours top-k and top-p', () => {
  const logits = Float32Array.from([0, 3, 2.5, -1, 1]);
  const rng = new Rng(1);
  const probs = new Float64Array(5), order = new Int32Array(5);
  const seen = new Set<number>();
  for (let i = 0; i < 400; i++) seen.add(samplePixel(logits, 0, 5, { temperature: 1, topK: 2, topP: 1, seed: 0 }, rng, probs, order));
  assert.deepEqual([...seen].sort(), [1, 2]);
  seen.clear();
  for (let i = 0; i < 400; i++) seen.add(samplePixel(logits, 0, 5, { temperature: 1, topK: 0, topP: 0.5, seed: 0 }, rng, probs, order));
  assert.deepEqual([...seen], [1]);
  seen.clear();
  for (let i = 0; i < 2000; i++) seen.add(samplePixel(logits, 0, 5, { temperature: 1, topK: 0, topP: 1, seed: 0 }, rng, probs, order));
  assert.equal(seen.size, 5);
});

test('the native decode group fills the reported cache: fewer images as each needs more bytes, at least one', { skip: !nativeAvailable() && 'the native addon is not built' }, () => {
  const native = createNativeKernels();
  const big = makeConfig({ nEmbd: 256, nLayer: 8, nHead: 8 }, 16, 784, 0);
  const f16 = decodeGroupFor(native, big, 'f16'), f32 = decodeGroupFor(native, big, 'f32');
  assert.ok(f16 >= 1 && f32 >= 1 && Number.isInteger(f16) && Number.isInteger(f32));
  assert.ok(f16 >= f32, `f16 caches take half the bytes: group ${f16} should be at least f32's ${f32}`);
  const cache = nativeCacheBytes();
  if (cache > 0) {
    assert.equal(native.decodeGroup(cache / 4, 0), 4, 'four images of a quarter of the cache each');
    assert.equal(native.decodeGroup(cache / 4, cache / 2), 2, 'two beside weights of half the cache');
    assert.equal(native.decodeGroup(1e15, 0), 1, 'an image larger than the cache is decoded alone');
  } else {
    assert.equal(native.decodeGroup(1e6, 0), 8, 'no cache size reported: the measured default');
  }
  assert.equal(createPortableKernels().decodeGroup(1e15, 0), Infinity, 'the portable kernels decode all images at once');
});
