/**
 * Attention (flash-style): the T×T scores and probabilities are never stored. Layouts as in
 * Kernels.attentionForward: qkv [B, T, 3·H·hs], per row q then k then v, head h at h·hs.
 *
 * Forward: a workgroup per (batch·head, block of QUERIES queries), a thread per query holding its
 * query, running max, running sum and unnormalized output in registers. Keys and values stream
 * through workgroup memory KEYS at a time; per tile, each thread scores its query against the tile,
 * rescales what it has by exp(old max - new max) once, and adds the tile's weighted values (online
 * softmax). It writes the output and lse = max + log(sum) per query, all backward needs besides qkv.
 *
 * Backward, from lse: P = exp(scale·q·k - lse) is recomputed, and with D = rowsum(dO ∘ O),
 * dS = P·(dO·v - D). Two kernels, so that every output has one writer and no atomics are needed:
 * dQ (a thread per query, keys streamed; also writes D) and then dK, dV (a thread per key, queries
 * streamed with their dO, lse and D).
 *
 * hs and the tile sizes are compiled in (registers are arrays of hs floats); `attentionTiles`
 * picks tiles that fit the device's workgroup memory.
 */
import { REDUCE, REDUCE_BUILTINS, REDUCE_INIT } from './reductions.js';

/** Threads (queries or keys) per workgroup, and rows per tile staged in workgroup memory. */
export interface AttentionTiles { threads: number; tile: number }

/** Tiles for head size hs: two tiles of `tile` rows × hs floats must fit workgroup memory. */
export function attentionTiles(hs: number, workgroupBytes: number): AttentionTiles {
  let tile = 32;
  while (tile > 1 && 2 * tile * hs * 4 + 1024 > workgroupBytes) tile /= 2;
  if (2 * tile * hs * 4 + 1024 > workgroupBytes) {
    throw new Error(`igpt webgpu: attention with head size ${hs} does not fit ${workgroupBytes} bytes of workgroup memory`);
  }
  return { threads: 64, tile };
}

const PARAMS = /* wgsl */ `
struct Params { T: u32, H: u32, causal: u32, offQkv: u32, offOut: u32, offLse: u32, offDout: u32, offDqkv: u32, offDelta: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
`;

/**
 * The head of the kernels with a thread per query: tiles of KEYS keys and values in workgroup
 * memory, and `main` down to this thread's query q (b, h, qi; `live` when qi < T), whose values the
 * kernel's body fills.
 */
function queryThreadHead(hs: number, t: AttentionTiles): string {
  return /* wgsl */ `const HS = ${hs}u;
const QUERIES = ${t.threads}u;
const KEYS = ${t.tile}u;
var<workgroup> Ks: array<f32, ${t.tile * hs}>;
var<workgroup> Vs: array<f32, ${t.tile * hs}>;

@compute @workgroup_size(${t.threads})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let C = p.H * HS;
  let qi = wid.x * QUERIES + lid.x;
  let live = qi < p.T;
  let seq = p.offQkv + b * p.T * 3u * C;          // this sequence's qkv rows
  var q: array<f32, HS>;`;
}

/** Forward: out [B, T, H·hs] and lse [B, H, T]. */
export function attentionForwardWgsl(hs: number, t: AttentionTiles): string {
  return /* wgsl */ `
${PARAMS}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
${queryThreadHead(hs, t)}
  var o: array<f32, HS>;
  if (live) { for (var i = 0u; i < HS; i++) { q[i] = qkv[seq + qi * 3u * C + h * HS + i] * p.scale; } }
  var mx = -3.4e38;
  var sum = 0.0;
  // Keys the block needs: all, or up to its last query when causal (uniform across the workgroup).
  let keyEnd = select(p.T, min(p.T, (wid.x + 1u) * QUERIES), p.causal != 0u);
  let myEnd = select(p.T, qi + 1u, p.causal != 0u);
  for (var s0 = 0u; s0 < keyEnd; s0 += KEYS) {
    workgroupBarrier();
    for (var e = lid.x; e < KEYS * HS; e += QUERIES) {
      let s = s0 + e / HS;
      if (s < p.T) {
        let kRow = seq + s * 3u * C + h * HS + e % HS;
        Ks[e] = qkv[kRow + C];
        Vs[e] = qkv[kRow + 2u * C];
      }
    }
    workgroupBarrier();
    if (live && s0 < myEnd) {
      let n = min(KEYS, myEnd - s0);
      var scores: array<f32, KEYS>;
      var tileMax = mx;
      for (var j = 0u; j < n; j++) {
        var dot = 0.0;
        for (var i = 0u; i < HS; i++) { dot += q[i] * Ks[j * HS + i]; }
        scores[j] = dot;
        tileMax = max(tileMax, dot);
      }
      let rescale = exp(mx - tileMax);
      sum *= rescale;
      for (var i = 0u; i < HS; i++) { o[i] *= rescale; }
      for (var j = 0u; j < n; j++) {
        let w = exp(scores[j] - tileMax);
        sum += w;
        for (var i = 0u; i < HS; i++) { o[i] += w * Vs[j * HS + i]; }
      }
      mx = tileMax;
    }
  }
  if (live) {
    let outRow = p.offOut + (b * p.T + qi) * C + h * HS;
    for (var i = 0u; i < HS; i++) { out[outRow + i] = o[i] / sum; }
    lse[p.offLse + wid.y * p.T + qi] = mx + log(sum);
  }
}
`;
}

/**
 * Backward, first kernel: a thread per query. D = dO·O, then over the keys it sees
 * dq = scale · Σ_s P·(dO·v_s - D)·k_s. Writes the q part of dqkv and delta = D.
 */
export function attentionBackwardQueryWgsl(hs: number, t: AttentionTiles): string {
  return /* wgsl */ `
${PARAMS}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
${queryThreadHead(hs, t)}
  var dO: array<f32, HS>;
  var dq: array<f32, HS>;
  var D = 0.0;
  var L = 0.0;
  if (live) {
    let row = (b * p.T + qi) * C + h * HS;
    for (var i = 0u; i < HS; i++) {
      q[i] = qkv[seq + qi * 3u * C + h * HS + i] * p.scale;
      dO[i] = dout[p.offDout + row + i];
      D += dO[i] * out[p.offOut + row + i];
    }
    L = lse[p.offLse + wid.y * p.T + qi];
    delta[p.offDelta + wid.y * p.T + qi] = D;
  }
  let keyEnd = select(p.T, min(p.T, (wid.x + 1u) * QUERIES), p.causal != 0u);
  let myEnd = select(p.T, qi + 1u, p.causal != 0u);
  for (var s0 = 0u; s0 < keyEnd; s0 += KEYS) {
    workgroupBarrier();
    for (var e = lid.x; e < KEYS * HS; e += QUERIES) {
      let s = s0 + e / HS;
      if (s < p.T) {
        let kRow = seq + s * 3u * C + h * HS + e % HS;
        Ks[e] = qkv[kRow + C];
        Vs[e] = qkv[kRow + 2u * C];
      }
    }
    workgroupBarrier();
    if (live && s0 < myEnd) {
      let n = min(KEYS, myEnd - s0);
      for (var j = 0u; j < n; j++) {
        var qk = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < HS; i++) { qk += q[i] * Ks[j * HS + i]; dp += dO[i] * Vs[j * HS + i]; }
        let ds = exp(qk - L) * (dp - D);
        for (var i = 0u; i < HS; i++) { dq[i] += ds * Ks[j * HS + i]; }
      }
    }
  }
  if (live) {
    let dRow = p.offDqkv + (b * p.T + qi) * 3u * C + h * HS;
    for (var i = 0u; i < HS; i++) { dqkv[dRow + i] = dq[i] * p.scale; }
  }
}
`;
}

/**
 * Backward, second kernel: a thread per key s, over the queries that see it (t ≥ s when causal):
 * dv = Σ_t P·dO_t and dk = scale · Σ_t P·(dO_t·v - D_t)·q_t. Queries stream through workgroup
 * memory with their dO; their lse and D ride along. Writes the k and v parts of dqkv.
 */
export function attentionBackwardKeyWgsl(hs: number, t: AttentionTiles): string {
  return /* wgsl */ `
${PARAMS}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
const HS = ${hs}u;
const KEYS_PER_GROUP = ${t.threads}u;
const QUERIES = ${t.tile}u;
var<workgroup> Qs: array<f32, ${t.tile * hs}>;
var<workgroup> dOs: array<f32, ${t.tile * hs}>;
var<workgroup> Ls: array<f32, ${t.tile}>;
var<workgroup> Ds: array<f32, ${t.tile}>;

@compute @workgroup_size(${t.threads})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let C = p.H * HS;
  let si = wid.x * KEYS_PER_GROUP + lid.x;
  let live = si < p.T;
  let seq = p.offQkv + b * p.T * 3u * C;
  var k: array<f32, HS>;
  var v: array<f32, HS>;
  var dk: array<f32, HS>;
  var dv: array<f32, HS>;
  if (live) {
    for (var i = 0u; i < HS; i++) {
      k[i] = qkv[seq + si * 3u * C + C + h * HS + i];
      v[i] = qkv[seq + si * 3u * C + 2u * C + h * HS + i];
    }
  }
  // Queries that see some key of this block: from its first key when causal (uniform).
  let queryStart = select(0u, wid.x * KEYS_PER_GROUP, p.causal != 0u);
  for (var t0 = queryStart; t0 < p.T; t0 += QUERIES) {
    workgroupBarrier();
    for (var e = lid.x; e < QUERIES * HS; e += KEYS_PER_GROUP) {
      let t = t0 + e / HS;
      if (t < p.T) {
        Qs[e] = qkv[seq + t * 3u * C + h * HS + e % HS] * p.scale;
        dOs[e] = dout[p.offDout + (b * p.T + t) * C + h * HS + e % HS];
      }
    }
    for (var e = lid.x; e < QUERIES; e += KEYS_PER_GROUP) {
      if (t0 + e < p.T) {
        Ls[e] = lse[p.offLse + wid.y * p.T + t0 + e];
        Ds[e] = delta[p.offDelta + wid.y * p.T + t0 + e];
      }
    }
    workgroupBarrier();
    if (live) {
      let n = min(QUERIES, p.T - t0);
      for (var j = 0u; j < n; j++) {
        if (p.causal != 0u && t0 + j < si) { continue; }
        var qk = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < HS; i++) { qk += Qs[j * HS + i] * k[i]; dp += dOs[j * HS + i] * v[i]; }
        let prob = exp(qk - Ls[j]);
        let ds = prob * (dp - Ds[j]);
        for (var i = 0u; i < HS; i++) { dv[i] += prob * dOs[j * HS + i]; dk[i] += ds * Qs[j * HS + i]; }
      }
    }
  }
  if (live) {
    let dRow = p.offDqkv + (b * p.T + si) * 3u * C + h * HS;
    // Qs holds scale·q, so dk already carries the scale.
    for (var i = 0u; i < HS; i++) { dqkv[dRow + C + i] = dk[i]; dqkv[dRow + 2u * C + i] = dv[i]; }
  }
}
`;
}

/** Threads of the cached-attention kernel (a workgroup per (position, sequence, head)). */
export const DECODE_GROUP = 64;

/**
 * Cached causal attention for `n` consecutive positions t..t+n-1 of `count` sequences (Kernels.
 * attentionDecode when n = 1, attentionPrefill otherwise; caches [B, H, maxT, hs]). qkv and out
 * are position-major, row i·B + b. A workgroup per (position i, sequence b, head h), g = (i·count
 * + b)·H + h: it scores its query against keys 0..t+i (threads stride over positions, scores kept
 * in a [g, maxT] scratch buffer), takes the softmax with two reductions (written in by
 * withReductions, over DECODE_GROUP threads) and sums the values (threads over hs channels). With
 * STORE the workgroup first stores its own key and value (one position: nothing else writes the
 * cache); without, KV_CACHE_STORE has stored all n before.
 */
export const ATTENTION_CACHED = /* wgsl */ `
override STORE: u32 = 1u;
struct Params { H: u32, hs: u32, t: u32, maxT: u32, B: u32, count: u32,
                offOut: u32, offQkv: u32, offK: u32, offV: u32, offScores: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(4) var<storage, read_write> vCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
${REDUCE}
@compute @workgroup_size(${DECODE_GROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>${REDUCE_BUILTINS}) {
  ${REDUCE_INIT}
  let g = groupIndex(wid, nwg);
  let h = g % p.H;
  let b = (g / p.H) % p.count;
  let i = g / (p.H * p.count);
  let t = p.t + i;
  let C = p.H * p.hs;
  let row = i * p.B + b;
  let qRow = p.offQkv + row * 3u * C + h * p.hs;
  let cache = (b * p.H + h) * p.maxT * p.hs;
  if (STORE == 1u) {
    for (var c = lid.x; c < p.hs; c += WG) {
      kCache[p.offK + cache + t * p.hs + c] = qkv[qRow + C + c];
      vCache[p.offV + cache + t * p.hs + c] = qkv[qRow + 2u * C + c];
    }
    storageBarrier();
  }
  let sc = p.offScores + g * p.maxT;
  var mx = -3.4e38;
  for (var s = lid.x; s <= t; s += WG) {
    var dot = 0.0;
    for (var c = 0u; c < p.hs; c++) { dot += qkv[qRow + c] * kCache[p.offK + cache + s * p.hs + c]; }
    scores[sc + s] = dot * p.scale;
    mx = max(mx, dot * p.scale);
  }
  mx = workgroupMax(lid.x, mx);
  var sum = 0.0;
  for (var s = lid.x; s <= t; s += WG) {
    let w = exp(scores[sc + s] - mx);
    scores[sc + s] = w;
    sum += w;
  }
  sum = workgroupSum(lid.x, sum);
  storageBarrier();
  for (var c = lid.x; c < p.hs; c += WG) {
    var acc = 0.0;
    for (var s = 0u; s <= t; s++) { acc += scores[sc + s] * vCache[p.offV + cache + s * p.hs + c]; }
    out[p.offOut + row * C + h * p.hs + c] = acc / sum;
  }
}
`;
