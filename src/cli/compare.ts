/** `igpt compare`: studies side by side (the paper's Figure 4): a table, and the depth curves on one chart. */
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { readStudy, writeComparison } from '../pipeline/study.js';

export const compareCommand: CommandModule = {
  register(program: Command): void {
    program.command('compare')
      .argument('<studies...>', 'study folders made by igpt experiment (e.g. an AR and a BERT run)')
      .description('studies side by side: NLL, probe, fine-tuning, low-data; depth curves on one chart')
      .requiredOption('--out <dir>', 'folder for compare.md and depth.png')
      .action(async (dirs: string[], flags: { out: string }) => {
        const { table, files } = await writeComparison(dirs.map(readStudy), flags.out);
        console.log(table);
        console.log(files.join(', '));
      });
  },
};
