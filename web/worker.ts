/**
 * The sampling worker: loads a model folder over HTTP and streams completions pixel by pixel,
 * with the same KV-cache sampler (`autoregressiveSteps`) and portable kernels as the CLI.
 */
import { createPortableKernels } from '../src/kernels/portable.js';
import { createSimdKernels } from '../src/kernels/simd.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { CONFIG_FILE, modelFromFiles, PREPROCESSOR_FILE, WEIGHTS_FILE } from '../src/io/hf-format.js';
import { parameterCount, type ParameterTensors } from '../src/model/parameters.js';
import { autoregressiveSteps } from '../src/sample/sampler.js';
import type { CompleteRequest, FromWorker, ToWorker } from './protocol.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;

let model: { params: ParameterTensors; kernels: Kernels } | null = null;
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
  const kernels = createPortableKernels();
  model = { params: m.params, kernels };
  const simd = createSimdKernels() !== null;
  const c = m.config;
  post({
    type: 'loaded',
    info: {
      side: Math.round(Math.sqrt(c.nPositions)), channels: m.palette.channels, k: m.palette.k,
      nEmbd: c.nEmbd, nLayer: c.nLayer, nHead: c.nHead, parameters: parameterCount(c),
      centers: m.palette.centers,
      kernels: `${kernels.name} (TypeScript${simd ? ' + WebAssembly SIMD GEMM' : ', no WebAssembly SIMD: plain loops'}), ` +
               `${kernels.threads} thread in a Web Worker`,
      loadSeconds: (performance.now() - start) / 1000, bytes: weights.byteLength,
    },
  });
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
  const { params, kernels } = model;
  const n = params.config.nPositions;
  const { count, knownPixels } = req;
  const prefix = new Int32Array(count * n);
  for (let b = 0; b < count; b++) prefix.set(req.image.subarray(0, n), b * n);
  const steps = autoregressiveSteps(kernels, params, { count, prefix, knownPixels },
                                    { temperature: req.temperature, topK: req.topK, topP: 1, seed: req.seed });
  const start = performance.now();
  let lastPost = start;
  let from = 0;
  let stopped = false;
  for (let step = steps.next(); !step.done; step = steps.next()) {
    const { t, tokens } = step.value;
    const now = performance.now();
    if (now - lastPost < POST_EVERY_MS && t < n - 1) continue;
    const to = t + 1;
    const ids = new Int32Array(count * (to - from));
    for (let b = 0; b < count; b++) ids.set(tokens.subarray(b * n + from, b * n + to), b * (to - from));
    post({ type: 'pixels', id: req.id, from, to, ids }, [ids.buffer]);
    from = to;
    lastPost = now;
    await yieldToEvents();
    if (stopRequested || pending) { stopped = true; break; }
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
