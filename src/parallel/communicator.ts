/**
 * Data parallelism's few collectives, behind one interface so that training and evaluation have a
 * single code path: one process is a world of size 1 whose collectives do nothing; under `mpirun`
 * the same calls go to MPI (mpi.ts). `world()` (world.ts) gives the process's communicator.
 */

/** The arrays a reduction works on. */
export type ReducibleArray = Float32Array | Float64Array | Int32Array;

export interface Communicator {
  /** This process's index, 0..size-1; rank 0 alone prints and writes files. */
  readonly rank: number;
  readonly size: number;
  /** Where this rank runs (for messages). */
  readonly host: string;
  /** Replaces `data` on every rank by its element-wise sum (or maximum) over the ranks. */
  allReduce(data: ReducibleArray, op?: 'sum' | 'max'): void;
  /** Copies the root's bytes of `data` into every rank's `data` (same length everywhere). */
  broadcast(data: ArrayBufferView, root?: number): void;
  /** Every rank's bytes (any length), in rank order, on the root; null on the others. */
  gather(data: Uint8Array, root?: number): Uint8Array[] | null;
  barrier(): void;
  /** Ends every rank of the job with `code`; never returns. */
  abort(code: number): never;
  /** Leaves MPI cleanly (at a normal exit). */
  finalize(): void;
}

/** One process: every collective is the identity. */
export class SingleProcess implements Communicator {
  readonly rank = 0;
  readonly size = 1;
  readonly host = 'localhost';
  allReduce(): void { /* the sum over one rank is itself */ }
  broadcast(): void { /* the root already holds it */ }
  gather(data: Uint8Array): Uint8Array[] { return [data]; }
  barrier(): void { /* nobody to wait for */ }
  abort(code: number): never { process.exit(code); }
  finalize(): void { /* nothing to leave */ }
}

/** The contiguous share [from, to) of `count` items that rank `rank` of `size` takes (sizes differ by at most one). */
export function shareOf(count: number, rank: number, size: number): { from: number; to: number } {
  const base = Math.floor(count / size);
  const extra = count % size;
  const from = rank * base + Math.min(rank, extra);
  return { from, to: from + base + (rank < extra ? 1 : 0) };
}

/** A JSON-able value from the root on every rank. */
export function broadcastJson<T>(comm: Communicator, value: T, root = 0): T {
  if (comm.size === 1) return value;
  const bytes = comm.rank === root ? new TextEncoder().encode(JSON.stringify(value)) : new Uint8Array(0);
  const length = new Float64Array([bytes.length]);
  comm.broadcast(length, root);
  const buffer = comm.rank === root ? bytes : new Uint8Array(length[0]!);
  comm.broadcast(buffer, root);
  return JSON.parse(new TextDecoder().decode(buffer)) as T;
}

/** `decide()` evaluated on the root alone (a file's existence, a measurement, a file read): its JSON-able result on every rank. */
export function decidedByRoot<T>(comm: Communicator, decide: () => T, root = 0): T {
  if (comm.size === 1) return decide();
  return broadcastJson(comm, comm.rank === root ? decide() : (null as T), root);
}

/**
 * The items of a set split over the ranks (rank r computed items [from, to) of `shareOf(count, r,
 * size)`, `width` values each, in `mine`), joined on every rank: each places its share in a zeroed
 * copy of the whole and the sum over the ranks fills every share.
 */
export function allGatherShares(comm: Communicator, mine: Int32Array, count: number, width: number): Int32Array {
  if (comm.size === 1) return mine;
  const all = new Int32Array(count * width);
  all.set(mine, shareOf(count, comm.rank, comm.size).from * width);
  comm.allReduce(all);
  return all;
}

/**
 * Checks at start that every rank sees the same facts (model config, options, dataset digest,
 * code version …): named values that must agree. On a mismatch every rank throws the same error,
 * naming the fact and the ranks' values.
 */
export function requireSameOnEveryRank(comm: Communicator, facts: Record<string, string>): void {
  if (comm.size === 1) return;
  const gathered = comm.gather(new TextEncoder().encode(JSON.stringify({ host: comm.host, facts })));
  let problem = '';
  if (gathered) {
    const views = gathered.map((b) => JSON.parse(new TextDecoder().decode(b)) as { host: string; facts: Record<string, string> });
    const root = views[0]!;
    const lines: string[] = [];
    for (const [r, v] of views.entries()) {
      for (const name of new Set([...Object.keys(root.facts), ...Object.keys(v.facts)])) {
        if (v.facts[name] !== root.facts[name]) {
          lines.push(`${name}: rank 0 (${root.host}) has ${root.facts[name] ?? 'nothing'}, rank ${r} (${v.host}) has ${v.facts[name] ?? 'nothing'}`);
        }
      }
    }
    if (lines.length > 0) problem = `the ${comm.size} ranks do not agree, so none starts:\n  ${lines.join('\n  ')}`;
  }
  problem = broadcastJson(comm, problem);
  if (problem) throw new Error(problem);
}

/** The rows each rank computed (rank r: its `shareOf` rows, `width` floats each), concatenated on the root; null elsewhere. */
export function gatherRows(comm: Communicator, mine: Float32Array, width: number): Float32Array | null {
  if (comm.size === 1) return mine;
  const parts = comm.gather(new Uint8Array(mine.buffer, mine.byteOffset, mine.byteLength));
  if (!parts) return null;
  const total = parts.reduce((s, p) => s + p.byteLength, 0) / 4;
  if (total % width !== 0) throw new Error(`gatherRows: ${total} floats are not rows of ${width}`);
  const out = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(new Float32Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength)), at);
    at += p.byteLength / 4;
  }
  return out;
}
