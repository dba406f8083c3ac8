/**
 * The browser demo's server (`igpt serve`). Serves the built page (dist/web), a model folder under
 * /model/ and, with --data, test images from a token dataset at /test-images.json. The model runs
 * in the visitor's browser; this server only hands out files.
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenDataset, type SplitName } from '../data/tokens.js';
import { CONFIG_FILE, configFromHf, PREPROCESSOR_FILE, readPreprocessorPalette, WEIGHTS_FILE } from '../io/hf.js';
import { testImagesFromSplit, type TestImages } from '../io/test-images.js';
import { writeFileAtomic } from '../util/fs.js';
import { recordedObjective } from './open.js';

/** The files of a model folder the page fetches; nothing else in the folder is served. */
const MODEL_FILES = [CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE];

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

export interface ServeOptions {
  /** The built page (index.html and assets). */
  webDir: string;
  /** Model folder served under /model/. */
  modelDir: string;
  /** Served at /test-images.json instead of the page's static file. */
  testImages: TestImages | null;
  port: number;
  host: string;
}

/** The package's root folder: the one holding package.json above this file (src/pipeline or dist/src/pipeline). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Where `npm run build` puts the page. */
export function defaultWebDir(): string {
  return join(packageRoot(), 'dist', 'web');
}

/** Throws unless `dir` holds a model the page can sample from: config, weights, palette, AR objective. */
export function checkServableModel(dir: string): { side: number; channels: number; k: number } {
  for (const f of MODEL_FILES) {
    if (!existsSync(join(dir, f))) {
      throw new Error(`${dir}: no ${f}; the browser demo needs ${MODEL_FILES.join(', ')} (a single-file safetensors model folder)`);
    }
  }
  const configFile = join(dir, CONFIG_FILE);
  let json: unknown;
  try { json = JSON.parse(readFileSync(configFile, 'utf8')); } catch (err) {
    throw new Error(`${configFile}: not valid JSON (${(err as Error).message})`);
  }
  const { config } = configFromHf(json, configFile);
  const side = Math.round(Math.sqrt(config.nPositions));
  if (side * side !== config.nPositions) throw new Error(`${configFile}: n_positions ${config.nPositions} is not a square image`);
  const palette = readPreprocessorPalette(join(dir, PREPROCESSOR_FILE));
  if (recordedObjective(dir) === 'bert') {
    throw new Error(`${dir}: a BERT model; the browser demo completes images auto-regressively (use an AR model)`);
  }
  return { side, channels: palette.channels, k: palette.k };
}

/** Test images of a token dataset, checked against the model's image size and channels. */
export function testImagesForModel(dataDir: string, split: SplitName, first: number, count: number,
                                   model: { side: number; channels: number }): TestImages {
  const data = loadTokenDataset(dataDir);
  if (data.meta.side !== model.side) {
    throw new Error(`${dataDir}: images are ${data.meta.side}×${data.meta.side}, the model reads ${model.side}×${model.side}`);
  }
  if (data.meta.channels !== model.channels) {
    throw new Error(`${dataDir}: images have ${data.meta.channels} channel(s), the model's palette ${model.channels}`);
  }
  const s = data[split];
  if (s.count === 0) throw new Error(`${dataDir}: the ${split} split is empty`);
  if (first >= s.count) throw new Error(`${dataDir}: --first ${first} is past the ${s.count} ${split} images`);
  return testImagesFromSplit(s, split, data.meta, data.palette, first, count);
}

/** Resolves a URL path inside `root`, or null when it would leave it. */
function fileInside(root: string, urlPath: string): string | null {
  const rel = normalize(decodeURIComponent(urlPath)).replace(/^([/\\])+/, '');
  const full = resolve(root, rel);
  return full === resolve(root) || full.startsWith(resolve(root) + sep) ? full : null;
}

function sendFile(req: IncomingMessage, res: ServerResponse, file: string, cache: string): void {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) return notFound(res);
    size = st.size;
  } catch {
    return notFound(res);
  }
  res.writeHead(200, {
    'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
    'Content-Length': size,
    'Cache-Control': cache,
  });
  if (req.method === 'HEAD') { res.end(); return; }
  createReadStream(file).on('error', () => res.destroy()).pipe(res);
}

function notFound(res: ServerResponse): void {
  res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end('not found\n');
}

/** Handles one request: /model/<file>, /test-images.json, else the page's static files. */
function handle(o: ServeOptions, testImagesText: string | null, req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' });
    res.end();
    return;
  }
  let path: string;
  try {
    path = new URL(req.url ?? '/', 'http://localhost').pathname;
    decodeURIComponent(path);
  } catch {
    res.writeHead(400);
    res.end();
    return;
  }
  if (path.startsWith('/model/')) {
    const name = path.slice('/model/'.length);
    // The model can change between runs of the server: never let the browser keep a stale copy.
    return MODEL_FILES.includes(name) ? sendFile(req, res, join(o.modelDir, name), 'no-cache') : notFound(res);
  }
  if (path === '/test-images.json' && testImagesText !== null) {
    res.writeHead(200, { 'Content-Type': CONTENT_TYPES['.json'], 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : testImagesText);
    return;
  }
  const file = fileInside(o.webDir, path.endsWith('/') ? path + 'index.html' : path);
  if (file === null) return notFound(res);
  // Vite names built assets by content hash, so they may be cached for good; the rest may not.
  sendFile(req, res, file, path.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
}

export function checkBuiltPage(webDir: string): void {
  if (!existsSync(join(webDir, 'index.html'))) {
    throw new Error(`${webDir}: the page is not built (no index.html); run \`npm run build\` first`);
  }
}

/** Starts the server; resolves once it listens (port 0 picks a free port). */
export async function startServer(o: ServeOptions): Promise<{ server: Server; url: string }> {
  checkBuiltPage(o.webDir);
  const testImagesText = o.testImages ? JSON.stringify(o.testImages) : null;
  const server = createServer((req, res) => handle(o, testImagesText, req, res));
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new Error(`cannot listen on ${o.host}:${o.port} (${err.code ?? err.message})`));
    });
    server.listen(o.port, o.host, resolveListen);
  });
  const { port } = server.address() as AddressInfo;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return { server, url: `http://${host}:${port}/` };
}

/** Writes the test-image JSON the page reads (e.g. web/public/test-images.json), atomically. */
export function writeTestImages(path: string, testImages: TestImages): void {
  writeFileAtomic(path, JSON.stringify(testImages) + '\n');
}
