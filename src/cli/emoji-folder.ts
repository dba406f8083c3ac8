/** `igpt emoji-folder`: an npm emoji set (emoji-datasource-<vendor>) as an image folder, one subfolder per category. */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import {
  defaultEmojiCache, EMOJI_IMAGE_LICENSES, EMOJI_VENDORS, emojiPackageDir, emojiPackageName, installEmojiPackage, layoutEmojiFolder, type EmojiVendor,
} from '../data/emoji.js';

interface EmojiFolderFlags { out: string; vendor: string; cache: string; package?: string; install?: boolean; skinTones?: boolean; copy?: boolean }

export const emojiFolderCommand: CommandModule = {
  register(program: Command): void {
    program
      .command('emoji-folder')
      .description('lay out an npm emoji set (64×64 color PNGs) as an image folder, one subfolder per category')
      .requiredOption('--out <dir>', 'image folder to write: <dir>/<category>/<code>.png')
      .option('--vendor <name>', `emoji set: ${EMOJI_VENDORS.join(', ')} (twitter and google are openly licensed)`, 'apple')
      .option('--cache <dir>', 'where --install puts the npm package', defaultEmojiCache())
      .option('--install', 'install (or update) emoji-datasource-<vendor> into the cache with npm first (about 100 MB)')
      .option('--package <dir>', 'an emoji-datasource-<vendor> package folder to read instead of the cache\'s')
      .option('--skin-tones', 'add the skin-tone variants (near-copies of their base emoji, mostly People & Body)')
      .option('--copy', 'copy the PNGs instead of linking to them in the package')
      .action((flags: EmojiFolderFlags) => {
        if (!(EMOJI_VENDORS as readonly string[]).includes(flags.vendor)) {
          throw new Error(`--vendor must be one of ${EMOJI_VENDORS.join(', ')}, got "${flags.vendor}"`);
        }
        if (flags.install && flags.package !== undefined) throw new Error('--install and --package exclude each other: --install reads the package it installs into --cache');
        const vendor = flags.vendor as EmojiVendor;
        let packageDir = flags.package ?? emojiPackageDir(flags.cache, vendor);
        if (flags.install) {
          console.log(`installing ${emojiPackageName(vendor)} into ${flags.cache} with npm…`);
          packageDir = installEmojiPackage(flags.cache, vendor);
        } else if (!existsSync(packageDir)) {
          throw new Error(`${packageDir}: not found; add --install to fetch ${emojiPackageName(vendor)} into ${flags.cache} with npm (about 100 MB), or pass --package <dir>`);
        }
        const summary = layoutEmojiFolder({ packageDir, vendor, out: flags.out, skinTones: flags.skinTones, copy: flags.copy });
        for (const missing of summary.missing.slice(0, 5)) console.log(`  missing, skipped: ${missing}`);
        if (summary.missing.length > 5) console.log(`  … and ${summary.missing.length - 5} more missing`);
        const perCategory = [...summary.counts].map(([c, n]) => `${c} ${n}`).join(', ');
        console.log(`${flags.out}: ${summary.total} ${vendor} emoji in ${summary.counts.size} categories (${perCategory}), ` +
          `${flags.copy ? 'copied' : 'linked'} from ${packageDir}`);
        console.log(`  ${EMOJI_IMAGE_LICENSES[vendor]}`);
      });
  },
};
