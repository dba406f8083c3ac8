import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { lineChartSvg, niceTicks, plotLines } from '../src/util/plot.js';

const dir = mkdtempSync(join(tmpdir(), 'igpt-plot-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('plot', () => {
  it('writes a valid PNG of the requested size, atomically', async () => {
    const path = join(dir, 'loss.png');
    const steps = Array.from({ length: 50 }, (_, i) => i * 10);
    await plotLines(path, {
      title: 'loss <train & val>', xLabel: 'step', yLabel: 'NLL (nats/pixel)', width: 640, height: 400,
      series: [
        { name: 'train', x: steps, y: steps.map((s) => 1 + Math.exp(-s / 100)) },
        { name: 'val', x: [0, 250, 490], y: [2.1, 1.2, NaN] },
      ],
    });
    const meta = await sharp(path).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 640);
    assert.equal(meta.height, 400);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), [], 'no temp file left behind');

    // The chart is not blank: the series colors are drawn.
    const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
    let colored = 0;
    for (let i = 0; i < data.length; i += info.channels) {
      if (Math.abs(data[i] - data[i + 2]) > 80) colored++; // blue or red pixels, not gray
    }
    assert.ok(colored > 200, `${colored} colored pixels`);
  });

  it('renders the depth curve with default size and markers', async () => {
    const path = join(dir, 'depth.png');
    await plotLines(path, { title: 'probe', xLabel: 'layer', yLabel: 'accuracy (%)', series: [{ name: 'test', x: [0, 1, 2, 3], y: [70, 75, 81, 79] }] });
    const meta = await sharp(path).metadata();
    assert.deepEqual([meta.width, meta.height], [800, 500]);
    assert.match(lineChartSvg({ series: [{ name: 'a', x: [0, 1], y: [1, 2] }] }), /<circle/);
  });

  it('puts the legend in the corner the lines leave free', () => {
    const legendAt = (y: number[]) => {
      const svg = lineChartSvg({ series: [{ name: 'a', x: [0, 1, 2, 3], y }, { name: 'b', x: [0, 3], y: [y[0], y[3]] }] });
      const m = /<rect x="([\d.]+)" y="([\d.]+)"[^>]*stroke="#bbb"/.exec(svg);
      assert.ok(m, 'legend box drawn');
      return `${Number(m[1]) > 400 ? 'right' : 'left'} ${Number(m[2]) > 250 ? 'bottom' : 'top'}`;
    };
    assert.equal(legendAt([10, 8, 6, 4]), 'right top'); // falling lines leave the top right free (and it wins ties)
    assert.equal(legendAt([4, 6, 8, 10]), 'left top'); // rising ones fill it
  });

  it('escapes text and rejects mismatched series', () => {
    const svg = lineChartSvg({ title: 'a<b & "c"', series: [{ name: 'x', x: [1], y: [1] }] });
    assert.match(svg, /a&lt;b &amp; &quot;c&quot;/);
    assert.throws(() => lineChartSvg({ series: [{ name: 'bad', x: [1, 2], y: [1] }] }), /2 x values but 1 y values/);
  });

  it('creates a missing folder, and reports an unwritable path with the path in the message', async () => {
    await plotLines(join(dir, 'missing', 'x.png'), { series: [] });
    assert.ok(existsSync(join(dir, 'missing', 'x.png')));
    writeFileSync(join(dir, 'a-file'), 'not a folder');
    await assert.rejects(plotLines(join(dir, 'a-file', 'x.png'), { series: [] }), /a-file\/x\.png: cannot write \(E/);
  });

  it('chooses round ticks covering the range', () => {
    assert.deepEqual(niceTicks(0, 387), [0, 100, 200, 300, 400]);
    assert.deepEqual(niceTicks(0.62, 0.81), [0.6, 0.65, 0.7, 0.75, 0.8, 0.85]);
    const flat = niceTicks(5, 5);
    assert.ok(flat[0] < 5 && flat[flat.length - 1] > 5);
  });
});
