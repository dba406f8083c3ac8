/**
 * Kernels with one thread per output element (no reuse to tile): 256 threads a workgroup over a
 * grid folded into two dimensions (groupIndex), each thread one element. Every tensor comes with
 * its element offset inside the bound window (`off*`).
 */
import { GROUP_INDEX } from '../runtime.js';

/**
 * The head of every kernel here: a thread per element, element i of p.count; what follows it is the
 * body of `main` for element i, closed by the kernel's own `}`.
 */
const ELEMENT_MAIN = /* wgsl */ `
${GROUP_INDEX}
fn elementIndex(lid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return groupIndex(wid, nwg) * 256u + lid.x; }
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = elementIndex(lid, wid, nwg);
  if (i >= p.count) { return; }`;

/** Threads per workgroup of every kernel in this file. */
export const ELEMENTWISE_GROUP = 256;

/** out[r, j] += bias[j] over `count` = rows·n elements. */
export const BIAS_FORWARD = /* wgsl */ `
struct Params { count: u32, n: u32, offOut: u32, offBias: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
${ELEMENT_MAIN}
  out[p.offOut + i] += bias[p.offBias + i % p.n];
}
`;

/** Quick GELU: the sigmoid of 1.702·x, written so that exp never overflows. */
const QUICK_GELU = /* wgsl */ `
fn sigmoid(z: f32) -> f32 {
  if (z >= 0.0) { return 1.0 / (1.0 + exp(-z)); }
  let e = exp(z);
  return e / (1.0 + e);
}
`;

/** out = x · sigmoid(1.702 x). */
export const GELU_FORWARD = /* wgsl */ `
struct Params { count: u32, offOut: u32, offX: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${QUICK_GELU}
${ELEMENT_MAIN}
  let v = x[p.offX + i];
  out[p.offOut + i] = v * sigmoid(1.702 * v);
}
`;

/**
 * dx = dout · (s + 1.702·x·s·(1 - s)), s = sigmoid(1.702 x). With IN_PLACE, dout is read from dx
 * itself (a buffer may not be bound writable and readable in one dispatch) and binding 2 is unused.
 */
export const GELU_BACKWARD = /* wgsl */ `
struct Params { count: u32, offDx: u32, offDout: u32, offX: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
override IN_PLACE: bool;
${QUICK_GELU}
${ELEMENT_MAIN}
  let v = x[p.offX + i];
  let s = sigmoid(1.702 * v);
  var g: f32;
  if (IN_PLACE) { g = dx[p.offDx + i]; } else { g = dout[p.offDout + i]; }
  dx[p.offDx + i] = g * (s + 1.702 * v * s * (1.0 - s));
}
`;

/**
 * One Adam step; c1, c2 are the bias corrections 1/(1 - β^t) computed on the host. Skipped when
 * gate (the gradient's sum of squares) is NaN or inf, tested on its bits: WGSL lets a compiler
 * assume floats are finite, so `x != x` may fold away.
 */
export const ADAM = /* wgsl */ `
struct Params {
  count: u32, offP: u32, offG: u32, offM: u32, offV: u32, offGate: u32,
  lr: f32, beta1: f32, beta2: f32, eps: f32, c1: f32, c2: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;
${ELEMENT_MAIN}
  if ((bitcast<u32>(gate[p.offGate]) & 0x7f800000u) == 0x7f800000u) { return; }
  let g = grads[p.offG + i];
  let mi = p.beta1 * m[p.offM + i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * v[p.offV + i] + (1.0 - p.beta2) * g * g;
  m[p.offM + i] = mi;
  v[p.offV + i] = vi;
  params[p.offP + i] -= p.lr * (mi * p.c1) / (sqrt(vi * p.c2) + p.eps);
}
`;

/**
 * h0[b, t, :] = wte[token] + wpe[t] over rows (b, t) starting at row0 of the sequence batch; a
 * token of -1 (BERT's mask) keeps the position embedding only. SOS is the vocabulary's last row
 * of wte like any other token.
 */
export const EMBEDDING_FORWARD = /* wgsl */ `
struct Params { count: u32, T: u32, d: u32, row0: u32, offOut: u32, offTokens: u32, offWte: u32, offWpe: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<i32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;
${ELEMENT_MAIN}
  let r = i / p.d;                   // row within this piece
  let c = i % p.d;
  let t = (p.row0 + r) % p.T;
  let token = tokens[p.offTokens + r];
  var h = wpe[p.offWpe + t * p.d + c];
  if (token >= 0) { h += wte[p.offWte + u32(token) * p.d + c]; }
  out[p.offOut + i] = h;
}
`;

/** dx[b, t, :] += dpooled[b, :] / T over `count` = B·T·d elements. */
export const MEAN_POOL_BACKWARD = /* wgsl */ `
struct Params { count: u32, T: u32, d: u32, offDx: u32, offDpooled: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dpooled: array<f32>;
${ELEMENT_MAIN}
  let b = i / (p.T * p.d);
  dx[p.offDx + i] += dpooled[p.offDpooled + b * p.d + i % p.d] / f32(p.T);
}
`;

/**
 * The keys and values of n positions t..t+n-1 of `count` sequences into the caches ([B, H, maxT,
 * hs]) before ATTENTION_CACHED attends over them: element i of count = n·count·C is channel c of
 * row (position, sequence) of qkv (position-major, row stride B).
 */
export const KV_CACHE_STORE = /* wgsl */ `
struct Params { count: u32, H: u32, hs: u32, t: u32, maxT: u32, B: u32, sequences: u32, offQkv: u32, offK: u32, offV: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(3) var<storage, read_write> vCache: array<f32>;
${ELEMENT_MAIN}
  let C = p.H * p.hs;
  let c = i % C;
  let b = (i / C) % p.sequences;
  let position = i / (C * p.sequences);
  let src = p.offQkv + (position * p.B + b) * 3u * C + c;
  let dst = ((b * p.H + c / p.hs) * p.maxT + p.t + position) * p.hs + c % p.hs;
  kCache[p.offK + dst] = qkv[src + C];
  vCache[p.offV + dst] = qkv[src + 2u * C];
}
`;

/**
 * Split-k's last step: C[r, c] = Σ_z pieces[z, r, c] (+ bias[c]) + beta·C[r, c] over `count` =
 * m·n elements, C with row stride ldc (see WebGpuKernels.gemmSplitK).
 */
export const SPLIT_K_SUM = /* wgsl */ `
override BIAS: u32 = 0u;
struct Params { count: u32, n: u32, ldc: u32, splits: u32, offC: u32, offPieces: u32, offBias: u32, beta: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read> pieces: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
${ELEMENT_MAIN}
  var sum = 0.0;
  for (var z = 0u; z < p.splits; z++) { sum += pieces[p.offPieces + z * p.count + i]; }
  if (BIAS == 1u) { sum += bias[p.offBias + i % p.n]; }
  let e = p.offC + (i / p.n) * p.ldc + i % p.n;
  if (p.beta == 0.0) { C[e] = sum; } else { C[e] = sum + p.beta * C[e]; }
}
`;
