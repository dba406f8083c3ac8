/**
 * The emoji sets of npm's `emoji-datasource-<vendor>` packages as an ordinary image folder: one
 * subfolder per category (Smileys & Emotion, Flags, …) holding the 64×64 RGBA PNGs, so a color
 * study reads them exactly as it would a user's own folder.
 *
 * A package holds `emoji.json` (a list of entries with the PNG's file name `image`, a `category`,
 * `has_img_<vendor>`, and `skin_variations`: skin-tone variants, each with its own `image`) and the
 * images under `img/<vendor>/64/`. The packages are large (about 100 MB), so they are never
 * dependencies: `installEmojiPackage` puts one into a cache folder with npm when asked.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const EMOJI_VENDORS = ['apple', 'twitter', 'facebook', 'google'] as const;
export type EmojiVendor = (typeof EMOJI_VENDORS)[number];

/** Who may use each vendor's images, as the packages' README says: results shown to others should say it. */
export const EMOJI_IMAGE_LICENSES: Record<EmojiVendor, string> = {
  apple: 'Apple images © Apple Inc., not licensed for commercial use',
  twitter: 'Twitter images (Twemoji) under CC BY 4.0: credit them where they are shown',
  facebook: 'Facebook images © Facebook, Inc., no clear license',
  google: 'Google (Noto) images under the Apache License 2.0',
};

/** The category of skin-tone swatches and hair styles: parts of emoji, not pictures of things. */
const DROPPED_CATEGORY = 'Component';

/** Written into the folder so a later run knows it may replace it; readers skip dot files. */
export const EMOJI_FOLDER_MARKER = '.emoji-folder.json';

export function emojiPackageName(vendor: EmojiVendor): string {
  return `emoji-datasource-${vendor}`;
}

/** $XDG_CACHE_HOME/igpt/emoji, else ~/.cache/igpt/emoji. */
export function defaultEmojiCache(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'igpt', 'emoji');
}

/** Where `installEmojiPackage` puts a vendor's package inside `cache`. */
export function emojiPackageDir(cache: string, vendor: EmojiVendor): string {
  return join(cache, 'node_modules', emojiPackageName(vendor));
}

/**
 * Installs (or updates) a vendor's package into `cache` with `npm install --prefix`: the cache has
 * its own package.json, so installing another vendor later keeps this one. `spec` is what npm
 * installs: the package name by default, or a pinned version (`emoji-datasource-apple@16.0.0`)
 * or a local folder. Returns the package folder.
 */
export function installEmojiPackage(cache: string, vendor: EmojiVendor, spec: string = emojiPackageName(vendor)): string {
  mkdirSync(cache, { recursive: true });
  const args = ['install', '--prefix', cache, '--no-audit', '--no-fund', '--no-update-notifier', spec];
  try {
    execFileSync('npm', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    throw new Error(`npm ${args.join(' ')} failed (${(err as Error).message.split('\n')[0]})`);
  }
  const dir = emojiPackageDir(cache, vendor);
  if (!existsSync(join(dir, 'emoji.json'))) throw new Error(`${dir}: no emoji.json after npm installed ${spec}`);
  return dir;
}

/** One picture: its category and the PNG's file name under img/<vendor>/64/. */
export interface EmojiImage { category: string; image: string }

interface EmojiEntry {
  image?: unknown; category?: unknown; skin_variations?: unknown; [hasImage: `has_img_${string}`]: unknown;
}

/**
 * The pictures a vendor draws, from the package's emoji.json: every entry with `has_img_<vendor>`
 * except the Component category, and with `skinTones` every skin-tone variant the vendor draws too
 * (same category as their base emoji).
 */
export function readEmojiIndex(packageDir: string, vendor: EmojiVendor, skinTones: boolean): EmojiImage[] {
  const path = join(packageDir, 'emoji.json');
  if (!existsSync(path)) throw new Error(`${path}: not found (is ${packageDir} an ${emojiPackageName(vendor)} package?)`);
  let entries: unknown;
  try {
    entries = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(entries)) throw new Error(`${path}: expected a list of emoji`);
  const hasImage = `has_img_${vendor}` as const;
  const images: EmojiImage[] = [];
  entries.forEach((raw: unknown, i) => {
    const e = (raw ?? {}) as EmojiEntry;
    if (typeof e.image !== 'string' || typeof e.category !== 'string') {
      throw new Error(`${path}: entry ${i} has no "image" and "category" strings`);
    }
    if (e.category === DROPPED_CATEGORY || e[hasImage] !== true) return;
    const category = e.category;
    images.push({ category, image: e.image });
    if (!skinTones || typeof e.skin_variations !== 'object' || e.skin_variations === null) return;
    for (const v of Object.values(e.skin_variations as Record<string, EmojiEntry>)) {
      if (typeof v?.image === 'string' && v[hasImage] === true) images.push({ category, image: v.image });
    }
  });
  return images;
}

export interface EmojiFolderOptions {
  /** An emoji-datasource-<vendor> package folder. */
  packageDir: string;
  vendor: EmojiVendor;
  /** The image folder to write: <out>/<category>/<image>.png. */
  out: string;
  /** Add the skin-tone variants (near-copies of their base emoji in another color). */
  skinTones?: boolean;
  /** Copy the PNGs instead of linking to them in the package. */
  copy?: boolean;
}

export interface EmojiFolderSummary {
  /** Images per category, categories sorted by name (the class order of the folder). */
  counts: Map<string, number>;
  total: number;
  /** Files emoji.json lists that the package lacks (skipped). */
  missing: string[];
}

/**
 * Lays out the image folder. It is built under a temporary name and renamed into place; an
 * existing `out` is replaced only if this function made it (it holds EMOJI_FOLDER_MARKER).
 */
export function layoutEmojiFolder(o: EmojiFolderOptions): EmojiFolderSummary {
  const imageDir = resolve(o.packageDir, 'img', o.vendor, '64');
  if (!existsSync(imageDir)) throw new Error(`${imageDir}: not found (is ${o.packageDir} an ${emojiPackageName(o.vendor)} package?)`);
  if (existsSync(o.out) && readdirSync(o.out).length > 0 && !existsSync(join(o.out, EMOJI_FOLDER_MARKER))) {
    throw new Error(`${o.out}: exists and was not made by emoji-folder; remove it or choose another --out`);
  }
  const images = readEmojiIndex(o.packageDir, o.vendor, o.skinTones ?? false);
  const temp = `${o.out}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  const counts = new Map<string, number>();
  const missing: string[] = [];
  try {
    for (const { category, image } of images) {
      const src = join(imageDir, image);
      if (!existsSync(src)) { missing.push(src); continue; }
      const dir = join(temp, category);
      if (!counts.has(category)) mkdirSync(dir, { recursive: true });
      if (o.copy) copyFileSync(src, join(dir, image)); else symlinkSync(src, join(dir, image));
      counts.set(category, (counts.get(category) ?? 0) + 1);
    }
    if (counts.size === 0) throw new Error(`${imageDir}: none of the ${images.length} images emoji.json lists for ${o.vendor} are there`);
    const summary = {
      vendor: o.vendor, license: EMOJI_IMAGE_LICENSES[o.vendor], package: resolve(o.packageDir),
      skinTones: o.skinTones ?? false, counts: Object.fromEntries(counts),
    };
    writeFileSync(join(temp, EMOJI_FOLDER_MARKER), JSON.stringify(summary, null, 1) + '\n');
    rmSync(o.out, { recursive: true, force: true });
    renameSync(temp, o.out);
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
  const sorted = new Map([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { counts: sorted, total: images.length - missing.length, missing };
}
