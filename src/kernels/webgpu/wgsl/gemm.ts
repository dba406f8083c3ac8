/**
 * C = alpha·op(A)·op(B) + beta·C, row-major, batched (workgroup z = matrix index), in the layouts
 * the model uses: NN (linear forward), NT (head forward, dx of a linear), TN (weight gradients).
 * The layout is a uniform: it only steers how a slice is staged, outside the inner loop, and one
 * pipeline for all layouts compiles once (shader compilation dominates on a software adapter).
 *
 * Tiling: a workgroup of 16×16 threads computes a TILE×TILE tile of C, TILE = 64·BLOCKS. Each
 * thread holds BLOCKS×BLOCKS blocks of 4×4 (rows 64·i + 4·ty…, columns 64·j + 4·tx…) in vec4
 * accumulators. K advances SLICE at a time (TILE·SLICE = 1024: 16 at TILE 64, 8 at TILE 128): the
 * workgroup stages the TILE×SLICE slice of A and the SLICE×TILE slice of B in workgroup memory,
 * both k-major, so the inner loop reads a block's 4 rows of A and 4 columns of B as one vec4 each,
 * neighbouring threads neighbouring vec4s (16·BLOCKS² FMAs per 2·BLOCKS shared reads: the 128
 * tile does twice the arithmetic per read, for large products). Each thread stages one run of 4
 * consecutive elements along each matrix's contiguous axis: one vec4 load where every offset and
 * stride is a multiple of 4 (the VEC4 variant), else four scalar loads masked at the edges.
 */

/** Tile widths of the tiled GEMM: 64 (a 4×4 block a thread) for most products, 128 (2×2 blocks) for large ones. */
export type GemmTile = 64 | 128;

/**
 * What both GEMM kernels take: the parameters (the same for every kernel, so one dispatch fills
 * them alike), A, B and C as arrays of `a` and `bc` elements, and the bias of the 4 columns from
 * col (`valid` of them inside C), added in the store: with the override BIAS = 1 the product is
 * C = alpha·A·B + bias (+ beta·C); 0 leaves the binding unread.
 */
function gemmInterface(a: string, bc: string): string {
  return /* wgsl */ `
struct Params {
  m: u32, n: u32, k: u32, lda: u32, ldb: u32, ldc: u32,
  offA: u32, offB: u32, offC: u32, strideA: u32, strideB: u32, strideC: u32, transA: u32, transB: u32, offBias: u32,
  alpha: f32, beta: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<${a}>;
@group(0) @binding(2) var<storage, read> B: array<${bc}>;
@group(0) @binding(3) var<storage, read_write> C: array<${bc}>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
override BIAS: u32 = 0u;
fn biasAt(col: u32, valid: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (BIAS == 1u) { for (var j = 0u; j < valid; j++) { v[j] = bias[p.offBias + col + j]; } }
  return v;
}`;
}

/** WGSL of the tiled GEMM; `vec4` selects vec4 storage access (see gemmAlignedForVec4). */
export function gemmWgsl(vec4: boolean, tile: GemmTile = 64): string {
  const blocks = tile / 64, slice = 1024 / tile, quads = tile / 4;
  // Unrolled in the source: accumulator acc{i}{r}{j} holds row r of block row i, block column j
  // (named registers: an indexed array may live in slow memory where a compiler does not unroll).
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  const blockRows = range(blocks).flatMap((i) => range(4).flatMap((r) => range(blocks).map((j) => [i, r, j] as const)));
  const accumulators = blockRows.map(([i, r, j]) => `acc${i}${r}${j}`);
  const elem = vec4 ? 'vec4<f32>' : 'f32';
  const access = vec4 ? `
// Four consecutive elements from element index e (a multiple of 4); valid is 0 or 4 here.
fn loadA4(e: u32, valid: u32) -> vec4<f32> { if (valid == 0u) { return vec4<f32>(0.0); } return A[e / 4u]; }
fn loadB4(e: u32, valid: u32) -> vec4<f32> { if (valid == 0u) { return vec4<f32>(0.0); } return B[e / 4u]; }
fn storeC4(e: u32, valid: u32, v: vec4<f32>) {
  if (valid == 0u) { return; }
  if (p.beta == 0.0) { C[e / 4u] = v; } else { C[e / 4u] = v + p.beta * C[e / 4u]; }
}` : `
// Up to four consecutive elements from element index e; the rest of the vec4 is zero.
fn loadA4(e: u32, valid: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < valid; j++) { v[j] = A[e + j]; }
  return v;
}
fn loadB4(e: u32, valid: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < valid; j++) { v[j] = B[e + j]; }
  return v;
}
fn storeC4(e: u32, valid: u32, v: vec4<f32>) {
  for (var j = 0u; j < valid; j++) {
    if (p.beta == 0.0) { C[e + j] = v[j]; } else { C[e + j] = v[j] + p.beta * C[e + j]; }
  }
}`;
  return /* wgsl */ `
${gemmInterface(elem, elem)}

const TILE = ${tile}u;   // rows and columns of C per workgroup
const SLICE = ${slice}u;  // k per stage
const QUADS = ${quads}u;  // vec4s across a tile
// As[kk * QUADS + i / 4][i % 4] = op(A)[row0 + i, k0 + kk]; Bs[kk * QUADS + j / 4][j % 4] = op(B)[k0 + kk, col0 + j]
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

/** How many of the 4 elements starting at index x are below the bound n. */
fn valid4(x: u32, n: u32) -> u32 { return select(0u, min(n - x, 4u), x < n); }

${access}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tid = lid.y * 16u + lid.x;
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  let offA = p.offA + wid.z * p.strideA;
  let offB = p.offB + wid.z * p.strideB;
  let offC = p.offC + wid.z * p.strideC;
  ${accumulators.map((c) => `var ${c} = vec4<f32>(0.0);`).join(' ')}
  for (var k0 = 0u; k0 < p.k; k0 += SLICE) {
    // Stage the A slice: 256 runs of 4 elements along A's contiguous axis.
    if (p.transA != 0u) {        // A stored k×m: run = 4 rows of op(A) at one k
      let kk = tid / QUADS; let mq = tid % QUADS;
      let n = select(0u, valid4(row0 + 4u * mq, p.m), k0 + kk < p.k);
      As[kk * QUADS + mq] = loadA4(offA + (k0 + kk) * p.lda + row0 + 4u * mq, n);
    } else {              // A stored m×k: run = 4 k of one row
      let r = tid / (SLICE / 4u); let kq = tid % (SLICE / 4u);
      let n = select(0u, valid4(k0 + 4u * kq, p.k), row0 + r < p.m);
      let v = loadA4(offA + (row0 + r) * p.lda + k0 + 4u * kq, n);
      for (var j = 0u; j < 4u; j++) { As[(4u * kq + j) * QUADS + r / 4u][r % 4u] = v[j]; }
    }
    // Stage the B slice.
    if (p.transB != 0u) {        // B stored n×k: run = 4 k of one column of op(B)
      let c = tid / (SLICE / 4u); let kq = tid % (SLICE / 4u);
      let n = select(0u, valid4(k0 + 4u * kq, p.k), col0 + c < p.n);
      let v = loadB4(offB + (col0 + c) * p.ldb + k0 + 4u * kq, n);
      for (var j = 0u; j < 4u; j++) { Bs[(4u * kq + j) * QUADS + c / 4u][c % 4u] = v[j]; }
    } else {              // B stored k×n: run = 4 columns at one k
      let kk = tid / QUADS; let nq = tid % QUADS;
      let n = select(0u, valid4(col0 + 4u * nq, p.n), k0 + kk < p.k);
      Bs[kk * QUADS + nq] = loadB4(offB + (k0 + kk) * p.ldb + col0 + 4u * nq, n);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < SLICE; kk++) {
${range(blocks).map((i) => `      let a${i} = As[kk * QUADS + ${16 * i}u + lid.y];`).join('\n')}
${range(blocks).map((j) => `      let b${j} = Bs[kk * QUADS + ${16 * j}u + lid.x];`).join('\n')}
${blockRows.map(([i, r, j]) => `      acc${i}${r}${j} += a${i}.${'xyzw'[r]} * b${j};`).join('\n')}
    }
    workgroupBarrier();
  }
${range(blocks).map((j) => `  let column${j} = col0 + ${64 * j}u + 4u * lid.x;
  let bias${j} = biasAt(column${j}, valid4(column${j}, p.n));`).join('\n')}
${range(blocks).flatMap((i) => range(4).map((r) => `  let row${i}${r} = row0 + ${64 * i + r}u + 4u * lid.y;
  if (row${i}${r} < p.m) {
${range(blocks).map((j) => `    storeC4(offC + row${i}${r} * p.ldc + column${j}, valid4(column${j}, p.n), p.alpha * acc${i}${r}${j} + bias${j});`).join('\n')}
  }`)).join('\n')}
}
`;
}

/**
 * True when every access of a product can be a vec4 load or store: each matrix's contiguous
 * dimension, row stride, offset and batch stride are multiples of 4.
 */
export function gemmAlignedForVec4(transA: boolean, transB: boolean, m: number, n: number, k: number,
                                   ld: readonly number[], offsets: readonly number[]): boolean {
  const contiguousA = transA ? m : k;
  const contiguousB = transB ? k : n;
  return [contiguousA, contiguousB, n, ...ld, ...offsets].every((x) => x % 4 === 0);
}

/** Rows a product may have for the narrow kernel (decoding's few sequences), and its columns per workgroup. */
export const NARROW_ROWS = 16;
export const NARROW_COLUMNS = 32;

/**
 * C = alpha·A·B + beta·C (NN) for products of at most NARROW_ROWS rows (decoding: a few sequences
 * against a weight), where a 64×64 tile would leave most of its rows empty. A workgroup of 64
 * threads takes 32 columns: 8 column quads × 8 slices of k. Each thread streams its slice of B's
 * rows as vec4 (B is read once, coalesced along n) against every row of A (the slice's threads
 * read the same A element: a broadcast), keeping a vec4 accumulator per row; the 8 slices are then
 * added in workgroup memory one row at a time. vec4 access only (callers check gemmAlignedForVec4).
 */
export function gemmNarrowWgsl(rows: number): string {
  // Unrolled in the source, one named accumulator per row (see gemmWgsl); rows past m (rows is m
  // rounded up to a power of two) read row m - 1 of A and are never stored.
  const range = Array.from({ length: rows }, (_, r) => r);
  return /* wgsl */ `
${gemmInterface('f32', 'vec4<f32>')}

const QUADS = ${NARROW_COLUMNS / 4}u;
const SLICES = 8u;
var<workgroup> partial: array<vec4<f32>, 64>;

/** Row r of C: the slices' sums of its columns added in workgroup memory (uniform control flow). */
fn store(r: u32, acc: vec4<f32>, lid: u32, quad: u32, slice: u32, col: u32, offC: u32) {
  partial[lid] = acc;
  workgroupBarrier();
  if (slice == 0u && col < p.n && r < p.m) {
    var sum = partial[quad];
    for (var s = 1u; s < SLICES; s++) { sum += partial[s * QUADS + quad]; }
    let e = (offC + r * p.ldc + col) / 4u;
    let v = p.alpha * sum + biasAt(col, 4u);
    if (p.beta == 0.0) { C[e] = v; } else { C[e] = v + p.beta * C[e]; }
  }
  workgroupBarrier();
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let quad = lid.x % QUADS;
  let slice = lid.x / QUADS;
  let col = wid.x * ${NARROW_COLUMNS}u + 4u * quad;
  let offA = p.offA + wid.z * p.strideA;
  let offB = p.offB + wid.z * p.strideB;
  let offC = p.offC + wid.z * p.strideC;
${range.map((r) => `  var acc${r} = vec4<f32>(0.0);
  let rowA${r} = offA + min(${r}u, p.m - 1u) * p.lda;`).join('\n')}
  if (col < p.n) {
    for (var kk = slice; kk < p.k; kk += SLICES) {
      let b = B[(offB + kk * p.ldb + col) / 4u];
${range.map((r) => `      acc${r} += A[rowA${r} + kk] * b;`).join('\n')}
    }
  }
${range.map((r) => `  store(${r}u, acc${r}, lid.x, quad, slice, col, offC);`).join('\n')}
}
`;
}
