/**
 * The demo page: picks an image (a test image, or an upload quantized with the model's palette),
 * sends it to the worker and paints the completions as their pixels stream in.
 */
import { compositeOver, convertPixelChannels, DEFAULT_BACKGROUND, formatColor, parseColor } from '../src/data/pixels.js';
import { parseTestImages } from '../src/io/test-images.js';
import { unitToByte, type Palette } from '../src/palette/palette.js';
import { Quantizer } from '../src/palette/quantize.js';
import type { FromWorker, ModelInfo, ToWorker } from './protocol.js';

/** Where the model and test images come from: beside the page, or `?model=…&images=…`. */
const params = new URLSearchParams(location.search);
const MODEL_URL = new URL(params.get('model') ?? './model/', location.href).href;
const IMAGES_URL = new URL(params.get('images') ?? './test-images.json', location.href).href;

/** Hidden pixels are painted in this color (no gray palette has it). */
const OCCLUDED = [46, 64, 96] as const;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page: no #${id}`);
  return el as T;
};
const statusLine = $<HTMLParagraphElement>('status');
const strip = $<HTMLDivElement>('strip');
const rowsInput = $<HTMLInputElement>('rows');
const countInput = $<HTMLInputElement>('count');
const temperatureInput = $<HTMLInputElement>('temperature');
const topKInput = $<HTMLInputElement>('topk');
const seedInput = $<HTMLInputElement>('seed');
const completeButton = $<HTMLButtonElement>('complete');
const stopButton = $<HTMLButtonElement>('stop');
const inputCanvas = $<HTMLCanvasElement>('input');
const completionsBox = $<HTMLDivElement>('completions');
const timing = $<HTMLParagraphElement>('timing');
const backgroundInput = $<HTMLInputElement>('background');
backgroundInput.value = formatColor(DEFAULT_BACKGROUND);

type State = 'loading' | 'ready' | 'running' | 'done' | 'error';
function setState(state: State, message?: string): void {
  document.body.dataset.state = state;
  if (message !== undefined) statusLine.textContent = message;
  completeButton.disabled = state === 'loading' || state === 'error' || selected === null;
  stopButton.disabled = state !== 'running';
}

let info: ModelInfo | null = null;
let quantizer: Quantizer | null = null;
/** Palette id → RGB bytes. */
let colors = new Uint8Array(0);
/** The image to complete: n² palette ids. */
let selected: Int32Array | null = null;
let run = { id: 0, count: 0, knownPixels: 0, images: [] as ImageData[], contexts: [] as CanvasRenderingContext2D[] };

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (msg: ToWorker): void => worker.postMessage(msg);

// ---------------------------------------------------------------------------------------------
// Drawing

function canvasOfSide(canvas: HTMLCanvasElement, side: number): CanvasRenderingContext2D {
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('page: no 2D canvas');
  return ctx;
}

/** Paints pixels [from, to) of `ids` (palette ids, raster order); pixels at ≥ `visible` are occluded. */
function paintIds(img: ImageData, ids: ArrayLike<number>, from: number, to: number, visible = Infinity,
                  idsOffset = 0): void {
  for (let t = from; t < to; t++) {
    const o = 4 * t;
    if (t >= visible) {
      img.data[o] = OCCLUDED[0]; img.data[o + 1] = OCCLUDED[1]; img.data[o + 2] = OCCLUDED[2];
    } else {
      const c = 3 * ids[idsOffset + t - from];
      img.data[o] = colors[c]; img.data[o + 1] = colors[c + 1]; img.data[o + 2] = colors[c + 2];
    }
    img.data[o + 3] = 255;
  }
}

function imageOf(ids: Int32Array, side: number, visible = Infinity): ImageData {
  const img = new ImageData(side, side);
  paintIds(img, ids, 0, side * side, visible);
  return img;
}

function keptRows(): number { return Number(rowsInput.value); }

/** The input preview: the kept rows of the selected image, the rest occluded. */
function drawInput(): void {
  if (!info || !selected) return;
  canvasOfSide(inputCanvas, info.side).putImageData(imageOf(selected, info.side, keptRows() * info.side), 0, 0);
}

// ---------------------------------------------------------------------------------------------
// Images in: test images and uploads, quantized with the model's palette

function idsOf(pixels: Uint8Array, channels: 1 | 3): Int32Array {
  return Int32Array.from(quantizer!.quantize(convertPixelChannels(pixels, channels, info!.channels)));
}

function select(ids: Int32Array, canvas: HTMLCanvasElement): void {
  selected = ids;
  for (const c of strip.querySelectorAll('canvas')) c.classList.toggle('selected', c === canvas);
  drawInput();
  setState(document.body.dataset.state === 'running' ? 'running' : 'ready');
}

function addToStrip(ids: Int32Array, title: string, first = false): HTMLCanvasElement {
  const canvas = document.createElement('canvas');
  canvas.title = title;
  canvasOfSide(canvas, info!.side).putImageData(imageOf(ids, info!.side), 0, 0);
  canvas.addEventListener('click', () => select(ids, canvas));
  if (first) strip.prepend(canvas); else strip.append(canvas);
  return canvas;
}

async function loadTestImages(): Promise<void> {
  const res = await fetch(IMAGES_URL);
  if (!res.ok) throw new Error(`${IMAGES_URL}: HTTP ${res.status}`);
  const set = parseTestImages(await res.json(), IMAGES_URL);
  if (set.side !== info!.side) {
    throw new Error(`${IMAGES_URL}: images are ${set.side}×${set.side}, the model reads ${info!.side}×${info!.side}`);
  }
  set.images.forEach((im, i) => {
    const name = set.classNames && im.label >= 0 ? set.classNames[im.label] : im.label >= 0 ? `class ${im.label}` : '';
    const ids = idsOf(Uint8Array.from(im.pixels), set.channels);
    const canvas = addToStrip(ids, `${set.source} ${set.split} #${im.index} ${name ?? ''}`.trim());
    if (i === 0 && !selected) select(ids, canvas);
  });
}

/**
 * An image file → n×n (shorter side resized, center crop, as the paper's preprocessing) → ids.
 * Transparent pixels are laid over the chosen background after the resize, as `igpt encode` does
 * (the canvas resizes premultiplied colors, so a color hidden under α = 0 cannot bleed in).
 */
async function addUpload(file: File): Promise<void> {
  if (!info) return;
  const bitmap = await createImageBitmap(file);
  const side = info.side;
  const crop = Math.min(bitmap.width, bitmap.height);
  const canvas = document.createElement('canvas');
  const ctx = canvasOfSide(canvas, side);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (bitmap.width - crop) / 2, (bitmap.height - crop) / 2, crop, crop, 0, 0, side, side);
  const rgb = compositeOver(ctx.getImageData(0, 0, side, side).data, parseColor(backgroundInput.value));
  if ($<HTMLInputElement>('invert').checked) for (let i = 0; i < rgb.length; i++) rgb[i] = 255 - rgb[i];
  const ids = idsOf(rgb, 3);
  select(ids, addToStrip(ids, file.name, true));
}

// ---------------------------------------------------------------------------------------------
// Completion

function startCompletion(): void {
  if (!info || !selected) return;
  const side = info.side;
  const count = Math.max(1, Math.min(8, Math.round(Number(countInput.value)) || 1));
  const knownPixels = keptRows() * side;
  completionsBox.replaceChildren();
  const images: ImageData[] = [];
  const contexts: CanvasRenderingContext2D[] = [];
  for (let b = 0; b < count; b++) {
    const figure = document.createElement('figure');
    const canvas = document.createElement('canvas');
    canvas.className = 'big completion';
    const ctx = canvasOfSide(canvas, side);
    const img = imageOf(selected, side, knownPixels);
    ctx.putImageData(img, 0, 0);
    const caption = document.createElement('figcaption');
    caption.textContent = `completion ${b + 1}`;
    figure.append(canvas, caption);
    completionsBox.append(figure);
    images.push(img);
    contexts.push(ctx);
  }
  run = { id: run.id + 1, count, knownPixels, images, contexts };
  timing.textContent = '';
  const temperature = Number(temperatureInput.value);
  const topK = Math.max(0, Math.round(Number(topKInput.value)) || 0);
  const seed = Math.max(0, Math.round(Number(seedInput.value)) || 0);
  setState('running', `Sampling ${count} completion${count > 1 ? 's' : ''} of ${side * side - knownPixels} pixels…`);
  send({ type: 'complete', id: run.id, image: selected, knownPixels, count, temperature, topK, seed });
}

function onPixels(from: number, to: number, ids: Int32Array): void {
  const width = to - from;
  const start = Math.max(from, run.knownPixels);
  if (start >= to) return;
  for (let b = 0; b < run.count; b++) {
    paintIds(run.images[b], ids, start, to, Infinity, b * width + (start - from));
    run.contexts[b].putImageData(run.images[b], 0, 0);
  }
}

function onDone(msg: Extract<FromWorker, { type: 'done' }>): void {
  const n = info!.side * info!.side;
  const sampled = Math.max(0, msg.pixels - run.knownPixels);
  const perImage = msg.seconds / run.count;
  timing.dataset.secondsPerImage = String(perImage);
  timing.dataset.stopped = String(msg.stopped);
  timing.textContent = msg.stopped
    ? `Stopped after ${msg.pixels} of ${n} pixels (${msg.seconds.toFixed(2)} s).`
    : `${run.count} completion${run.count > 1 ? 's' : ''} (${sampled} sampled pixels each, one batch) in ` +
      `${msg.seconds.toFixed(2)} s: ${(perImage * 1000).toFixed(0)} ms per completed image, ` +
      `${Math.round(run.count * msg.pixels / msg.seconds)} pixels/s through the KV cache.`;
  setState('done', msg.stopped ? 'Stopped.' : 'Done. Pick another image or press Complete again.');
}

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const msg = e.data;
  switch (msg.type) {
    case 'loaded': {
      info = msg.info;
      const palette: Palette = { k: info.k, channels: info.channels, centers: info.centers };
      quantizer = new Quantizer(palette);
      colors = new Uint8Array(3 * info.k);
      for (let i = 0; i < info.k; i++) {
        for (let c = 0; c < 3; c++) colors[3 * i + c] = unitToByte(info.centers[i * info.channels + (info.channels === 3 ? c : 0)]);
      }
      rowsInput.max = String(info.side);
      rowsInput.value = String(Math.floor(info.side / 2));
      $('rows-out').textContent = rowsInput.value;
      topKInput.max = String(info.k);
      const runsOn = info.runsOn;
      const paletteName = `${info.k}-color ${info.channels === 1 ? 'gray' : 'RGB'} palette`;
      $('model-info').textContent =
        `Model: ${info.side}×${info.side} pixels, ${paletteName}, ` +
        `d ${info.nEmbd}, ${info.nLayer} layers, ${info.nHead} heads, ${(info.parameters / 1e6).toFixed(2)}M parameters ` +
        `(${(info.bytes / 1e6).toFixed(1)} MB, loaded in ${info.loadSeconds.toFixed(2)} s from ${MODEL_URL}). ` +
        `Runs on ${info.runsOn}. Kernels: ${info.kernels}.`;
      setState('ready', `Ready (${info.side}×${info.side}, ${paletteName}, on ${info.runsOn}): pick an image, choose the rows to keep, press Complete.`);
      loadTestImages().catch((err: unknown) => {
        setState('ready', `Ready (${paletteName}, on ${runsOn}; no test images: ${(err as Error).message}); drop an image to complete.`);
      });
      break;
    }
    case 'pixels':
      if (msg.id === run.id) onPixels(msg.from, msg.to, msg.ids);
      break;
    case 'done':
      if (msg.id === run.id) onDone(msg);
      break;
    case 'error':
      setState('error', `Error: ${msg.message}`);
      break;
  }
};
worker.onerror = (e) => setState('error', `Error in the worker: ${e.message}`);

// ---------------------------------------------------------------------------------------------
// Controls

rowsInput.addEventListener('input', () => { $('rows-out').textContent = rowsInput.value; drawInput(); });
temperatureInput.addEventListener('input', () => {
  $('temperature-out').textContent = Number(temperatureInput.value).toFixed(2);
});
completeButton.addEventListener('click', startCompletion);
stopButton.addEventListener('click', () => send({ type: 'stop' }));

const fileInput = $<HTMLInputElement>('file');
const drop = $<HTMLLabelElement>('drop');
const upload = (file: File | undefined): void => {
  if (file) addUpload(file).catch((err: unknown) => setState('error', `Cannot read ${file.name}: ${(err as Error).message}`));
};
fileInput.addEventListener('change', () => upload(fileInput.files?.[0]));
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  upload(e.dataTransfer?.files[0]);
});

setState('loading', 'Loading the model…');
send({ type: 'load', baseUrl: MODEL_URL });
