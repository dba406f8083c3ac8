/** Issue 22 with webgpu: which adapter an MPI rank takes, and reading Dawn's list of adapters. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adapterForRank, parseAdapterList } from '../src/kernels/webgpu/node-gpu.js';

test('rank i takes adapter i mod count; none listed, none chosen', () => {
  const names = ['GPU 0', 'GPU 1', 'GPU 2'];
  assert.deepEqual([0, 1, 2, 3, 4, 7].map((rank) => adapterForRank(names, rank)), ['GPU 0', 'GPU 1', 'GPU 2', 'GPU 0', 'GPU 1', 'GPU 1']);
  assert.equal(adapterForRank(['only'], 5), 'only');
  assert.equal(adapterForRank([], 0), undefined);
});

test('the adapter names are read from Dawn\'s "Available adapters" error', () => {
  // As the webgpu package (Dawn) words it when asked for an adapter it does not have.
  const message = "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3'\n" +
    " * backend: 'vulkan', name: 'SwiftShader Device (Subzero)'\n";
  assert.deepEqual(parseAdapterList(message), ['NVIDIA H100 80GB HBM3', 'SwiftShader Device (Subzero)']);
  assert.deepEqual(parseAdapterList('no suitable backends found'), []);
});
