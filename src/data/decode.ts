/**
 * One image file's bytes (PNG, JPEG, WebP, …, decoded by sharp) → pixels the model reads: resized
 * to side × side (shorter side, then center crop), transparency laid over a background color, in
 * gray or RGB. Every reader of image files goes through here, so the palette fit, the tokens and
 * anything that completes a user's picture see the same pixels.
 */
import sharp from 'sharp';
import { compositeOver, convertPixelChannels, DEFAULT_BACKGROUND, type Rgb } from './pixels.js';

// libvips' operation cache keys file loads by path (and buffer loads by address): a file rewritten
// in place, or a decode abandoned mid-read, could hand a later read another image's state. Every
// image is decoded once, from bytes its reader holds, so the cache only adds risk.
sharp.cache(false);

export interface DecodeOptions {
  /** 1 = gray (BT.601 luma of the composited color), 3 = RGB. */
  channels: 1 | 3;
  /** Resize to side × side (cover, center crop); default: the image's own size. */
  side?: number;
  /** Color under transparent pixels; default white. */
  background?: Rgb;
}

export interface DecodedImage {
  /** height × width × channels bytes, HWC. */
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Decodes image bytes. The resize runs on premultiplied RGBA (sharp premultiplies around it), and
 * laying over the background is linear, so compositing after the resize gives what compositing
 * before it would: no color hidden under a transparent pixel can bleed into its neighbours.
 */
export async function decodeImageBytes(bytes: Uint8Array, opts: DecodeOptions): Promise<DecodedImage> {
  let img = sharp(bytes).ensureAlpha();
  if (opts.side !== undefined) img = img.resize(opts.side, opts.side, { fit: 'cover', position: 'centre' });
  const { data, info } = await img.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 4 || data.length !== info.width * info.height * 4) {
    throw new Error(`decoded to ${data.length} bytes of ${info.channels} channels, expected 8-bit RGBA`);
  }
  const rgb = compositeOver(data, opts.background ?? DEFAULT_BACKGROUND);
  return { data: convertPixelChannels(rgb, 3, opts.channels), width: info.width, height: info.height };
}

/** Whether the image is stored as gray (with or without alpha), from its header alone. */
export async function isGrayImageBytes(bytes: Uint8Array): Promise<boolean> {
  const m = await sharp(bytes).metadata();
  return m.space === 'b-w' || (m.channels ?? 3) <= 2;
}
