import { loadKernels } from '../src/kernels/select.js';
const k = loadKernels();
const B = Number(process.env.B ?? 16), H = 8, hs = 32, maxT = 785, C = H * hs;
const out = new Float32Array(B * C), qkv = new Float32Array(B * 3 * C).map(() => Math.random() - 0.5);
for (const layers of [1, 8]) {
  for (const half of [false, true]) {
    const caches = Array.from({ length: layers }, () => half ? [new Uint16Array(B * C * maxT).fill(0x3c00), new Uint16Array(B * C * maxT).fill(0x3c00)] : [new Float32Array(B * C * maxT).fill(1), new Float32Array(B * C * maxT).fill(1)]);
    const t = 600;
    const reps = 200;
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) {
      const [kc, vc] = caches[r % layers]!;
      if (half) k.attentionDecodeHalf!(out, qkv, kc as Uint16Array, vc as Uint16Array, B, H, hs, t, maxT);
      else k.attentionDecode(out, qkv, kc as Float32Array, vc as Float32Array, B, H, hs, t, maxT);
    }
    const ms = (performance.now() - t0) / reps;
    const bytes = 2 * B * C * (t + 1) * (half ? 2 : 4);
    console.log(`layers ${layers} ${half ? 'f16' : 'f32'}: ${ms.toFixed(3)} ms/step, ${(bytes / ms / 1e6).toFixed(1)} GB/s`);
  }
}
