/**
 * The browser demo: model loading from bytes (the browser path) against the Node loader, the
 * `igpt serve` routes, and a real completion in Debian's Chromium driven by playwright-core.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { loadModelFolder } from '../src/io/hf.js';
import { modelFromFiles } from '../src/io/hf-format.js';
import { parseTestImages } from '../src/io/test-images.js';
import { saveTokenDataset, type TokenDataset } from '../src/data/tokens.js';
import { unitToByte } from '../src/palette/palette.js';
import { Quantizer } from '../src/palette/quantize.js';
import { startServer } from '../src/pipeline/serve.js';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const MODEL_DIR = join(ROOT, 'web', 'public', 'model');
const TEST_IMAGES = join(ROOT, 'web', 'public', 'test-images.json');
const COLOR_MODEL_DIR = join(ROOT, 'web', 'public', 'model-color');
const COLOR_TEST_IMAGES = join(ROOT, 'web', 'public', 'test-images-color.json');
const WEB_DIR = join(ROOT, 'dist', 'web');
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = join(ROOT, 'test', 'artifacts', 'browser-completion.png');
/** The page paints hidden pixels in this color (web/main.ts). */
const OCCLUDED = [46, 64, 96];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds dist/web unless it is newer than every file of web/ and src/. */
function buildPageIfNeeded(): void {
  const index = join(WEB_DIR, 'index.html');
  if (existsSync(index) && statSync(index).mtimeMs >= Math.max(newestMtime(join(ROOT, 'web')), newestMtime(join(ROOT, 'src')))) return;
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', 'web', '--logLevel', 'warn'],
                      { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `vite build failed:\n${r.stdout}\n${r.stderr}`);
}

function readJson(file: string): unknown { return JSON.parse(readFileSync(file, 'utf8')); }

test('browser loader: modelFromFiles gives the same model as loadModelFolder', () => {
  const node = loadModelFolder(MODEL_DIR);
  const web = modelFromFiles(MODEL_DIR, readJson(join(MODEL_DIR, 'config.json')),
                             readFileSync(join(MODEL_DIR, 'model.safetensors')),
                             readJson(join(MODEL_DIR, 'preprocessor_config.json')));
  assert.deepEqual(web.config, node.config);
  assert.deepEqual(web.params.data, node.params.data);
  assert.deepEqual(web.palette, node.palette);
  assert.throws(() => modelFromFiles('http://x/model', readJson(join(MODEL_DIR, 'config.json')), new Uint8Array(4), null),
                /http:\/\/x\/model\/model\.safetensors: malformed safetensors file/);
});

test('shipped test images fit the shipped models: gray Fashion-MNIST and color emoji', () => {
  for (const [modelDir, imagesFile, channels, side] of [[MODEL_DIR, TEST_IMAGES, 1, 28], [COLOR_MODEL_DIR, COLOR_TEST_IMAGES, 3, 32]] as const) {
    const set = parseTestImages(readJson(imagesFile), imagesFile);
    const node = loadModelFolder(modelDir);
    assert.equal(set.side, side);
    assert.equal(set.side * set.side, node.config.nPositions);
    assert.equal(set.channels, channels);
    assert.equal(node.palette?.channels, channels);
    assert.ok(set.images.length >= 8);
    // every pixel byte is a color of the model's palette
    const colors = new Set<string>();
    const centers = node.palette?.centers ?? new Float32Array();
    for (let c = 0; c < centers.length; c += channels) colors.add(Array.from(centers.subarray(c, c + channels), unitToByte).join(','));
    for (const image of set.images.slice(0, 4)) {
      for (let p = 0; p < set.side * set.side; p += 97) {
        assert.ok(colors.has(image.pixels.slice(p * channels, (p + 1) * channels).join(',')), `${imagesFile}: pixel ${p} is not a palette color`);
      }
    }
  }
  assert.throws(() => parseTestImages({ side: 2, channels: 1, images: [{ pixels: [1, 2, 3] }] }, 'x.json'),
                /x\.json: image 0 must hold 4 pixel bytes/);
});

test('igpt serve: page, model files and test images; nothing else', async () => {
  const web = mkdtempSync(join(tmpdir(), 'igpt-web-'));
  try {
    mkdirSync(join(web, 'assets'));
    const page = '<!doctype html><title>t</title>';
    writeFileSync(join(web, 'index.html'), page);
    writeFileSync(join(web, 'assets', 'a.js'), 'x');
    const testImages = parseTestImages(readJson(TEST_IMAGES), TEST_IMAGES);
    const { server, url } = await startServer({ webDir: web, modelDir: MODEL_DIR, testImages, port: 0, host: '127.0.0.1' });
    try {
      const get = (path: string): Promise<Response> => fetch(new URL(path, url));
      assert.equal(await (await get('/')).text(), page);
      assert.equal((await get('/assets/a.js')).headers.get('content-type'), 'text/javascript; charset=utf-8');
      const weights = await get('/model/model.safetensors');
      assert.equal(weights.status, 200);
      assert.deepEqual(new Uint8Array(await weights.arrayBuffer()), new Uint8Array(readFileSync(join(MODEL_DIR, 'model.safetensors'))));
      assert.deepEqual(await (await get('/model/config.json')).json(), readJson(join(MODEL_DIR, 'config.json')));
      assert.equal((await (await get('/test-images.json')).json() as { images: unknown[] }).images.length, testImages.images.length);
      assert.equal((await get('/model/trainer_state.json')).status, 404);
      assert.equal((await get('/%2e%2e/package.json')).status, 404);
      assert.equal((await get('/missing.js')).status, 404);
      assert.equal((await fetch(new URL('/', url), { method: 'POST' })).status, 405);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  } finally {
    rmSync(web, { recursive: true, force: true });
  }
});

/** A token dataset of a few shipped test images, so the server's --data path is what the page reads. */
function writeSmallDataset(dir: string, images: number): void {
  const set = parseTestImages(readJson(TEST_IMAGES), TEST_IMAGES);
  const palette = loadModelFolder(MODEL_DIR).palette!;
  const n = set.side * set.side;
  const q = new Quantizer(palette);
  const tokens = new Uint8Array(images * n);
  for (let i = 0; i < images; i++) q.quantize(Uint8Array.from(set.images[i].pixels), tokens.subarray(i * n, (i + 1) * n));
  const split = { count: images, tokens, labels: Int32Array.from(set.images.slice(0, images), (im) => im.label) };
  const empty = { count: 0, tokens: new Uint8Array(0), labels: new Int32Array(0) };
  const ds: TokenDataset = {
    meta: { source: 'fixture', side: set.side, pixels: n, channels: set.channels, numClasses: 10, splitSeed: 0 },
    palette, train: empty, val: empty, test: split,
  };
  saveTokenDataset(dir, ds);
}

/** Starts `igpt serve` on a free port; resolves with its URL once it listens. */
function spawnServe(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), 'serve', '--port', '0', ...args],
                      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    const timer = setTimeout(() => { child.kill(); reject(new Error(`igpt serve did not start:\n${out}${err}`)); }, 30_000);
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /igpt serve: (http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve({ child, url: m[1] }); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`igpt serve exited (${code}):\n${out}${err}`)); });
  });
}

/** Debian's Chromium, headless, with `extraArgs` (the GPU flags) beside the quiet defaults. */
async function launchChromium(profile: string, extraArgs: string[]): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
    viewport: { width: 1000, height: 760 },
  });
}

/** Sets the rows to keep and the number of completions, and presses Complete. */
async function startCompletion(page: Page, keepRows: number, count: number): Promise<void> {
  await page.evaluate(([rows, n]) => {
    const r = document.getElementById('rows') as HTMLInputElement;
    r.value = String(rows);
    r.dispatchEvent(new Event('input'));
    (document.getElementById('count') as HTMLInputElement).value = String(n);
  }, [keepRows, count]);
  await page.click('#complete');
}

/** `startCompletion`, then waits for the end. */
async function completeOnPage(page: Page, keepRows: number, count: number, timeoutMs: number): Promise<void> {
  await startCompletion(page, keepRows, count);
  await page.waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: timeoutMs });
}

/** The RGBA bytes of the input canvas and of each completion. */
function canvasPixels(page: Page): Promise<number[][]> {
  return page.evaluate(() => Array.from(document.querySelectorAll<HTMLCanvasElement>('#input, canvas.completion'))
    .map((c) => Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data)));
}

/**
 * The `count` completions on the page of a gray side×side image with `keep` rows kept: the input
 * hides the other rows, each completion keeps the kept rows and paints every hidden pixel a gray.
 */
async function grayCompletions(page: Page, keep: number, side: number, count: number): Promise<number[][]> {
  const canvases = await canvasPixels(page);
  assert.equal(canvases.length, 1 + count);
  const [input, ...completions] = canvases as [number[], ...number[][]];
  const boundary = keep * side;
  const rgbAt = (img: number[], p: number): number[] => img.slice(4 * p, 4 * p + 3);
  for (let p = boundary; p < side * side; p++) assert.deepEqual(rgbAt(input, p), OCCLUDED, 'the input hides the bottom rows');
  for (const img of completions) {
    for (let p = 0; p < boundary; p++) assert.deepEqual(rgbAt(img, p), rgbAt(input, p), 'kept rows are kept');
    let changed = 0;
    for (let p = boundary; p < side * side; p++) {
      const [r, g, b] = rgbAt(img, p);
      assert.ok(r === g && g === b, `pixel ${p} is a gray palette color, got ${r},${g},${b}`);
      if (r !== OCCLUDED[0]) changed++;
    }
    assert.equal(changed, side * side - boundary, 'every hidden pixel was sampled');
  }
  return completions;
}

/** Builds the page if needed; false (the test skipped, saying why) where Debian's Chromium is absent. */
function pageAndChromiumReady(t: TestContext): boolean {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is absent (apt-get install -y chromium); the browser test needs Debian's Chromium`);
    return false;
  }
  buildPageIfNeeded();
  return true;
}

test('in Chromium: completes an image pixel by pixel and can stop', { timeout: 120_000 }, async (t) => {
  if (!pageAndChromiumReady(t)) return;
  const tmp = mkdtempSync(join(tmpdir(), 'igpt-browser-'));
  const data = join(tmp, 'tokens');
  writeSmallDataset(data, 3);
  const { child, url } = await spawnServe(['--model', MODEL_DIR, '--data', data]);
  const context = await launchChromium(join(tmp, 'profile'), ['--disable-gpu']);
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll('#strip canvas').length > 0 &&
                                     document.body.dataset.state === 'ready', undefined, { timeout: 30_000 });
    assert.equal(await page.locator('#strip canvas').count(), 3, 'the strip shows the --data images');
    assert.match(await page.locator('#model-info').textContent() ?? '', /Runs on WebAssembly \(no WebGPU.*Kernels: portable/,
                 'without a GPU the page says it falls back to the WebAssembly kernels');
    assert.match(await page.locator('#status').textContent() ?? '', /28×28, 16-color gray palette/, 'the status line names the palette');

    // Keep 22 of 28 rows and sample 2 completions: 168 pixels each, seconds on a shared CPU.
    const keep = 22;
    await page.locator('#strip canvas').nth(1).click();
    await completeOnPage(page, keep, 2, 60_000);

    const side = 28, boundary = keep * side;
    const completions = await grayCompletions(page, keep, side, 2);
    assert.notDeepEqual(completions[0], completions[1], 'two samples differ');
    const perImage = Number(await page.locator('#timing').getAttribute('data-seconds-per-image'));
    assert.ok(perImage > 0 && perImage < 60, `seconds per image: ${perImage}`);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`in-browser: ${(perImage * 1000).toFixed(0)} ms per completed image (${side * side - boundary} sampled pixels, ` +
                 `batch of 2); screenshot ${SCREENSHOT}`);

    // An upload: a 60×40 white bar on black is center-cropped to 40×40, resized to 28×28 and quantized.
    const { default: sharp } = await import('sharp');
    const raw = Buffer.alloc(60 * 40 * 3);
    for (let y = 10; y < 30; y++) for (let x = 0; x < 60; x++) raw.fill(255, 3 * (y * 60 + x), 3 * (y * 60 + x) + 3);
    const png = await sharp(raw, { raw: { width: 60, height: 40, channels: 3 } }).png().toBuffer();
    await page.setInputFiles('#file', { name: 'bar.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => document.querySelectorAll('#strip canvas').length === 4);
    const uploaded = await page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>('#strip canvas')!;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      return { selected: c.classList.contains('selected'), top: d[4 * (2 * 28 + 14)], middle: d[4 * (14 * 28 + 14)] };
    });
    assert.deepEqual(uploaded.selected, true, 'the upload is selected');
    assert.ok(uploaded.top < 40 && uploaded.middle > 200, `the bar is quantized to palette grays: ${JSON.stringify(uploaded)}`);

    // A transparent upload hiding pure red around an opaque black bar: the transparent part is laid
    // over the background (white by default, then black), as igpt encode does; never the red's luma.
    const rgba = Buffer.alloc(40 * 40 * 4);
    for (let p = 0; p < 40 * 40; p++) rgba.set(Math.floor(p / 40) >= 15 && Math.floor(p / 40) < 25 ? [0, 0, 0, 255] : [255, 0, 0, 0], 4 * p);
    const transparent = await sharp(rgba, { raw: { width: 40, height: 40, channels: 4 } }).png().toBuffer();
    const uploadTransparent = async (background: string, count: number): Promise<{ top: number; middle: number }> => {
      await page.evaluate((color) => { (document.getElementById('background') as HTMLInputElement).value = color; }, background);
      await page.setInputFiles('#file', { name: `icon-${background}.png`, mimeType: 'image/png', buffer: transparent });
      await page.waitForFunction((n) => document.querySelectorAll('#strip canvas').length === n, count);
      return page.evaluate(() => {
        const c = document.querySelector<HTMLCanvasElement>('#strip canvas')!;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        return { top: d[4 * (2 * 28 + 14)], middle: d[4 * (14 * 28 + 14)] };
      });
    };
    assert.equal(await page.locator('#background').inputValue(), '#ffffff');
    const overWhite = await uploadTransparent('#ffffff', 5);
    assert.ok(overWhite.top > 200 && overWhite.middle < 40, `transparent over white: ${JSON.stringify(overWhite)}`);
    const overBlack = await uploadTransparent('#000000', 6);
    assert.ok(overBlack.top < 40, `transparent over black: ${JSON.stringify(overBlack)}`);

    // Stop: a long run (no rows kept, 8 completions) ends early, leaving hidden pixels unpainted.
    await startCompletion(page, 0, 8);
    await page.waitForFunction(() => document.body.dataset.state === 'running');
    await page.click('#stop');
    await page.waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: 30_000 });
    assert.equal(await page.locator('#timing').getAttribute('data-stopped'), 'true');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    child.kill();
    rmSync(tmp, { recursive: true, force: true });
  }
});

/** Headless Chromium offers SwiftShader (a Vulkan driver on the CPU, shipped with Debian's chromium) to pages as a WebGPU adapter. */
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan', '--use-angle=swiftshader'];

test('in Chromium with WebGPU (SwiftShader): the page samples on the GPU, gray and color models', { timeout: 400_000 }, async (t) => {
  if (!pageAndChromiumReady(t)) return;
  const tmp = mkdtempSync(join(tmpdir(), 'igpt-browser-gpu-'));
  const { child, url } = await spawnServe(['--model', MODEL_DIR]);
  const context = await launchChromium(join(tmp, 'profile'), WEBGPU_FLAGS);
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    /** Opens the page at `query`, waits for the model and test images; returns the status line. */
    const open = async (query: string): Promise<string> => {
      await page.goto(new URL(query, url).href);
      await page.waitForFunction(() => document.querySelectorAll('#strip canvas').length > 0 &&
                                       document.body.dataset.state === 'ready', undefined, { timeout: 60_000 });
      assert.match(await page.locator('#model-info').textContent() ?? '', /Runs on WebGPU \(.*swiftshader.*\)\. Kernels: webgpu on /i,
                   'the model runs on the SwiftShader adapter');
      return await page.locator('#status').textContent() ?? '';
    };
    /**
     * Samples from the first pixel (no rows kept: every decoding step costs a readback here), waits for
     * `pixels` painted pixels, stops, and checks what was painted: palette colors, then the hidden color.
     * A whole image from the first pixel is ~800 steps, each a readback: too slow on SwiftShader for a test.
     */
    const sampleFirstPixels = async (side: number, pixels: number, palette: Set<string>): Promise<void> => {
      await page.locator('#strip canvas').nth(0).click();
      await startCompletion(page, 0, 1);
      await page.waitForFunction(([want, hidden]) => {
        const c = document.querySelector<HTMLCanvasElement>('canvas.completion');
        const d = c?.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let p = 0; d && p < d.length; p += 4) if (d[p] !== hidden[0] || d[p + 1] !== hidden[1] || d[p + 2] !== hidden[2]) painted++;
        return painted >= want;
      }, [pixels, OCCLUDED] as const, { timeout: 120_000 });
      await page.click('#stop');
      await page.waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: 60_000 });
      assert.equal(await page.locator('#timing').getAttribute('data-stopped'), 'true');
      const done = Number(/Stopped after (\d+) of/.exec(await page.locator('#timing').textContent() ?? '')?.[1]);
      assert.ok(done >= pixels && done < side * side, `stopped after ${done} pixels`);
      const [, completion] = await canvasPixels(page) as [number[], number[]];
      for (let p = 0; p < side * side; p++) {
        const rgb = completion.slice(4 * p, 4 * p + 3);
        if (p < done) assert.ok(palette.has(rgb.join(',')), `pixel ${p} is a palette color, got ${rgb.join(',')}`);
        else assert.deepEqual(rgb, OCCLUDED, `pixel ${p} was not sampled`);
      }
      const seconds = Number(/\(([\d.]+) s\)/.exec(await page.locator('#timing').textContent() ?? '')?.[1]);
      t.diagnostic(`WebGPU on SwiftShader: ${done} pixels of a ${side}×${side} image in ${seconds} s`);
    };
    const paletteColors = (dir: string): Set<string> => {
      const { channels, centers } = loadModelFolder(dir).palette!;
      const colors = new Set<string>();
      for (let c = 0; c < centers.length; c += channels) {
        colors.add([0, 1, 2].map((i) => unitToByte(centers[c + (channels === 3 ? i : 0)])).join(','));
      }
      return colors;
    };

    // The gray model, then the shipped color model (which also passes its start-up check on the GPU).
    assert.match(await open('./'), /28×28, 16-color gray palette, on WebGPU/);
    await sampleFirstPixels(28, 12, paletteColors(MODEL_DIR));
    // A whole completion: 26 rows kept go through the prefill, the last 2 rows are sampled.
    await completeOnPage(page, 26, 1, 180_000);
    assert.equal(await page.locator('#timing').getAttribute('data-stopped'), 'false');
    await grayCompletions(page, 26, 28, 1);
    const seconds = Number(await page.locator('#timing').getAttribute('data-seconds-per-image'));
    t.diagnostic(`WebGPU on SwiftShader: a 28×28 image completed from 26 rows in ${seconds.toFixed(1)} s`);
    assert.match(await open('./?model=./model-color/&images=./test-images-color.json'), /32×32, 512-color RGB palette, on WebGPU/);
    await sampleFirstPixels(32, 4, paletteColors(COLOR_MODEL_DIR));
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    child.kill();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('autoregressiveSteps: the worker\'s pixel-by-pixel sampling is sampleAutoregressive, stoppable', async () => {
  const { autoregressiveSteps, sampleAutoregressive } = await import('../src/sample/sampler.js');
  const { createPortableKernels } = await import('../src/kernels/portable.js');
  const m = loadModelFolder(MODEL_DIR);
  const k = createPortableKernels();
  const n = m.config.nPositions, known = n - 2 * 28;
  const set = parseTestImages(readJson(TEST_IMAGES), TEST_IMAGES);
  const image = Int32Array.from(new Quantizer(m.palette!).quantize(Uint8Array.from(set.images[0].pixels)));
  const prefix = new Int32Array(2 * n);
  prefix.set(image, 0);
  prefix.set(image, n);
  const o = { temperature: 1, topK: 4, topP: 1, seed: 7 };
  const full = await sampleAutoregressive(k, m.params, { count: 2, prefix, knownPixels: known }, o);
  const seen: number[] = [];
  const steps = autoregressiveSteps(k, m.params, { count: 2, prefix, knownPixels: known }, o);
  let partial: Int32Array | null = null;
  for (let s = steps.next(); !s.done; s = steps.next()) {
    seen.push(s.value.t);
    if (s.value.t === known + 9) { partial = s.value.tokens; break; } // the page's Stop
  }
  assert.deepEqual(seen, Array.from({ length: 10 }, (_, i) => known + i)); // the given rows are prefilled, not stepped
  for (let b = 0; b < 2; b++) {
    assert.deepEqual(partial!.subarray(b * n, b * n + known + 10), full.subarray(b * n, b * n + known + 10));
  }
  assert.deepEqual(full.subarray(0, known), image.subarray(0, known));
});
