/**
 * `igpt compare`: studies side by side (the paper's Figure 4): a table, and the depth curves on one
 * chart; pretraining runs side by side: a table, and their loss curves on one chart.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { readRunHistory, readStudy, STUDY_FILE, writeComparison, writeRunComparison } from '../pipeline/study.js';

export const compareCommand: CommandModule = {
  register(program: Command): void {
    program.command('compare')
      .argument('<folders...>', 'study folders made by igpt experiment (e.g. an AR and a BERT run), or run folders made by igpt pretrain')
      .description('studies side by side: NLL, probe, fine-tuning, low-data, depth curves on one chart; runs side by side: loss curves on one chart')
      .requiredOption('--out <dir>', 'folder for compare.md and depth.png (studies), runs.md and loss.png (every folder\'s pretraining)')
      .action(async (dirs: string[], flags: { out: string }) => {
        const studyDirs = dirs.filter((d) => existsSync(join(d, STUDY_FILE)));
        const files: string[] = [];
        if (studyDirs.length > 0) {
          const studies = await writeComparison(studyDirs.map(readStudy), flags.out);
          console.log(studies.table);
          files.push(...studies.files);
        }
        const pretrained = dirs.filter((d) => !studyDirs.includes(d) || existsSync(join(d, 'pretrain', 'history.json')));
        if (pretrained.length > 0) {
          const runs = await writeRunComparison(pretrained.map(readRunHistory), flags.out);
          console.log(runs.table);
          files.push(...runs.files);
        }
        console.log(files.join(', '));
      });
  },
};
