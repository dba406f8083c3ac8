/**
 * WebAssembly SIMD kernels for the portable backend, assembled from bytes at load time (no
 * toolchain needed, works in browsers and Node alike). They work on the module's own memory; the
 * caller (simd-engine.ts) copies operands in and results out. Exports:
 *
 *   gemmBlock(aPtr, aTileBytes, aRowBytes, aStepBytes, bPtr, bPanelBytes, cPtr, mTiles, nTiles, kc,
 *             ldcBytes, accumulate)
 *     C[mTiles·MR, nTiles·NR] (+)= A · Bpacked with a 4×8 register tile (8 f32x4 accumulators), where
 *     - A[ir·MR + r, p] is the float at byte aPtr + ir·aTileBytes + r·aRowBytes + p·aStepBytes
 *       (row-major rows, columns of a transposed matrix, or MR-row panels: any plain layout),
 *     - Bpacked holds nTiles panels of ≥ kc×NR floats, bPanelBytes apart: panel j, step p, col c at
 *       byte bPtr + j·bPanelBytes + (p·NR + c)·4 (a longer panel can serve a shorter kc),
 *     - C is row-major with a row stride of ldcBytes bytes; accumulate ≠ 0 adds to C, else writes it.
 *     Edges are the caller's business: it pads to whole tiles and keeps only the valid part of C.
 *   softmaxRows, softmaxBackwardRows   row softmax (with a vectorized exp) and its backward
 *   geluForward, geluBackward          quick GELU over n floats
 *   decodeAttend                       one query against cached keys and values
 *   normForwardRows, normBackwardRows  the gain-only norm and its backward
 */

/** Rows of C computed per micro-tile. */
export const MR = 4;
/** Columns of C computed per micro-tile (a multiple of 4: one f32x4 per 4 columns). */
export const NR = 8;

const I32 = 0x7f;
const V128 = 0x7b;
const F32 = 0x7d;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const bytes = Array.from(s, (ch) => ch.charCodeAt(0));
  return [...uleb(bytes.length), ...bytes];
}

// Instruction encoders (only what the kernels need).
const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a], i32Sub: [0x6b], i32Mul: [0x6c], i32Ne: [0x47], i32LtU: [0x49], i32Eqz: [0x45],
  loop: [0x03, 0x40], block: [0x02, 0x40], if: [0x04, 0x40], else: [0x05], end: [0x0b],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  v128Load: (offset: number) => [0xfd, ...uleb(0x00), 2, ...uleb(offset)],
  v128Load32Splat: (offset: number) => [0xfd, ...uleb(0x09), 2, ...uleb(offset)],
  v128Store: (offset: number) => [0xfd, ...uleb(0x0b), 2, ...uleb(offset)],
  v128Zero: [0xfd, ...uleb(0x0c), ...new Array<number>(16).fill(0)],
  f32x4Add: [0xfd, ...uleb(0xe4)],
  f32x4Sub: [0xfd, ...uleb(0xe5)],
  f32x4Mul: [0xfd, ...uleb(0xe6)],
  f32x4Max: [0xfd, ...uleb(0xe9)],
  f32x4Min: [0xfd, ...uleb(0xe8)],
  f32x4Div: [0xfd, ...uleb(0xe7)],
  f32x4Nearest: [0xfd, ...uleb(0x6a)],
  f32x4Splat: [0xfd, ...uleb(0x13)],
  f32x4ExtractLane: (lane: number) => [0xfd, ...uleb(0x1f), lane],
  i32x4TruncSatF32x4S: [0xfd, ...uleb(0xf8)],
  i32x4Add: [0xfd, ...uleb(0xae)],
  i32x4Shl: [0xfd, ...uleb(0xab)],
  f32x4Const: (v: number) => [0xfd, ...uleb(0x0c), ...f32x4Bytes(v)],
  i32x4Const: (v: number) => [0xfd, ...uleb(0x0c), ...i32x4Bytes(v)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  call: (f: number) => [0x10, ...uleb(f)],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  i32GeU: [0x4f], i32And: [0x71], i32Shl: [0x74],
  f32Load: (offset: number) => [0x2a, 2, ...uleb(offset)],
  f32Store: (offset: number) => [0x38, 2, ...uleb(offset)],
  f32Const: (v: number) => [0x43, ...f32Bytes(v)],
  f32Add: [0x92], f32Sub: [0x93], f32Mul: [0x94], f32Div: [0x95], f32Max: [0x97], f32Sqrt: [0x91],
  f32ConvertI32S: [0xb2],
};

function f32Bytes(v: number): number[] {
  return Array.from(new Uint8Array(new Float32Array([v]).buffer));
}

function f32x4Bytes(v: number): number[] {
  return Array.from(new Uint8Array(new Float32Array([v, v, v, v]).buffer));
}

function i32x4Bytes(v: number): number[] {
  return Array.from(new Uint8Array(new Int32Array([v, v, v, v]).buffer));
}

type Code = (number | number[])[];

/** Flattens instruction pieces into bytes. */
function flat(parts: Code): number[] {
  const out: number[] = [];
  for (const part of parts) {
    if (Array.isArray(part)) out.push(...part);
    else out.push(part);
  }
  return out;
}

/** A function body: local declarations (groups of [count, type]) followed by the code. */
function functionBody(localGroups: [number, number][], code: number[]): number[] {
  const locals = [...uleb(localGroups.length), ...localGroups.flatMap(([count, type]) => [...uleb(count), type])];
  const body = [...locals, ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/** `while (p < end) { body; p += step }` with p and end i32 locals. */
function loopWhileBelow(p: number, end: number, step: number, body: Code): Code {
  return [op.block, op.loop, op.localGet(p), op.localGet(end), op.i32GeU, op.brIf(1), ...body,
          op.localGet(p), op.i32Const(step), op.i32Add, op.localSet(p), op.br(0), op.end, op.end];
}

/** The body of gemmBlock (see the file comment). */
function gemmBlockBody(): number[] {
  const NV = NR / 4; // f32x4 vectors per row of a tile
  // Parameters 0..11, then locals.
  const [aPtr, aTileBytes, aRowBytes, aStepBytes, bPtr, bPanelBytes, cPtr, mTiles, nTiles, kc, ldcBytes,
         accumulate] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const [jr, ir, p, bp, cp] = [12, 13, 14, 15, 16];
  const aRow = (r: number) => 17 + r; // one pointer per row of the tile
  const i32Count = 5 + MR;
  const firstV128 = 12 + i32Count;
  const acc = (r: number, v: number) => firstV128 + r * NV + v;
  const bReg = (v: number) => firstV128 + MR * NV + v;
  const aReg = firstV128 + MR * NV + NV;
  const v128Count = MR * NV + NV + 1;

  const code: number[] = [];
  const emit = (...parts: (number | number[])[]) => {
    for (const part of parts) {
      if (Array.isArray(part)) code.push(...part);
      else code.push(part);
    }
  };

  emit(op.i32Const(0), op.localSet(jr));
  emit(op.loop); // over column panels jr
  {
    emit(op.i32Const(0), op.localSet(ir));
    emit(op.loop); // over row panels ir
    {
      // aRow[r] = aPtr + ir·aTileBytes + r·aRowBytes; bp = bPtr + jr·bPanelBytes; cp = cPtr + ir·MR·ldcBytes + jr·NR·4
      for (let r = 0; r < MR; r++) {
        emit(op.localGet(aPtr), op.localGet(ir), op.localGet(aTileBytes), op.i32Mul, op.i32Add,
             op.i32Const(r), op.localGet(aRowBytes), op.i32Mul, op.i32Add, op.localSet(aRow(r)));
      }
      emit(op.localGet(bPtr), op.localGet(jr), op.localGet(bPanelBytes), op.i32Mul, op.i32Add, op.localSet(bp));
      emit(op.localGet(cPtr), op.localGet(ir), op.i32Const(MR), op.i32Mul, op.localGet(ldcBytes), op.i32Mul,
           op.i32Add, op.localGet(jr), op.i32Const(NR * 4), op.i32Mul, op.i32Add, op.localSet(cp));
      for (let r = 0; r < MR; r++) for (let v = 0; v < NV; v++) emit(op.v128Zero, op.localSet(acc(r, v)));

      emit(op.localGet(kc), op.localSet(p));
      emit(op.loop); // over the shared dimension
      {
        for (let v = 0; v < NV; v++) emit(op.localGet(bp), op.v128Load(16 * v), op.localSet(bReg(v)));
        for (let r = 0; r < MR; r++) {
          emit(op.localGet(aRow(r)), op.v128Load32Splat(0), op.localSet(aReg));
          for (let v = 0; v < NV; v++) {
            emit(op.localGet(acc(r, v)), op.localGet(aReg), op.localGet(bReg(v)), op.f32x4Mul, op.f32x4Add,
                 op.localSet(acc(r, v)));
          }
          emit(op.localGet(aRow(r)), op.localGet(aStepBytes), op.i32Add, op.localSet(aRow(r)));
        }
        emit(op.localGet(bp), op.i32Const(NR * 4), op.i32Add, op.localSet(bp));
        emit(op.localGet(p), op.i32Const(1), op.i32Sub, op.localSet(p));
        emit(op.localGet(p), op.brIf(0));
      }
      emit(op.end);

      // Store (or add) the tile into C.
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < NV; v++) {
          emit(op.localGet(cp));
          emit(op.localGet(accumulate), op.if);
          emit(op.localGet(acc(r, v)), op.localGet(cp), op.v128Load(16 * v), op.f32x4Add, op.localSet(acc(r, v)));
          emit(op.end);
          emit(op.localGet(acc(r, v)), op.v128Store(16 * v));
        }
        emit(op.localGet(cp), op.localGet(ldcBytes), op.i32Add, op.localSet(cp));
      }

      emit(op.localGet(ir), op.i32Const(1), op.i32Add, op.localSet(ir));
      emit(op.localGet(ir), op.localGet(mTiles), op.i32LtU, op.brIf(0));
    }
    emit(op.end);
    emit(op.localGet(jr), op.i32Const(1), op.i32Add, op.localSet(jr));
    emit(op.localGet(jr), op.localGet(nTiles), op.i32LtU, op.brIf(0));
  }
  emit(op.end);
  emit(op.end); // function

  const locals = [...uleb(2), ...uleb(i32Count), I32, ...uleb(v128Count), V128];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/**
 * exp of the f32x4 on the stack: clamp to [-87, 88] (so 2^n stays a normal float), split x = n·ln2 + r,
 * a degree-6 Taylor polynomial for e^r on |r| ≤ ln2/2 (relative error < 2e-7), and 2^n built in the
 * exponent bits. Uses the v128 locals x, n, r as scratch.
 */
function exp4(x: number, n: number, r: number): Code {
  const c = op.f32x4Const;
  return [
    c(-87), op.f32x4Max, c(88), op.f32x4Min, op.localSet(x),
    op.localGet(x), c(Math.LOG2E), op.f32x4Mul, op.f32x4Nearest, op.localSet(n),
    op.localGet(x), op.localGet(n), c(0.693359375), op.f32x4Mul, op.f32x4Sub,
    op.localGet(n), c(-2.12194440e-4), op.f32x4Mul, op.f32x4Sub, op.localSet(r),
    c(1 / 720), op.localGet(r), op.f32x4Mul, c(1 / 120), op.f32x4Add,
    op.localGet(r), op.f32x4Mul, c(1 / 24), op.f32x4Add,
    op.localGet(r), op.f32x4Mul, c(1 / 6), op.f32x4Add,
    op.localGet(r), op.f32x4Mul, c(0.5), op.f32x4Add,
    op.localGet(r), op.f32x4Mul, c(1), op.f32x4Add,
    op.localGet(r), op.f32x4Mul, c(1), op.f32x4Add,
    op.localGet(n), op.i32x4TruncSatF32x4S, op.i32x4Const(127), op.i32x4Add, op.i32Const(23), op.i32x4Shl,
    op.f32x4Mul,
  ];
}

/** Horizontal combine of the four lanes of v128 local v with a scalar f32 binary op. */
function horizontal(v: number, combine: number[]): Code {
  return [op.localGet(v), op.f32x4ExtractLane(0), op.localGet(v), op.f32x4ExtractLane(1), combine,
          op.localGet(v), op.f32x4ExtractLane(2), combine, op.localGet(v), op.f32x4ExtractLane(3), combine];
}

/**
 * softmaxRows(ptr, rows, rowStrideBytes, firstCount, countStep, width): in-place softmax over the
 * first `count` floats of each row, count = firstCount + row·countStep (causal rows grow by one);
 * floats count..width are written as 0.
 */
function softmaxRowsBody(): number[] {
  const [ptr, rows, rowStride, firstCount, countStep, width] = [0, 1, 2, 3, 4, 5];
  const [row, count, p, vecEnd, end] = [6, 7, 8, 9, 10];
  const [mx, sum, scalar] = [11, 12, 13];
  const [acc, vs, x, n, r, e] = [14, 15, 16, 17, 18, 19];
  const code: Code = [
    op.i32Const(0), op.localSet(row), op.localGet(firstCount), op.localSet(count),
    op.block, op.loop,
    op.localGet(row), op.localGet(rows), op.i32GeU, op.brIf(1),
    // end = ptr + 4·count; vecEnd = ptr + 4·(count & ~3)
    op.localGet(ptr), op.localGet(count), op.i32Const(2), op.i32Shl, op.i32Add, op.localSet(end),
    op.localGet(ptr), op.localGet(count), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.i32Add,
    op.localSet(vecEnd),

    // Row maximum.
    op.f32x4Const(-Infinity), op.localSet(acc), op.localGet(ptr), op.localSet(p),
    ...loopWhileBelow(p, vecEnd, 16, [op.localGet(acc), op.localGet(p), op.v128Load(0), op.f32x4Max, op.localSet(acc)]),
    ...horizontal(acc, op.f32Max), op.localSet(mx),
    ...loopWhileBelow(p, end, 4, [op.localGet(mx), op.localGet(p), op.f32Load(0), op.f32Max, op.localSet(mx)]),

    // e = exp(x - max) in place, and its sum.
    op.localGet(mx), op.f32x4Splat, op.localSet(vs),
    op.f32x4Const(0), op.localSet(acc), op.localGet(ptr), op.localSet(p),
    ...loopWhileBelow(p, vecEnd, 16, [
      op.localGet(p), op.localGet(p), op.v128Load(0), op.localGet(vs), op.f32x4Sub, ...exp4(x, n, r),
      op.localTee(e), op.v128Store(0), op.localGet(acc), op.localGet(e), op.f32x4Add, op.localSet(acc)]),
    ...horizontal(acc, op.f32Add), op.localSet(sum),
    ...loopWhileBelow(p, end, 4, [
      op.localGet(p), op.localGet(p), op.f32Load(0), op.localGet(mx), op.f32Sub, op.f32x4Splat, ...exp4(x, n, r),
      op.f32x4ExtractLane(0), op.localTee(scalar), op.f32Store(0),
      op.localGet(sum), op.localGet(scalar), op.f32Add, op.localSet(sum)]),

    // Normalize.
    op.f32Const(1), op.localGet(sum), op.f32Div, op.localTee(scalar), op.f32x4Splat, op.localSet(vs),
    op.localGet(ptr), op.localSet(p),
    ...loopWhileBelow(p, vecEnd, 16, [op.localGet(p), op.localGet(p), op.v128Load(0), op.localGet(vs), op.f32x4Mul,
                                      op.v128Store(0)]),
    ...loopWhileBelow(p, end, 4, [op.localGet(p), op.localGet(p), op.f32Load(0), op.localGet(scalar), op.f32Mul,
                                  op.f32Store(0)]),
    // Zero count..width (p already points at count).
    op.localGet(ptr), op.localGet(width), op.i32Const(2), op.i32Shl, op.i32Add, op.localSet(end),
    ...loopWhileBelow(p, end, 4, [op.localGet(p), op.f32Const(0), op.f32Store(0)]),

    op.localGet(ptr), op.localGet(rowStride), op.i32Add, op.localSet(ptr),
    op.localGet(count), op.localGet(countStep), op.i32Add, op.localSet(count),
    op.localGet(row), op.i32Const(1), op.i32Add, op.localSet(row),
    op.br(0), op.end, op.end,
  ];
  return functionBody([[5, I32], [3, F32], [6, V128]], flat(code));
}

/**
 * softmaxBackwardRows(pPtr, dPtr, rows, rowStrideBytes, width, scale): for each row of P (softmax
 * probabilities) and dP (their gradient), in place: dP = P∘(dP - Σ P∘dP)·scale over `width` floats.
 * Masked entries have P = 0, so they come out 0.
 */
function softmaxBackwardRowsBody(): number[] {
  const [pPtr, dPtr, rows, rowStride, width, scale] = [0, 1, 2, 3, 4, 5];
  const [row, i, vecEnd, end] = [6, 7, 8, 9];
  const [dot] = [10];
  const [acc, vdot, vscale] = [11, 12, 13];
  const pAt = (load: number[]) => [op.localGet(pPtr), op.localGet(i), op.i32Add, load];
  const dAt = (load: number[]) => [op.localGet(dPtr), op.localGet(i), op.i32Add, load];
  const code: Code = [
    op.localGet(scale), op.f32x4Splat, op.localSet(vscale),
    op.localGet(width), op.i32Const(2), op.i32Shl, op.localSet(end),
    op.localGet(width), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.localSet(vecEnd),
    op.i32Const(0), op.localSet(row),
    op.block, op.loop,
    op.localGet(row), op.localGet(rows), op.i32GeU, op.brIf(1),

    op.f32x4Const(0), op.localSet(acc), op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, vecEnd, 16, [op.localGet(acc), ...pAt(op.v128Load(0)), ...dAt(op.v128Load(0)), op.f32x4Mul,
                                      op.f32x4Add, op.localSet(acc)]),
    ...horizontal(acc, op.f32Add), op.localSet(dot),
    ...loopWhileBelow(i, end, 4, [op.localGet(dot), ...pAt(op.f32Load(0)), ...dAt(op.f32Load(0)), op.f32Mul,
                                  op.f32Add, op.localSet(dot)]),

    op.localGet(dot), op.f32x4Splat, op.localSet(vdot), op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, vecEnd, 16, [op.localGet(dPtr), op.localGet(i), op.i32Add,
                                      ...pAt(op.v128Load(0)), ...dAt(op.v128Load(0)), op.localGet(vdot), op.f32x4Sub,
                                      op.f32x4Mul, op.localGet(vscale), op.f32x4Mul, op.v128Store(0)]),
    ...loopWhileBelow(i, end, 4, [op.localGet(dPtr), op.localGet(i), op.i32Add,
                                  ...pAt(op.f32Load(0)), ...dAt(op.f32Load(0)), op.localGet(dot), op.f32Sub,
                                  op.f32Mul, op.localGet(scale), op.f32Mul, op.f32Store(0)]),

    op.localGet(pPtr), op.localGet(rowStride), op.i32Add, op.localSet(pPtr),
    op.localGet(dPtr), op.localGet(rowStride), op.i32Add, op.localSet(dPtr),
    op.localGet(row), op.i32Const(1), op.i32Add, op.localSet(row),
    op.br(0), op.end, op.end,
  ];
  return functionBody([[4, I32], [1, F32], [3, V128]], flat(code));
}

/**
 * An elementwise map over n floats: params in0Ptr..in{k-1}Ptr, outPtr, n. `expr` gets, per input,
 * code pushing that input's f32x4 at the current position and returns code computing the output
 * f32x4; the last n mod 4 floats go through the same code one lane at a time. The v128 locals
 * from index v128Base on are free for `expr` (the first three feed exp4).
 */
function elementwiseBody(inputs: number, v128Locals: number,
                         expr: (input: Code[], v128Base: number) => Code): number[] {
  const outPtr = inputs;
  const n = inputs + 1;
  const [i, vecEnd, end] = [inputs + 2, inputs + 3, inputs + 4];
  const v128Base = inputs + 5;
  const vectorInput = (k: number): Code => [op.localGet(k), op.localGet(i), op.i32Add, op.v128Load(0)];
  const laneInput = (k: number): Code => [op.localGet(k), op.localGet(i), op.i32Add, op.f32Load(0), op.f32x4Splat];
  const ins = Array.from({ length: inputs }, (_, k) => k);
  const code: Code = [
    op.localGet(n), op.i32Const(2), op.i32Shl, op.localSet(end),
    op.localGet(n), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.localSet(vecEnd),
    op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, vecEnd, 16, [op.localGet(outPtr), op.localGet(i), op.i32Add,
                                      ...expr(ins.map(vectorInput), v128Base), op.v128Store(0)]),
    ...loopWhileBelow(i, end, 4, [op.localGet(outPtr), op.localGet(i), op.i32Add,
                                  ...expr(ins.map(laneInput), v128Base), op.f32x4ExtractLane(0), op.f32Store(0)]),
  ];
  return functionBody([[3, I32], [v128Locals, V128]], flat(code));
}

const GELU_K = 1.702;

/** geluForward(xPtr, outPtr, n): out = x·sigmoid(1.702·x) = x / (1 + exp(-1.702·x)). */
function geluForwardBody(): number[] {
  return elementwiseBody(1, 3, ([x], v) => [
    ...x, ...x, op.f32x4Const(-GELU_K), op.f32x4Mul, ...exp4(v, v + 1, v + 2), op.f32x4Const(1), op.f32x4Add,
    op.f32x4Div,
  ]);
}

/** geluBackward(doutPtr, xPtr, dxPtr, n): dx = dout·(s + 1.702·x·s·(1 - s)), s = sigmoid(1.702·x). */
function geluBackwardBody(): number[] {
  return elementwiseBody(2, 4, ([dout, x], v) => {
    const s = v + 3;
    return [
      op.f32x4Const(1), ...x, op.f32x4Const(-GELU_K), op.f32x4Mul, ...exp4(v, v + 1, v + 2), op.f32x4Const(1),
      op.f32x4Add, op.f32x4Div, op.localSet(s),
      ...dout, op.localGet(s), op.f32x4Const(GELU_K), ...x, op.f32x4Mul, op.localGet(s), op.f32x4Mul,
      op.f32x4Const(1), op.localGet(s), op.f32x4Sub, op.f32x4Mul, op.f32x4Add, op.f32x4Mul,
    ];
  });
}

/**
 * decodeAttend(qPtr, kPtr, vPtr, n, hs, scale, scoresPtr, outPtr): one query against n cached
 * keys and values (rows of hs floats): scores = softmax(scale·K·q), out = scoresᵀ·V.
 */
function decodeAttendBody(softmaxRowsIndex: number): number[] {
  const [qPtr, kPtr, vPtr, n, hs, scale, scoresPtr, outPtr] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [s, i, rowPtr, vecEnd, end] = [8, 9, 10, 11, 12];
  const [sum, p] = [13, 14];
  const [acc, vp] = [15, 16];
  const code: Code = [
    op.localGet(hs), op.i32Const(2), op.i32Shl, op.localSet(end),
    op.localGet(hs), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.localSet(vecEnd),

    // scores[s] = scale·dot(q, K[s]).
    op.i32Const(0), op.localSet(s), op.localGet(kPtr), op.localSet(rowPtr),
    op.block, op.loop, op.localGet(s), op.localGet(n), op.i32GeU, op.brIf(1),
    op.f32x4Const(0), op.localSet(acc), op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, vecEnd, 16, [
      op.localGet(acc), op.localGet(qPtr), op.localGet(i), op.i32Add, op.v128Load(0),
      op.localGet(rowPtr), op.localGet(i), op.i32Add, op.v128Load(0), op.f32x4Mul, op.f32x4Add, op.localSet(acc)]),
    ...horizontal(acc, op.f32Add), op.localSet(sum),
    ...loopWhileBelow(i, end, 4, [
      op.localGet(sum), op.localGet(qPtr), op.localGet(i), op.i32Add, op.f32Load(0),
      op.localGet(rowPtr), op.localGet(i), op.i32Add, op.f32Load(0), op.f32Mul, op.f32Add, op.localSet(sum)]),
    op.localGet(scoresPtr), op.localGet(s), op.i32Const(2), op.i32Shl, op.i32Add,
    op.localGet(sum), op.localGet(scale), op.f32Mul, op.f32Store(0),
    op.localGet(rowPtr), op.localGet(end), op.i32Add, op.localSet(rowPtr),
    op.localGet(s), op.i32Const(1), op.i32Add, op.localSet(s),
    op.br(0), op.end, op.end,

    // softmax(scores) as one row.
    op.localGet(scoresPtr), op.i32Const(1), op.i32Const(0), op.localGet(n), op.i32Const(0), op.localGet(n),
    op.call(softmaxRowsIndex),

    // out = Σ scores[s]·V[s].
    op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, end, 4, [op.localGet(outPtr), op.localGet(i), op.i32Add, op.f32Const(0), op.f32Store(0)]),
    op.i32Const(0), op.localSet(s), op.localGet(vPtr), op.localSet(rowPtr),
    op.block, op.loop, op.localGet(s), op.localGet(n), op.i32GeU, op.brIf(1),
    op.localGet(scoresPtr), op.localGet(s), op.i32Const(2), op.i32Shl, op.i32Add, op.f32Load(0), op.localTee(p),
    op.f32x4Splat, op.localSet(vp), op.i32Const(0), op.localSet(i),
    ...loopWhileBelow(i, vecEnd, 16, [
      op.localGet(outPtr), op.localGet(i), op.i32Add,
      op.localGet(outPtr), op.localGet(i), op.i32Add, op.v128Load(0),
      op.localGet(vp), op.localGet(rowPtr), op.localGet(i), op.i32Add, op.v128Load(0), op.f32x4Mul, op.f32x4Add,
      op.v128Store(0)]),
    ...loopWhileBelow(i, end, 4, [
      op.localGet(outPtr), op.localGet(i), op.i32Add,
      op.localGet(outPtr), op.localGet(i), op.i32Add, op.f32Load(0),
      op.localGet(p), op.localGet(rowPtr), op.localGet(i), op.i32Add, op.f32Load(0), op.f32Mul, op.f32Add,
      op.f32Store(0)]),
    op.localGet(rowPtr), op.localGet(end), op.i32Add, op.localSet(rowPtr),
    op.localGet(s), op.i32Const(1), op.i32Add, op.localSet(s),
    op.br(0), op.end, op.end,
  ];
  return functionBody([[5, I32], [2, F32], [2, V128]], flat(code));
}

/** `for (i = 0; i < end; i += 16 or 4)`: a vector loop to vecEnd, then a scalar one to end. */
function vectorThenScalar(i: number, vecEnd: number, end: number, vectorBody: Code, scalarBody: Code): Code {
  return [op.i32Const(0), op.localSet(i), ...loopWhileBelow(i, vecEnd, 16, vectorBody),
          ...loopWhileBelow(i, end, 4, scalarBody)];
}

/** Pushes the float (scalar) or f32x4 (vector) at byte ptr + i. */
const at = (ptr: number, i: number, vector: boolean): Code =>
  [op.localGet(ptr), op.localGet(i), op.i32Add, vector ? op.v128Load(0) : op.f32Load(0)];

/**
 * normForwardRows(xPtr, gPtr, outPtr, rstdPtr, rows, d, eps): per row of d floats,
 * rstd = 1/sqrt(mean(x²) + eps) and out = x·rstd·g.
 */
function normForwardRowsBody(): number[] {
  const [xPtr, gPtr, outPtr, rstdPtr, rows, d, eps] = [0, 1, 2, 3, 4, 5, 6];
  const [row, i, vecEnd, end] = [7, 8, 9, 10];
  const [ss, rs] = [11, 12];
  const [acc, vrs] = [13, 14];
  const mulAdd = (vector: boolean): Code => vector
    ? [op.localGet(acc), ...at(xPtr, i, true), ...at(xPtr, i, true), op.f32x4Mul, op.f32x4Add, op.localSet(acc)]
    : [op.localGet(ss), ...at(xPtr, i, false), ...at(xPtr, i, false), op.f32Mul, op.f32Add, op.localSet(ss)];
  const scaleOut = (vector: boolean): Code => [
    op.localGet(outPtr), op.localGet(i), op.i32Add, ...at(xPtr, i, vector),
    vector ? op.localGet(vrs) : op.localGet(rs), vector ? op.f32x4Mul : op.f32Mul,
    ...at(gPtr, i, vector), vector ? op.f32x4Mul : op.f32Mul, vector ? op.v128Store(0) : op.f32Store(0)];
  const code: Code = [
    op.localGet(d), op.i32Const(2), op.i32Shl, op.localSet(end),
    op.localGet(d), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.localSet(vecEnd),
    op.i32Const(0), op.localSet(row),
    op.block, op.loop, op.localGet(row), op.localGet(rows), op.i32GeU, op.brIf(1),
    op.f32x4Const(0), op.localSet(acc),
    op.i32Const(0), op.localSet(i), ...loopWhileBelow(i, vecEnd, 16, mulAdd(true)),
    ...horizontal(acc, op.f32Add), op.localSet(ss),
    ...loopWhileBelow(i, end, 4, mulAdd(false)),
    op.f32Const(1), op.localGet(ss), op.localGet(d), op.f32ConvertI32S, op.f32Div, op.localGet(eps), op.f32Add,
    op.f32Sqrt, op.f32Div, op.localTee(rs), op.f32x4Splat, op.localSet(vrs),
    op.localGet(rstdPtr), op.localGet(row), op.i32Const(2), op.i32Shl, op.i32Add, op.localGet(rs), op.f32Store(0),
    ...vectorThenScalar(i, vecEnd, end, scaleOut(true), scaleOut(false)),
    op.localGet(xPtr), op.localGet(end), op.i32Add, op.localSet(xPtr),
    op.localGet(outPtr), op.localGet(end), op.i32Add, op.localSet(outPtr),
    op.localGet(row), op.i32Const(1), op.i32Add, op.localSet(row),
    op.br(0), op.end, op.end,
  ];
  return functionBody([[4, I32], [2, F32], [2, V128]], flat(code));
}

/**
 * normBackwardRows(dxPtr, dgPtr, doutPtr, xPtr, rstdPtr, gPtr, rows, d): per row, accumulates
 * dx += rstd·(dout·g - x·rstd²·mean(dout·g·x)) and dg += dout·x·rstd.
 */
function normBackwardRowsBody(): number[] {
  const [dxPtr, dgPtr, doutPtr, xPtr, rstdPtr, gPtr, rows, d] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [row, i, vecEnd, end] = [8, 9, 10, 11];
  const [dot, rs, coef] = [12, 13, 14];
  const [acc, vrs, vcoef] = [15, 16, 17];
  const dotStep = (vector: boolean): Code => vector
    ? [op.localGet(acc), ...at(doutPtr, i, true), ...at(gPtr, i, true), op.f32x4Mul, ...at(xPtr, i, true),
       op.f32x4Mul, op.f32x4Add, op.localSet(acc)]
    : [op.localGet(dot), ...at(doutPtr, i, false), ...at(gPtr, i, false), op.f32Mul, ...at(xPtr, i, false),
       op.f32Mul, op.f32Add, op.localSet(dot)];
  const update = (vector: boolean): Code => {
    const [mul, add, sub] = vector ? [op.f32x4Mul, op.f32x4Add, op.f32x4Sub] : [op.f32Mul, op.f32Add, op.f32Sub];
    const store = vector ? op.v128Store(0) : op.f32Store(0);
    const rsv = vector ? op.localGet(vrs) : op.localGet(rs);
    return [
      // dx += rs·(dout·g - x·coef)
      op.localGet(dxPtr), op.localGet(i), op.i32Add, ...at(dxPtr, i, vector),
      rsv, ...at(doutPtr, i, vector), ...at(gPtr, i, vector), mul,
      ...at(xPtr, i, vector), vector ? op.localGet(vcoef) : op.localGet(coef), mul, sub, mul, add, store,
      // dg += dout·x·rs
      op.localGet(dgPtr), op.localGet(i), op.i32Add, ...at(dgPtr, i, vector),
      ...at(doutPtr, i, vector), ...at(xPtr, i, vector), mul, rsv, mul, add, store,
    ];
  };
  const code: Code = [
    op.localGet(d), op.i32Const(2), op.i32Shl, op.localSet(end),
    op.localGet(d), op.i32Const(-4), op.i32And, op.i32Const(2), op.i32Shl, op.localSet(vecEnd),
    op.i32Const(0), op.localSet(row),
    op.block, op.loop, op.localGet(row), op.localGet(rows), op.i32GeU, op.brIf(1),
    op.localGet(rstdPtr), op.localGet(row), op.i32Const(2), op.i32Shl, op.i32Add, op.f32Load(0), op.localTee(rs),
    op.f32x4Splat, op.localSet(vrs),
    op.f32x4Const(0), op.localSet(acc),
    op.i32Const(0), op.localSet(i), ...loopWhileBelow(i, vecEnd, 16, dotStep(true)),
    ...horizontal(acc, op.f32Add), op.localSet(dot),
    ...loopWhileBelow(i, end, 4, dotStep(false)),
    op.localGet(rs), op.localGet(rs), op.f32Mul, op.localGet(dot), op.f32Mul, op.localGet(d), op.f32ConvertI32S,
    op.f32Div, op.localTee(coef), op.f32x4Splat, op.localSet(vcoef),
    ...vectorThenScalar(i, vecEnd, end, update(true), update(false)),
    op.localGet(dxPtr), op.localGet(end), op.i32Add, op.localSet(dxPtr),
    op.localGet(doutPtr), op.localGet(end), op.i32Add, op.localSet(doutPtr),
    op.localGet(xPtr), op.localGet(end), op.i32Add, op.localSet(xPtr),
    op.localGet(row), op.i32Const(1), op.i32Add, op.localSet(row),
    op.br(0), op.end, op.end,
  ];
  return functionBody([[4, I32], [3, F32], [3, V128]], flat(code));
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const magic = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const funcType = (params: number[]) => [0x60, ...uleb(params.length), ...params, ...uleb(0)];
  const i32s = (count: number) => new Array<number>(count).fill(I32);
  // Exported functions: [name, parameter types, body].
  const functions: [string, number[], number[]][] = [
    ['gemmBlock', i32s(12), gemmBlockBody()],
    ['softmaxRows', i32s(6), softmaxRowsBody()],
    ['softmaxBackwardRows', [...i32s(5), F32], softmaxBackwardRowsBody()],
    ['geluForward', i32s(3), geluForwardBody()],
    ['geluBackward', i32s(4), geluBackwardBody()],
    ['decodeAttend', [...i32s(5), F32, I32, I32], decodeAttendBody(1)],
    ['normForwardRows', [...i32s(6), F32], normForwardRowsBody()],
    ['normBackwardRows', i32s(8), normBackwardRowsBody()],
  ];
  const count = uleb(functions.length);
  const types = section(1, [...count, ...functions.flatMap(([, params]) => funcType(params))]);
  const funcs = section(3, [...count, ...functions.flatMap((_, i) => uleb(i))]);
  const memory = section(5, [...uleb(1), 0x00, ...uleb(1)]); // 1 page to start, grown on demand
  const exports = section(7, [...uleb(functions.length + 1),
                              ...functions.flatMap(([fname], i) => [...name(fname), 0x00, ...uleb(i)]),
                              ...name('memory'), 0x02, ...uleb(0)]);
  const code = section(10, [...count, ...functions.flatMap(([, , body]) => body)]);
  return new Uint8Array([...magic, ...types, ...funcs, ...memory, ...exports, ...code]);
}

export type GemmBlock = (aPtr: number, aTileBytes: number, aRowBytes: number, aStepBytes: number, bPtr: number,
                         bPanelBytes: number, cPtr: number, mTiles: number, nTiles: number, kc: number,
                         ldcBytes: number, accumulate: number) => void;

export type SoftmaxRows = (ptr: number, rows: number, rowStrideBytes: number, firstCount: number,
                           countStep: number, width: number) => void;
export type SoftmaxBackwardRows = (pPtr: number, dPtr: number, rows: number, rowStrideBytes: number,
                                   width: number, scale: number) => void;

export interface SimdKernels {
  memory: WebAssembly.Memory;
  gemmBlock: GemmBlock;
  softmaxRows: SoftmaxRows;
  softmaxBackwardRows: SoftmaxBackwardRows;
  geluForward(xPtr: number, outPtr: number, n: number): void;
  geluBackward(doutPtr: number, xPtr: number, dxPtr: number, n: number): void;
  decodeAttend(qPtr: number, kPtr: number, vPtr: number, n: number, hs: number, scale: number,
               scoresPtr: number, outPtr: number): void;
  normForwardRows(xPtr: number, gPtr: number, outPtr: number, rstdPtr: number, rows: number, d: number,
                  eps: number): void;
  normBackwardRows(dxPtr: number, dgPtr: number, doutPtr: number, xPtr: number, rstdPtr: number,
                   gPtr: number, rows: number, d: number): void;
}

/**
 * Instantiates the kernels (compiled synchronously: fine in Node and in workers), or returns null
 * where WebAssembly SIMD is unavailable or compiling is not allowed (the caller then uses loops).
 */
export function createSimdKernels(): SimdKernels | null {
  if (typeof WebAssembly === 'undefined') return null;
  const bytes = moduleBytes();
  try {
    if (!WebAssembly.validate(bytes)) return null;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    return instance.exports as unknown as SimdKernels;
  } catch {
    return null;
  }
}
