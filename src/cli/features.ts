/** `igpt features`: the paper's feature f^l of each image (files, a folder, or a token dataset) at chosen layers. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { loadTokenDataset } from '../data/tokens.js';
import { tokenFeatures } from '../eval/features.js';
import { imageFileFeatures, writeFeatureFile } from '../eval/image-files.js';
import { kernelsFromFlags, parseIntOption, parseObjectiveOverride, parseSplitOption } from './common.js';
import { imageInputOptions, openImageInputs, type ImageInputFlags } from './image-inputs.js';
import { checkModelMatchesData, openModel } from '../pipeline/open.js';
import { createProgress } from '../util/progress.js';

interface Flags extends ImageInputFlags { layer?: string; layers?: string; out: string; split: string; masks: string }

/** `--layer l`, `--layers a,b` or `all` → layer indices (0 = the embeddings' norm … L = ln_f); default L. */
export function parseLayers(flags: { layer?: string; layers?: string }, nLayer: number): number[] {
  if (flags.layer !== undefined && flags.layers !== undefined) throw new Error('give --layer or --layers, not both');
  const spec = flags.layers ?? flags.layer ?? String(nLayer);
  if (spec === 'all') return Array.from({ length: nLayer + 1 }, (_, l) => l);
  const layers = spec.split(',').map((s) => parseIntOption(flags.layers !== undefined ? '--layers' : '--layer', s.trim(), 0, nLayer));
  if (new Set(layers).size !== layers.length) throw new Error(`--layers names a layer twice: ${spec}`);
  return layers;
}

export const featuresCommand: CommandModule = {
  register(program: Command): void {
    imageInputOptions(program.command('features')
      .description('the paper\'s features (mean over positions of the normalized residual) of images, a folder or a token dataset')
      .argument('<inputs...>', 'image files or folders, or one token dataset folder (from igpt encode)'))
      .option('--layer <l>', 'one layer: 0 (embeddings) … L (ln_f, the default)')
      .option('--layers <list>', 'several layers side by side, a,b,…, or all')
      .option('--split <name>', 'token dataset: the split whose images are used', 'test')
      .option('--masks <n>', 'BERT models: average over this many random masks', '1')
      .requiredOption('--out <file>', '.npy (float32 [images, d], or [images, layers, d]) or .safetensors (layer.<l>: [images, d]); the file names go beside it as .json')
      .action(async (inputs: string[], flags: Flags) => {
        const masks = parseIntOption('--masks', flags.masks, 1);
        const tokenDir = inputs.length === 1 && existsSync(join(inputs[0], 'meta.json')) ? inputs[0] : null;
        const t0 = performance.now();
        let result: { names: string[]; features: Float32Array; layers: number[]; d: number; model: string };
        if (tokenDir) {
          const opened = openModel(flags.model, await kernelsFromFlags(flags), parseObjectiveOverride(flags.objective));
          const data = loadTokenDataset(tokenDir);
          checkModelMatchesData(opened, data, tokenDir);
          const split = data[parseSplitOption(flags.split)];
          if (split.count === 0) throw new Error(`${tokenDir}: the ${flags.split} split is empty`);
          const layers = parseLayers(flags, opened.model.config.nLayer);
          const bar = createProgress('features', split.count, 'images');
          const features = await tokenFeatures(opened.model, split.tokens, split.count, layers, {
            batch: parseIntOption('--batch', flags.batch, 1), objective: opened.objective, masks, onBatch: (done) => bar.update(done),
          });
          bar.stop();
          const names = Array.from({ length: split.count }, (_, i) => `${tokenDir}#${flags.split}/${i}`);
          result = { names, features, layers, d: opened.model.config.nEmbd, model: flags.model };
        } else {
          const { opened, palette, files, input } = openImageInputs(inputs, flags, await kernelsFromFlags(flags));
          const layers = parseLayers(flags, opened.model.config.nLayer);
          const bar = createProgress('features', files.length, 'images');
          const r = await imageFileFeatures(opened.model, palette, files, layers, {
            ...input, objective: opened.objective, masks, onProgress: (done) => bar.update(done),
          });
          bar.stop();
          result = { names: r.files, features: r.features, layers, d: opened.model.config.nEmbd, model: flags.model };
        }
        const written = writeFeatureFile(flags.out, result.features, result.names, result.layers, result.d, { model: result.model });
        console.log(`${written.path}: ${result.names.length} images × layer${result.layers.length > 1 ? 's' : ''} ${result.layers.join(',')} ` +
                    `(d ${result.d}) in ${((performance.now() - t0) / 1000).toFixed(1)} s; names in ${written.namesPath}`);
      });
  },
};
