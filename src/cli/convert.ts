/** `igpt convert <model> --out <dir>`: a model folder (e.g. OpenAI's pytorch_model.bin) written once as safetensors. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { convertModelFolder, resolveModelDir } from '../io/hf.js';
import { parameterCount } from '../model/parameters.js';

export const convertCommand: CommandModule = {
  register(program: Command): void {
    program
      .command('convert')
      .description('write a model folder (pytorch_model.bin or safetensors) as config.json + model.safetensors + ' +
                   'preprocessor_config.json, which loads faster and is what the browser demo reads')
      .argument('<model>', 'model folder, or owner/name in the Hugging Face cache')
      .requiredOption('--out <dir>', 'folder to write (created if needed)')
      .action((model: string, opts: { out: string }) => {
        const started = Date.now();
        const dir = resolveModelDir(model);
        const m = convertModelFolder(dir, opts.out);
        const skipped = m.ignoredTensors.length ? `; left out unused tensors ${m.ignoredTensors.join(', ')}` : '';
        console.log(`${opts.out}: ${parameterCount(m.config).toLocaleString('en-US')} parameters from ${dir}, ` +
                    `palette ${m.palette ? `${m.palette.k} colors` : 'none'}, ${((Date.now() - started) / 1000).toFixed(1)} s${skipped}`);
      });
  },
};
