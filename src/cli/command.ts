import type { Command } from 'commander';

/** A CLI command: registers itself (name, options, help, action) on the program. */
export interface CommandModule { register(program: Command): void }
