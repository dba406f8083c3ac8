/**
 * The process's communicator. Started alone, it is a world of one and nothing needs MPI; started
 * by mpirun with more than one rank, MPI is initialized here, once, and:
 *  - each rank's native kernels default to its share of the machine's cores (IGPT_THREADS);
 *  - ranks other than 0 are silent (their stdout and stderr are dropped) unless they fail:
 *    `reportFatal` still reaches the terminal;
 *  - a normal exit finalizes MPI, and any other exit aborts the whole job (MPI_Abort), so one
 *    rank failing never leaves the others waiting in a collective.
 */
import { availableParallelism } from 'node:os';
import { writeSync } from 'node:fs';
import { SingleProcess, type Communicator } from './communicator.js';
import { mpiLaunch, openMpi } from './mpi.js';

let current: Communicator | undefined;

export function world(): Communicator {
  if (current) return current;
  const launch = mpiLaunch();
  if (!launch || launch.size === 1) return (current = new SingleProcess());
  if (process.env.IGPT_THREADS === undefined && launch.localSize) {
    // Read by the native kernels when their thread pool starts (first use, after this).
    process.env.IGPT_THREADS = String(Math.max(1, Math.floor(availableParallelism() / launch.localSize)));
  }
  const comm = openMpi();
  process.on('exit', (code) => {
    if (code === 0) comm.finalize();
    else comm.abort(code);
  });
  if (comm.rank > 0) silenceOutput();
  return (current = comm);
}

/** The fatal error of a command, on stderr whatever the rank (others' output is dropped). */
export function reportFatal(message: string): void {
  const comm = current;
  const who = comm && comm.size > 1 ? `rank ${comm.rank}/${comm.size} on ${comm.host}: ` : '';
  writeSync(2, `igpt: ${who}${message}\n`);
}

function silenceOutput(): void {
  const drop = ((_chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    const done = typeof encoding === 'function' ? encoding : callback;
    if (typeof done === 'function') (done as () => void)();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = drop;
  process.stderr.write = drop;
}
