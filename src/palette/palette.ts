/** A color palette: k centers of `channels` values each, in [-1, 1] (OpenAI's and HF's scale). */
export interface Palette {
  k: number;
  channels: 1 | 3;
  /** k × channels, row-major. */
  centers: Float32Array;
}
