#!/usr/bin/env node
// Builds the optional addons. Never fails the install:
//  native/      the OpenBLAS kernels; without a compiler or OpenBLAS the portable TypeScript kernels
//               are used, and this says how to get the fast path. oneDNN (Debian libdnnl-dev) is
//               linked when its header is found, for the bf16 matrix products; `--has-dnnl` prints
//               1 or 0 for that decision (native/binding.gyp asks it, so a plain `node-gyp rebuild`
//               decides the same way).
//  native-mpi/  the MPI binding for `mpirun -np N igpt …`; built only when Open MPI's mpicc and
//               mpi.h are found (single-process use never needs it).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

// Debian puts cblas.h under the multiarch directory (/usr/include/x86_64-linux-gnu/ and the like).
const includeDirs = ['/usr/include', '/usr/include/openblas', '/usr/local/include',
  ...(existsSync('/usr/include') ? readdirSync('/usr/include').filter((d) => d.endsWith('-linux-gnu')).map((d) => join('/usr/include', d)) : [])];
const hasHeader = (name) => includeDirs.some((d) => existsSync(join(d, name)));

if (process.argv.includes('--has-dnnl')) {
  // IGPT_WITH_DNNL=0 builds without oneDNN even where it is installed (to check that build).
  console.log(process.env.IGPT_WITH_DNNL !== '0' && hasHeader('oneapi/dnnl/dnnl.hpp') ? 1 : 0);
  process.exit(0);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let gyp;
try {
  gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
} catch {
  gyp = process.env.npm_config_node_gyp; // npm's bundled node-gyp
}
// Build against the headers of the Node that runs us when they are installed beside it (Debian's
// nodejs: /usr/include/node), so node-gyp need not download them (npm passes its own nodedir).
const nodeDir = dirname(dirname(process.execPath));
const nodeDirArg = !process.env.npm_config_nodedir && existsSync(join(nodeDir, 'include', 'node', 'node_api.h'))
  ? [`--nodedir=${nodeDir}`] : [];

/** node-gyp rebuild in `dir`; true when it built. */
function build(dir) {
  if (!gyp) return false;
  return spawnSync(process.execPath, [gyp, 'rebuild', ...nodeDirArg], { cwd: dir, stdio: 'inherit' }).status === 0;
}

function buildKernels() {
  const dir = join(root, 'native');
  if (process.env.IGPT_SKIP_NATIVE === '1' || !existsSync(join(dir, 'binding.gyp'))) return;
  const hint = 'igpt: the native OpenBLAS kernels were not built; the portable kernels will be used (slower).\n' +
    '      For the fast path: apt-get install -y libopenblas-dev g++ make python3, then npm rebuild igpt';
  if (!hasHeader('cblas.h') || !build(dir)) console.warn(hint);
  else if (!hasHeader('oneapi/dnnl/dnnl.hpp')) {
    console.warn('igpt: built without oneDNN, so without bf16 matrix products; for them: apt-get install -y libdnnl-dev, then npm rebuild igpt');
  }
}

function buildMpi() {
  const dir = join(root, 'native-mpi');
  if (process.env.IGPT_SKIP_NATIVE === '1' || !existsSync(join(dir, 'binding.gyp'))) return;
  // mpicc knows where its mpi.h is (Debian: /usr/lib/<arch>/openmpi/include); no mpicc, no MPI.
  const where = spawnSync('mpicc', ['--showme:incdirs'], { encoding: 'utf8' });
  if (where.status !== 0 || !where.stdout.split(/\s+/).some((d) => d && existsSync(join(d, 'mpi.h')))) return;
  if (!build(dir)) {
    console.warn('igpt: the MPI binding (native-mpi/) did not build; `mpirun -np N igpt …` will not work, single-process use is unaffected.');
  }
}

buildKernels();
buildMpi();
