/**
 * The sampling worker: loads a model folder over HTTP and streams completions pixel by pixel with
 * the same KV-cache sampler as the CLI (`AutoregressiveDecoding`), on the GPU through WebGPU when
 * the browser offers an adapter, else on the portable (WebAssembly) kernels.
 */
import { createPortableKernels } from '../src/kernels/portable.js';
import { createSimdKernels } from '../src/kernels/simd.js';
import type { DeviceArray, Kernels } from '../src/kernels/kernels.js';
import { createWebGpuBackend } from '../src/kernels/webgpu/backend.js';
import { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import type { GpuTensor } from '../src/kernels/webgpu/runtime.js';
import { CONFIG_FILE, modelFromFiles, PREPROCESSOR_FILE, WEIGHTS_FILE } from '../src/io/hf-format.js';
import { parameterCount, parametersOn, type ParameterTensors } from '../src/model/parameters.js';
import { AutoregressiveDecoding, pixelDrawsFor } from '../src/sample/sampler.js';
import type { CompleteRequest, FromWorker, ToWorker } from './protocol.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;

/** The model on the backend it runs on (T: Float32Array on the CPU, GPU tensors on webgpu). */
interface LoadedModel<T extends DeviceArray> { params: ParameterTensors<T>; kernels: Kernels<T> }

type AnyModel = LoadedModel<Float32Array> | LoadedModel<GpuTensor>;

let model: AnyModel | null = null;
let stopRequested = false;
/** Requests arrive while a run is going; only the newest matters. */
let pending: CompleteRequest | null = null;
let running = false;

function post(msg: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(msg, transfer);
}

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res;
}

async function load(baseUrl: string): Promise<void> {
  const start = performance.now();
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const [configRes, weightsRes, preRes] = await Promise.all(
    [CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE].map((f) => fetchOk(new URL(base + f, scope.location.href).href)));
  const configJson: unknown = await configRes!.json();
  const weights = new Uint8Array(await weightsRes!.arrayBuffer());
  const preJson: unknown = await preRes!.json();
  const m = modelFromFiles(base.replace(/\/$/, ''), configJson, weights, preJson);
  if (!m.palette) throw new Error(`${base}: the model has no palette (preprocessor_config.json "clusters")`);
  const backend = await onBestBackend(m.params);
  model = backend.model;
  const c = m.config;
  post({
    type: 'loaded',
    info: {
      side: Math.round(Math.sqrt(c.nPositions)), channels: m.palette.channels, k: m.palette.k,
      nEmbd: c.nEmbd, nLayer: c.nLayer, nHead: c.nHead, parameters: parameterCount(c),
      centers: m.palette.centers,
      kernels: backend.kernels, runsOn: backend.runsOn,
      loadSeconds: (performance.now() - start) / 1000, bytes: weights.byteLength,
    },
  });
}

/** The model on its backend, and what the page says about it: the kernels, and in a few words where they run. */
interface Backend { model: AnyModel; kernels: string; runsOn: string }

function portable(params: ParameterTensors, why: string): Backend {
  const kernels = createPortableKernels();
  const simd = createSimdKernels() !== null;
  return {
    model: { params, kernels },
    kernels: `${kernels.name} (TypeScript${simd ? ' + WebAssembly SIMD GEMM' : ', no WebAssembly SIMD: plain loops'}), ` +
             `${kernels.threads} thread in a Web Worker`,
    runsOn: `WebAssembly (${why})`,
  };
}

/**
 * The model on WebGPU when the browser offers an adapter that runs it, else on the portable
 * kernels. The GPU must pass a check first: the first decoding step's logits equal the CPU's
 * (a shader the adapter rejects, a lost device or wrong numbers all fall back, saying why).
 */
async function onBestBackend(params: ParameterTensors): Promise<Backend> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return portable(params, 'no WebGPU in this browser');
  let gpuKernels: WebGpuKernels | null = null;
  try {
    gpuKernels = await WebGpuKernels.create(gpu);
    const kernels = createWebGpuBackend(gpuKernels);
    const onGpu = parametersOn(kernels, params);
    const gpuLogits = await firstLogits(kernels, onGpu);
    const cpuLogits = await firstLogits(createPortableKernels(), params);
    let worst = 0;
    for (let i = 0; i < cpuLogits.length; i++) worst = Math.max(worst, Math.abs(gpuLogits[i] - cpuLogits[i]));
    if (!(worst < 1e-3)) throw new Error(`its logits differ from the CPU's by ${worst}`);
    const a = gpuKernels.runtime.ctx.adapter;
    const name = [a.vendor, a.architecture].filter((x) => x !== '').join(' ') || a.description || 'unknown adapter';
    return { model: { params: onGpu, kernels }, kernels: `webgpu on ${gpuKernels.runtime.ctx.describe()}`, runsOn: `WebGPU (${name})` };
  } catch (err) {
    gpuKernels?.dispose();
    const message = (err instanceof Error ? err.message : String(err)).replace(/^igpt webgpu: /, '');
    if (/no WebGPU adapter/.test(message)) return portable(params, 'no WebGPU adapter');
    return portable(params, `WebGPU failed at start: ${message}`);
  }
}

/** The logits after feeding SOS to one image: the start-up check of a backend. */
async function firstLogits<T extends DeviceArray>(kernels: Kernels<T>, params: ParameterTensors<T>): Promise<Float32Array> {
  const decoding = new AutoregressiveDecoding(kernels, params, { count: 1, knownPixels: 0 }, { temperature: 0, topK: 0, topP: 1, seed: 0 });
  return Float32Array.from(await kernels.read(decoding.feed()));
}

/** Lets queued messages (a stop, a newer request) in; a MessageChannel is not throttled like setTimeout. */
const tick = new MessageChannel();
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    tick.port1.onmessage = () => resolve();
    tick.port2.postMessage(null);
  });
}

/** How often the page gets new pixels (and the worker checks for a stop). */
const POST_EVERY_MS = 30;

async function complete(req: CompleteRequest): Promise<void> {
  if (!model) throw new Error('no model loaded');
  // The union narrowed by hand: TypeScript does not infer T from a union of LoadedModel<T>s.
  if (model.kernels.name === 'webgpu') await completeOn(model as LoadedModel<GpuTensor>, req);
  else await completeOn(model as LoadedModel<Float32Array>, req);
}

/** Samples the request's completions, posting pixels every POST_EVERY_MS; a stop or a newer request ends it. */
async function completeOn<T extends DeviceArray>({ params, kernels }: LoadedModel<T>, req: CompleteRequest): Promise<void> {
  const n = params.config.nPositions;
  const { count, knownPixels } = req;
  const prefix = new Int32Array(count * n);
  for (let b = 0; b < count; b++) prefix.set(req.image.subarray(0, n), b * n);
  const decoding = new AutoregressiveDecoding(kernels, params, { count, prefix, knownPixels },
                                              { temperature: req.temperature, topK: req.topK, topP: 1, seed: req.seed });
  const start = performance.now();
  let lastPost = start;
  let from = 0;
  /** Posts the pixels decided since the last post (every POST_EVERY_MS, and the last); true when the run should stop. */
  const postAndCheck = async (): Promise<boolean> => {
    const to = decoding.t, now = performance.now();
    if (now - lastPost < POST_EVERY_MS && !decoding.done) return false;
    const ids = new Int32Array(count * (to - from));
    for (let b = 0; b < count; b++) ids.set(decoding.tokens.subarray(b * n + from, b * n + to), b * (to - from));
    post({ type: 'pixels', id: req.id, from, to, ids }, [ids.buffer]);
    from = to;
    lastPost = now;
    await yieldToEvents();
    return stopRequested || pending !== null;
  };
  let stopped = false;
  const draws = pixelDrawsFor(kernels, params.config);
  if (draws) {
    // On a GPU the pixels are drawn there, a few ahead of the ids read back for painting.
    for await (const _ of decoding.drawOnDevice(draws)) if ((stopped = await postAndCheck())) break;
  }
  while (!decoding.done && !stopped) {
    // On the CPU `read` is the array itself: the host draws each pixel.
    decoding.decide(await kernels.read(decoding.feed()));
    stopped = await postAndCheck();
  }
  post({ type: 'done', id: req.id, stopped, seconds: (performance.now() - start) / 1000, pixels: from });
}

/** Runs requests one after another; a newer request replaces a waiting one. */
async function drain(): Promise<void> {
  if (running) return;
  running = true;
  try {
    while (pending) {
      const req = pending;
      pending = null;
      stopRequested = false;
      await complete(req);
    }
  } finally {
    running = false;
  }
}

function fail(err: unknown): void {
  post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
}

scope.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  if (msg.type === 'load') load(msg.baseUrl).catch(fail);
  else if (msg.type === 'stop') stopRequested = true;
  else { pending = msg; drain().catch(fail); }
};
