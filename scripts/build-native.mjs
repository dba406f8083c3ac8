#!/usr/bin/env node
// Builds the optional OpenBLAS addon (native/). Never fails the install: without a compiler or
// OpenBLAS the portable TypeScript kernels are used, and this says how to get the fast path.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
if (process.env.IGPT_SKIP_NATIVE === '1' || !existsSync(join(nativeDir, 'binding.gyp'))) process.exit(0);

const hint = 'igpt: the native OpenBLAS kernels were not built; the portable kernels will be used (slower).\n' +
  '      For the fast path: apt-get install -y libopenblas-dev g++ make python3, then npm rebuild igpt';
// Debian puts cblas.h under the multiarch directory (/usr/include/x86_64-linux-gnu/ and the like).
const includeDirs = ['/usr/include', '/usr/include/openblas', '/usr/local/include',
  ...(existsSync('/usr/include') ? readdirSync('/usr/include').filter((d) => d.endsWith('-linux-gnu')).map((d) => join('/usr/include', d)) : [])];
if (!includeDirs.some((d) => existsSync(join(d, 'cblas.h')))) {
  console.warn(hint);
  process.exit(0);
}
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
const args = gyp ? [gyp, 'rebuild', ...nodeDirArg] : null;
const r = args ? spawnSync(process.execPath, args, { cwd: nativeDir, stdio: 'inherit' }) : { status: 1 };
if (r.status !== 0) console.warn(hint);
