/**
 * The MPI communicator: the Node-API binding built from native-mpi/ (Open MPI), loaded only when
 * this process was started by mpirun, so that nothing else ever needs MPI.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Communicator, ReducibleArray } from './communicator.js';

interface MpiAddon {
  init(): void;
  finalize(): void;
  rank(): number;
  size(): number;
  processorName(): string;
  allReduce(data: ReducibleArray, op: 'sum' | 'max'): void;
  broadcast(data: ArrayBufferView, root: number): void;
  gather(data: Uint8Array, root: number): Uint8Array[] | null;
  barrier(): void;
  abort(code: number): never;
}

const ADDON = 'native-mpi/build/Release/igpt_mpi.node';

export const INSTALL_HINT = 'install Open MPI and rebuild igpt: apt-get install -y openmpi-bin libopenmpi-dev && npm rebuild igpt';

/**
 * The launch this process is part of, from the variables mpirun sets (Open MPI: OMPI_COMM_WORLD_*;
 * PMIx launchers: PMIX_RANK; MPICH's hydra: PMI_RANK/PMI_SIZE), or null when started on its own.
 * `size` is null when the launcher does not say; `localSize`: ranks on this machine, when known.
 */
export function mpiLaunch(env: NodeJS.ProcessEnv = process.env): { size: number | null; localSize: number | null } | null {
  const size = env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE;
  if (size === undefined && env.PMIX_RANK === undefined && env.PMI_RANK === undefined) return null;
  const local = env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.MPI_LOCALNRANKS;
  return { size: size !== undefined ? Number(size) : null, localSize: local !== undefined ? Number(local) : null };
}

/** The addon's path: IGPT_MPI_ADDON, else the package root (two levels up from src/parallel, three from dist/src/parallel). */
function addonCandidates(): string[] {
  const override = process.env.IGPT_MPI_ADDON;
  if (override) return [override];
  return ['../../', '../../../'].map((up) => fileURLToPath(new URL(up + ADDON, import.meta.url)));
}

/** Initializes MPI and returns the world communicator; a clear error when the binding is missing. */
export function openMpi(): Communicator {
  const path = addonCandidates().find((p) => existsSync(p));
  if (!path) {
    throw new Error(`started by mpirun, but igpt's MPI binding is not built (${addonCandidates()[0]} is missing); ${INSTALL_HINT}`);
  }
  let addon: MpiAddon;
  try {
    addon = createRequire(import.meta.url)(path) as MpiAddon;
  } catch (e) {
    throw new Error(`started by mpirun, but igpt's MPI binding (${path}) does not load: ${(e as Error).message}; ${INSTALL_HINT}`);
  }
  addon.init();
  return new MpiCommunicator(addon);
}

class MpiCommunicator implements Communicator {
  readonly rank: number;
  readonly size: number;
  readonly host: string;

  constructor(private readonly mpi: MpiAddon) {
    this.rank = mpi.rank();
    this.size = mpi.size();
    this.host = mpi.processorName();
  }

  allReduce(data: ReducibleArray, op: 'sum' | 'max' = 'sum'): void { this.mpi.allReduce(data, op); }
  broadcast(data: ArrayBufferView, root = 0): void { this.mpi.broadcast(data, root); }
  gather(data: Uint8Array, root = 0): Uint8Array[] | null { return this.mpi.gather(data, root); }
  barrier(): void { this.mpi.barrier(); }
  abort(code: number): never { return this.mpi.abort(code); }
  finalize(): void { this.mpi.finalize(); }
}
