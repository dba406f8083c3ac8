#!/usr/bin/env node
/** The `igpt` command line: one file per command under src/cli/, each exporting `register`. */
import { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandModule } from './command.js';
import { paletteCommand } from './palette.js';
import { encodeCommand } from './encode.js';
import { showCommand } from './show.js';
import { emojiFolderCommand } from './emoji-folder.js';
import { infoCommand } from './info.js';
import { pretrainCommand } from './pretrain.js';
import { lrSweepCommand } from './lr-sweep.js';
import { evalNllCommand } from './eval-nll.js';
import { sampleCommand } from './sample.js';
import { finetuneCommand } from './finetune.js';
import { probeCommand } from './probe.js';
import { serveCommand } from './serve.js';
import { lowdataCommand } from './lowdata.js';
import { demoCommand } from './demo.js';
import { experimentCommand } from './experiment.js';
import { probeCurveCommand } from './probe-curve.js';
import { compareCommand } from './compare.js';
import { convertCommand } from './convert.js';
import { completeCommand } from './complete.js';
import { featuresCommand } from './features.js';
import { classifyCommand } from './classify.js';
import { reportFatal, world } from '../parallel/world.js';

const commands: CommandModule[] = [
  // Each command module adds itself here, in the order `igpt --help` lists them.
  demoCommand,
  experimentCommand,
  compareCommand,
  paletteCommand,
  encodeCommand,
  showCommand,
  emojiFolderCommand,
  pretrainCommand,
  lrSweepCommand,
  evalNllCommand,
  probeCommand,
  probeCurveCommand,
  lowdataCommand,
  finetuneCommand,
  sampleCommand,
  completeCommand,
  featuresCommand,
  classifyCommand,
  serveCommand,
  infoCommand,
  convertCommand,
];

const pkg = JSON.parse(readFileSync(findPackageJson(), 'utf8')) as { version: string };
const program = new Command('igpt')
  .description('Image-GPT in TypeScript: palettes, pixel tokens, pretraining, probes, fine-tuning, sampling')
  .version(pkg.version)
  .showHelpAfterError();
for (const c of commands) c.register(program);
// Under `mpirun -np N` (N > 1), the commands that split their work over the ranks.
const PARALLEL_COMMANDS = new Set(['experiment', 'pretrain', 'finetune', 'eval-nll', 'probe', 'lowdata', 'probe-curve', 'sample', 'complete']);
program.hook('preAction', (_program, command) => {
  if (world().size > 1 && !PARALLEL_COMMANDS.has(command.name())) {
    throw new Error(`igpt ${command.name()} does not split its work over MPI ranks; run it without mpirun ` +
      `(under mpirun: ${[...PARALLEL_COMMANDS].join(', ')})`);
  }
});
program.parseAsync(process.argv).catch((err: unknown) => {
  // Errors we raise carry a message meant for people; a stack trace is only for unexpected ones.
  const message = err instanceof Error ? err.message : String(err);
  reportFatal(message);
  if (process.env.IGPT_DEBUG && err instanceof Error) console.error(err.stack);
  process.exit(1);
});

/** package.json above this file: dist/src/cli when built, src/cli under tsx. */
function findPackageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'package.json');
}
