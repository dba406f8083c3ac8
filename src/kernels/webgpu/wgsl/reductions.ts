/**
 * Kernels that reduce: along a row (norm, cross-entropy: one workgroup a row, its threads striding
 * over the row and meeting in a tree in workgroup memory), down columns (bias and gain gradients,
 * mean pooling, embedding gradients: one thread a column, looping over rows, so no two threads
 * ever add into the same element and no float atomics are needed).
 */
import { GROUP_INDEX } from '../runtime.js';

/** Threads of the row kernels; rows are d or V wide (hundreds to a few thousand). */
export const ROW_GROUP = 128;

/**
 * The reductions over a workgroup's threads (ROW_GROUP in the row kernels), workgroupSum and
 * workgroupMax (called from uniform control flow), are written in by `withReductions`: the kernels
 * hold three markers, for the helpers (REDUCE), extra builtins of `main` (REDUCE_BUILTINS, after
 * its last parameter) and its first statement (REDUCE_INIT).
 */
export const REDUCE = '/*reduce*/';
export const REDUCE_BUILTINS = '/*reduce-builtins*/';
export const REDUCE_INIT = '/*reduce-init*/';

/** Without subgroups: trees in workgroup memory, log2(ROW_GROUP) barriers each. */
const TREE_REDUCE = /* wgsl */ `
var<workgroup> scratch: array<f32, WG>;
fn workgroupSum(lid: u32, v: f32) -> f32 {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { scratch[lid] += scratch[lid + s]; }
    workgroupBarrier();
  }
  let total = scratch[0];
  workgroupBarrier(); // scratch is reused by the next reduction
  return total;
}
fn workgroupMax(lid: u32, v: f32) -> f32 {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { scratch[lid] = max(scratch[lid], scratch[lid + s]); }
    workgroupBarrier();
  }
  let total = scratch[0];
  workgroupBarrier();
  return total;
}`;

/**
 * With subgroups: each subgroup reduces its values in registers, one of its invocations writes the
 * result at the subgroup's index, and every thread combines the subgroups' results in index order
 * (two barriers; the same order every run, so the same floats).
 */
const SUBGROUP_REDUCE = /* wgsl */ `
var<workgroup> scratch: array<f32, WG>;
var<private> subgroup: u32;
var<private> subgroupCount: u32;
fn workgroupSum(lid: u32, v: f32) -> f32 {
  let s = subgroupAdd(v);
  if (subgroupElect()) { scratch[subgroup] = s; }
  workgroupBarrier();
  var total = scratch[0];
  for (var i = 1u; i < subgroupCount; i++) { total += scratch[i]; }
  workgroupBarrier(); // scratch is reused by the next reduction
  return total;
}
fn workgroupMax(lid: u32, v: f32) -> f32 {
  let s = subgroupMax(v);
  if (subgroupElect()) { scratch[subgroup] = s; }
  workgroupBarrier();
  var total = scratch[0];
  for (var i = 1u; i < subgroupCount; i++) { total = max(total, scratch[i]); }
  workgroupBarrier();
  return total;
}`;

/**
 * A kernel with its reductions written in, over its `group` threads (WG): over subgroups where
 * `subgroups`, else trees.
 */
export function withReductions(code: string, subgroups: boolean, group = ROW_GROUP): string {
  const helpers = `const WG = ${group}u;\n${subgroups ? SUBGROUP_REDUCE : TREE_REDUCE}\n${GROUP_INDEX}`;
  const filled = code.replace(REDUCE, helpers)
    .replace(REDUCE_BUILTINS, subgroups ? ', @builtin(subgroup_id) subgroupId: u32, @builtin(num_subgroups) subgroupsInGroup: u32' : '')
    .replace(REDUCE_INIT, subgroups ? 'subgroup = subgroupId; subgroupCount = subgroupsInGroup;' : '');
  return subgroups ? `enable subgroups;\n${filled}` : filled;
}

/** iGPT's gain-only norm, a row per workgroup: out = x · rsqrt(mean(x²) + eps) · g; keeps rstd. */
export const NORM_FORWARD = /* wgsl */ `
struct Params { rows: u32, d: u32, offOut: u32, offRstd: u32, offX: u32, offG: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
${REDUCE}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  let r = groupIndex(wid, nwg);
  if (r >= p.rows) { return; }
  let xRow = p.offX + r * p.d;
  var sumSq = 0.0;
  for (var c = lid.x; c < p.d; c += WG) { let v = x[xRow + c]; sumSq += v * v; }
  let rs = inverseSqrt(workgroupSum(lid.x, sumSq) / f32(p.d) + p.eps);
  for (var c = lid.x; c < p.d; c += WG) { out[p.offOut + r * p.d + c] = x[xRow + c] * rs * g[p.offG + c]; }
  if (lid.x == 0u) { rstd[p.offRstd + r] = rs; }
}
`;

/** The norm's input gradient, a row per workgroup: dx += rs·(dout·g - x·rs²·mean(dout·g·x)). */
export const NORM_BACKWARD_DX = /* wgsl */ `
struct Params { rows: u32, d: u32, offDx: u32, offDout: u32, offX: u32, offRstd: u32, offG: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
${REDUCE}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  let r = groupIndex(wid, nwg);
  if (r >= p.rows) { return; }
  let row = r * p.d;
  var dot = 0.0;
  for (var c = lid.x; c < p.d; c += WG) { dot += dout[p.offDout + row + c] * g[p.offG + c] * x[p.offX + row + c]; }
  let rs = rstd[p.offRstd + r];
  let coef = rs * rs * workgroupSum(lid.x, dot) / f32(p.d);
  for (var c = lid.x; c < p.d; c += WG) {
    dx[p.offDx + row + c] += rs * (dout[p.offDout + row + c] * g[p.offG + c] - x[p.offX + row + c] * coef);
  }
}
`;

/**
 * Softmax cross-entropy, a row per workgroup: loss = log Σ exp(l - max) + max - l[target]; with
 * WITH_GRAD, dlogits = (softmax - onehot)·scale. Ignored rows (target < 0) get zeros; a target
 * ≥ V gets a NaN loss, which the caller's check turns into an error.
 */
export const CROSS_ENTROPY = /* wgsl */ `
struct Params { rows: u32, V: u32, offLosses: u32, offDlogits: u32, offLogits: u32, offTargets: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
override WITH_GRAD: bool;
var<workgroup> rowLabel: i32;
${REDUCE}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  let r = groupIndex(wid, nwg);
  if (r >= p.rows) { return; }
  let row = p.offLogits + r * p.V;
  // Through workgroup memory, so that the branch below is uniform (the reductions have barriers).
  if (lid.x == 0u) { rowLabel = targets[p.offTargets + r]; }
  let label = workgroupUniformLoad(&rowLabel);
  if (label < 0 || u32(label) >= p.V) {
    var nanBits = 0x7fc00000u; // a var, so that the NaN is made at run time, not folded away
    if (lid.x == 0u) { losses[p.offLosses + r] = select(bitcast<f32>(nanBits), 0.0, label < 0); }
    if (WITH_GRAD) { for (var c = lid.x; c < p.V; c += WG) { dlogits[p.offDlogits + r * p.V + c] = 0.0; } }
    return;
  }
  var mx = -3.4e38;
  for (var c = lid.x; c < p.V; c += WG) { mx = max(mx, logits[row + c]); }
  mx = workgroupMax(lid.x, mx);
  var sum = 0.0;
  for (var c = lid.x; c < p.V; c += WG) { sum += exp(logits[row + c] - mx); }
  sum = workgroupSum(lid.x, sum);
  if (lid.x == 0u) { losses[p.offLosses + r] = log(sum) + mx - logits[row + u32(label)]; }
  if (WITH_GRAD) {
    for (var c = lid.x; c < p.V; c += WG) {
      let onehot = select(0.0, 1.0, c == u32(label));
      dlogits[p.offDlogits + r * p.V + c] = (exp(logits[row + c] - mx) / sum - onehot) * p.scale;
    }
  }
}
`;

/** total[0] += Σ losses over `rows`, one workgroup (the host reads one number per batch). */
export const SUM_INTO = /* wgsl */ `
struct Params { rows: u32, offTotal: u32, offLosses: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> total: array<f32>;
@group(0) @binding(2) var<storage, read> losses: array<f32>;
${REDUCE}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  var sum = 0.0;
  for (var r = lid.x; r < p.rows; r += WG) { sum += losses[p.offLosses + r]; }
  sum = workgroupSum(lid.x, sum);
  if (lid.x == 0u) { total[p.offTotal] += sum; }
}
`;

/**
 * partial[w] = Σ x[i]² over the elements workgroup w of `groups` strides over (i = w·WG + lane,
 * then every groups·WG): the first pass of sumOfSquares, SUM_INTO adds the partials.
 */
export const SQUARE_PARTIALS = /* wgsl */ `
struct Params { n: u32, groups: u32, offPartial: u32, offX: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${REDUCE}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  var sum = 0.0;
  for (var i = wid.x * WG + lid.x; i < p.n; i += p.groups * WG) { let v = x[p.offX + i]; sum += v * v; }
  sum = workgroupSum(lid.x, sum);
  if (lid.x == 0u) { partial[p.offPartial + wid.x] = sum; }
}
`;

/** Columns per workgroup of COLUMN_SUM (and the lanes that split its rows). */
export const COLUMN_GROUP = { columns: 64, lanes: 4 };

/**
 * out[j] += Σ_r a[r, j] (bias gradient), or with WEIGHTED out[j] += Σ_r a[r, j]·x[r, j]·rstd[r]
 * (the norm's gain gradient). A workgroup owns 64 columns of one slice of `sliceRows` rows; its 4
 * lanes take every 4th row and meet in workgroup memory. Coalesced: neighbouring threads read
 * neighbouring columns. With one slice (grid y = 1) it adds into out[j]; with PARTIALS, slice s
 * writes out[s·n + j], whose rows a second, plain dispatch adds: n/64 workgroups alone would leave
 * a large GPU idle (2 of them for d = 128).
 */
export const COLUMN_SUM = /* wgsl */ `
struct Params { rows: u32, n: u32, sliceRows: u32, offOut: u32, offA: u32, offX: u32, offRstd: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
override WEIGHTED: bool;
override PARTIALS: bool;
var<workgroup> lanes: array<array<f32, ${COLUMN_GROUP.columns}>, ${COLUMN_GROUP.lanes}>;
@compute @workgroup_size(${COLUMN_GROUP.columns}, ${COLUMN_GROUP.lanes})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let j = wid.x * ${COLUMN_GROUP.columns}u + lid.x;
  let first = wid.y * p.sliceRows;
  let end = min(p.rows, first + p.sliceRows);
  var sum = 0.0;
  if (j < p.n) {
    for (var r = first + lid.y; r < end; r += ${COLUMN_GROUP.lanes}u) {
      if (WEIGHTED) { sum += a[p.offA + r * p.n + j] * x[p.offX + r * p.n + j] * rstd[p.offRstd + r]; }
      else { sum += a[p.offA + r * p.n + j]; }
    }
  }
  lanes[lid.y][lid.x] = sum;
  workgroupBarrier();
  if (lid.y == 0u && j < p.n) {
    var total = 0.0;
    for (var l = 0u; l < ${COLUMN_GROUP.lanes}u; l++) { total += lanes[l][lid.x]; }
    if (PARTIALS) { out[p.offOut + wid.y * p.n + j] = total; } else { out[p.offOut + j] += total; }
  }
}
`;

/** pooled[b, c] = mean over t of x[b, t, c]: one thread per (b, c), looping over positions. */
export const MEAN_POOL_FORWARD = /* wgsl */ `
struct Params { count: u32, T: u32, d: u32, offPooled: u32, offX: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${GROUP_INDEX}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = groupIndex(wid, nwg) * 64u + lid.x;
  if (i >= p.count) { return; }
  let b = i / p.d;
  let c = i % p.d;
  var sum = 0.0;
  for (var t = 0u; t < p.T; t++) { sum += x[p.offX + (b * p.T + t) * p.d + c]; }
  pooled[p.offPooled + i] = sum / f32(p.T);
}
`;

/** dwpe[t, c] += Σ_b dout[b, t, c]: one thread per (t, c), looping over the batch. */
export const POSITION_EMBEDDING_BACKWARD = /* wgsl */ `
struct Params { count: u32, B: u32, T: u32, d: u32, offDwpe: u32, offDout: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
${GROUP_INDEX}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = groupIndex(wid, nwg) * 64u + lid.x;   // = t·d + c
  if (i >= p.count) { return; }
  var sum = 0.0;
  for (var b = 0u; b < p.B; b++) { sum += dout[p.offDout + b * p.T * p.d + i]; }
  dwpe[p.offDwpe + i] += sum;
}
`;

/** Token classes of TOKEN_EMBEDDING_BACKWARD: threads per column, each owning tokens ≡ g (mod G). */
export const TOKEN_CLASSES = 16;

/**
 * dwte[token, c] += dout[r, c] for every row r with that token (≥ 0). Rows sharing a token would
 * race if rows were the threads, so the threads are (token class g, column c): each walks all
 * rows and adds those whose token ≡ g (mod TOKEN_CLASSES), so every dwte element has one writer.
 */
export const TOKEN_EMBEDDING_BACKWARD = /* wgsl */ `
struct Params { rows: u32, d: u32, offDwte: u32, offDout: u32, offTokens: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> tokens: array<i32>;
${GROUP_INDEX}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = groupIndex(wid, nwg) * 64u + lid.x;   // = g·d + c
  if (i >= ${TOKEN_CLASSES}u * p.d) { return; }
  let g = i32(i / p.d);
  let c = i % p.d;
  for (var r = 0u; r < p.rows; r++) {
    let token = tokens[p.offTokens + r];
    if (token >= 0 && token % ${TOKEN_CLASSES} == g) {
      dwte[p.offDwte + u32(token) * p.d + c] += dout[p.offDout + r * p.d + c];
    }
  }
}
`;

/** The largest palette DRAW_PIXELS takes: a row of probabilities and its order live in workgroup memory. */
export const DRAW_MAX_PALETTE = 1024;

/**
 * Draws pixel t of each image from its logits as the host's samplePixel does, a workgroup per
 * image: greedy (temperature 0) takes the first largest logit; otherwise probabilities
 * exp((logit - max) / temperature) and, with top-k or top-p, their descending order (a thread
 * per entry counts the entries ahead of it, ties in index order: the host's stable sort), and a
 * walk down the kept ones with the image's uniform number × their total. The walks are serial
 * (one thread, V steps), as on the host, so the same uniforms pick the same ids up to rounding.
 * Writes tokens[b·n + t] (the image) and drawn[b] (what the next decoding step embeds).
 */
export const DRAW_PIXELS = /* wgsl */ `
struct Params { n: u32, t: u32, V: u32, topK: u32, offTokens: u32, offDrawn: u32, offLogits: u32, offUniforms: u32,
                temperature: f32, topP: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> tokens: array<i32>;
@group(0) @binding(2) var<storage, read_write> drawn: array<i32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> uniforms: array<f32>;
const WG = ${ROW_GROUP}u;
var<workgroup> probs: array<f32, ${DRAW_MAX_PALETTE}>;
var<workgroup> order: array<u32, ${DRAW_MAX_PALETTE}>;
var<workgroup> best: u32;
${GROUP_INDEX}
fn put(b: u32, id: u32) {
  tokens[p.offTokens + b * p.n + p.t] = i32(id);
  drawn[p.offDrawn + b] = i32(id);
}
@compute @workgroup_size(${ROW_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = groupIndex(wid, nwg);
  let row = p.offLogits + b * p.V;
  if (lid.x == 0u) {
    var i = 0u;
    for (var j = 1u; j < p.V; j++) { if (logits[row + j] > logits[row + i]) { i = j; } }
    best = i;
  }
  let top = workgroupUniformLoad(&best); // a barrier, and a value every thread agrees on
  if (p.temperature <= 0.0) {
    if (lid.x == 0u) { put(b, top); }
    return;
  }
  let mx = logits[row + top];
  for (var i = lid.x; i < p.V; i += WG) { probs[i] = exp((logits[row + i] - mx) / p.temperature); }
  workgroupBarrier();
  let u = uniforms[p.offUniforms + b];
  if ((p.topK == 0u || p.topK >= p.V) && p.topP >= 1.0) {
    if (lid.x == 0u) {
      var total = 0.0;
      for (var i = 0u; i < p.V; i++) { total += probs[i]; }
      var left = u * total;
      var pick = p.V - 1u;
      for (var i = 0u; i < p.V; i++) {
        left -= probs[i];
        if (left <= 0.0) { pick = i; break; }
      }
      put(b, pick);
    }
    return;
  }
  for (var i = lid.x; i < p.V; i += WG) {
    let q = probs[i];
    var ahead = 0u;
    for (var j = 0u; j < p.V; j++) {
      let r = probs[j];
      if (r > q || (r == q && j < i)) { ahead++; }
    }
    order[ahead] = i;
  }
  workgroupBarrier();
  if (lid.x == 0u) {
    var total = 0.0;
    for (var i = 0u; i < p.V; i++) { total += probs[i]; }
    var n = select(p.V, min(p.topK, p.V), p.topK > 0u);
    if (p.topP < 1.0) {
      var mass = 0.0;
      for (var i = 0u; i < n; i++) {
        mass += probs[order[i]] / total;
        if (mass >= p.topP) { n = i + 1u; break; }
      }
    }
    var kept = 0.0;
    for (var i = 0u; i < n; i++) { kept += probs[order[i]]; }
    var left = u * kept;
    var pick = order[n - 1u];
    for (var i = 0u; i < n; i++) {
      left -= probs[order[i]];
      if (left <= 0.0) { pick = order[i]; break; }
    }
    put(b, pick);
  }
}
`;
