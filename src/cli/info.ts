/** `igpt info <model-dir>`: what a model folder (or one weight file) holds, read from headers only. */
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { describeModelFolder, describeWeightFile, verifyText } from '../pipeline/info.js';

export const infoCommand: CommandModule = {
  register(program: Command): void {
    program
      .command('info')
      .description('show a model folder\'s config, parameter count, palette and stored tensors (or one weight file\'s tensors)')
      .argument('<model-dir>', 'Hugging Face ImageGPT folder, owner/name in the Hugging Face cache, or one weight file (.safetensors, pytorch_model.bin)')
      .option('--json', 'print machine-readable JSON')
      .option('--verify', 'also check every file against the checksums recorded when it was written (checksums.json)')
      .action((target: string, opts: { json?: boolean; verify?: boolean }) => {
        const isFile = statSync(target, { throwIfNoEntry: false })?.isFile() ?? false;
        const text = isFile ? describeWeightFile(target, opts.json ?? false) : describeModelFolder(target, opts.json ?? false);
        process.stdout.write(text);
        if (opts.verify) process.stdout.write(verifyText(isFile ? dirname(target) : target, isFile ? basename(target) : undefined) + '\n');
      });
  },
};
