/**
 * Checkpoint I/O benchmark: save and load a Hugging Face ImageGPT folder of iGPT-S size (76.7M
 * parameters, 307 MB of float32; --quick: the cpu-m reference config) against PyTorch's
 * torch.save / torch.load of the same state dict (bench/torch_checkpoint_io.py), both fsynced,
 * in the same run. Ratios are PyTorch's time over ours (> 1: we are faster).
 *
 *   node --import tsx bench/io.ts [--quick]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspectModelFolder, loadModelFolder, saveModelFolder } from '../src/io/hf.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { ParameterTensors } from '../src/model/parameters.js';
import { Rng } from '../src/util/rng.js';
import type { BenchResult } from './types.js';
import { hasTorch, isError, median, python, repoRoot, runJson } from './util.js';

interface TorchJson { saveSeconds: number; loadSeconds: number; bytes: number }

export async function run(opts: { quick: boolean }): Promise<BenchResult[]> {
  const preset = opts.quick ? 'cpu-m' : 'igpt-s';
  const config = opts.quick ? makeConfig(presetShape(preset), 16, 784, 0) : makeConfig(presetShape(preset), 512, 1024, 0);
  const repeats = opts.quick ? 2 : 3;
  const params = new ParameterTensors(config);
  const rng = new Rng(0);
  for (let i = 0; i < params.data.length; i++) params.data[i] = rng.next() - 0.5;
  const palette = { k: config.vocabSize - 1, channels: 1 as const, centers: new Float32Array(config.vocabSize - 1) };
  const mb = (params.data.byteLength / 1e6).toFixed(0);
  const dir = mkdtempSync(join(tmpdir(), 'igpt-bench-io-'));
  try {
    const saves: number[] = [], loads: number[] = [], inspects: number[] = [];
    for (let r = 0; r < repeats; r++) {
      let t = performance.now();
      saveModelFolder(join(dir, 'ours'), params, palette);
      saves.push((performance.now() - t) / 1000);
      t = performance.now();
      const loaded = loadModelFolder(join(dir, 'ours'));
      loads.push((performance.now() - t) / 1000);
      if (loaded.params.data[12345] !== params.data[12345]) throw new Error('bench/io: load gave other values');
      t = performance.now();
      inspectModelFolder(join(dir, 'ours'));
      inspects.push((performance.now() - t) / 1000);
    }
    const save = median(saves), load = median(loads);
    const what = `${preset} (${config.nEmbd}d ${config.nLayer}L, ${mb} MB)`;
    const results: BenchResult[] = [
      { name: `io: save HF folder, ${what}`, value: save, unit: 's' },
      { name: `io: load HF folder, ${what}`, value: load, unit: 's' },
      { name: `io: igpt info (headers only), ${what}`, value: median(inspects) * 1000, unit: 'ms' },
    ];
    if (hasTorch()) {
      const peer = runJson<TorchJson>(python, [join(repoRoot, 'bench', 'torch_checkpoint_io.py'), dir,
        String(config.vocabSize), String(config.nPositions), String(config.nEmbd), String(config.nLayer), String(repeats)]);
      if (isError(peer)) {
        results[0].note = results[1].note = `peer failed: ${peer.error}`;
      } else {
        Object.assign(results[0], { peer: 'torch.save (pytorch_model.bin)', peerValue: peer.saveSeconds, ratio: peer.saveSeconds / save });
        Object.assign(results[1], { peer: 'torch.load (pytorch_model.bin)', peerValue: peer.loadSeconds, ratio: peer.loadSeconds / load });
      }
    } else {
      results[0].note = results[1].note = 'PyTorch not available: no peer';
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run({ quick: process.argv.includes('--quick') });
  for (const r of results) {
    const peer = r.peer ? `   ${r.peer}: ${r.peerValue!.toFixed(3)} ${r.unit}, ratio ${r.ratio!.toFixed(2)}` : '';
    console.log(`${r.name}: ${r.value.toFixed(3)} ${r.unit}${peer}${r.note ? `   (${r.note})` : ''}`);
  }
}
