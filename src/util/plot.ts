/**
 * Line charts as PNG: the chart is drawn as an SVG string (axes, "nice" ticks, one polyline per
 * series, legend) and rasterized by sharp (librsvg). Used for loss curves (NLL vs step) and the
 * probe's accuracy-vs-layer curve (the paper's Figure 2).
 */
import sharp from 'sharp';
import { writeFileAtomic } from './fs.js';
import { world } from '../parallel/world.js';

export interface Series {
  name: string;
  x: number[];
  y: number[];
  /** CSS color; a palette color by default. */
  color?: string;
}

export interface LineChart {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  series: Series[];
  /** Pixels; default 800 × 500. */
  width?: number;
  height?: number;
  /** Draw a dot at every point (default: when no series has more than 40 points). */
  markers?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

/** Renders the chart as an SVG document. Non-finite points are skipped (they break the line). */
export function lineChartSvg(chart: LineChart): string {
  const width = chart.width ?? 800;
  const height = chart.height ?? 500;
  for (const s of chart.series) {
    if (s.x.length !== s.y.length) throw new Error(`plot: series "${s.name}" has ${s.x.length} x values but ${s.y.length} y values`);
  }
  const margin = { left: 80, right: 24, top: chart.title ? 44 : 20, bottom: chart.xLabel ? 62 : 40 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  if (plotW < 20 || plotH < 20) throw new Error(`plot: ${width}×${height} is too small for a chart`);

  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of chart.series) {
    s.x.forEach((x, i) => {
      const y = s.y[i];
      if (Number.isFinite(x) && Number.isFinite(y)) { xs.push(x); ys.push(y); }
    });
  }
  const xTicks = niceTicks(xs.length ? Math.min(...xs) : 0, xs.length ? Math.max(...xs) : 1);
  const yTicks = niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const px = (x: number) => margin.left + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y: number) => margin.top + plotH - ((y - y0) / (y1 - y0)) * plotH;

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`);
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  parts.push(`<g font-family="${FONT}" font-size="13" fill="#222">`);

  // Grid, ticks and tick labels.
  for (const t of xTicks) {
    const x = fmt(px(t));
    parts.push(`<line x1="${x}" y1="${margin.top}" x2="${x}" y2="${margin.top + plotH}" stroke="#e4e4e4"/>`);
    parts.push(`<line x1="${x}" y1="${margin.top + plotH}" x2="${x}" y2="${margin.top + plotH + 5}" stroke="#333"/>`);
    parts.push(`<text x="${x}" y="${margin.top + plotH + 20}" text-anchor="middle">${escapeXml(tickLabel(t, xTicks))}</text>`);
  }
  for (const t of yTicks) {
    const y = fmt(py(t));
    parts.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#e4e4e4"/>`);
    parts.push(`<line x1="${margin.left - 5}" y1="${y}" x2="${margin.left}" y2="${y}" stroke="#333"/>`);
    parts.push(`<text x="${margin.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(tickLabel(t, yTicks))}</text>`);
  }
  parts.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);

  // Series.
  const markers = chart.markers ?? chart.series.every((s) => s.x.length <= 40);
  chart.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) parts.push(`<polyline points="${run.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`);
      run = [];
    };
    s.x.forEach((x, j) => {
      const y = s.y[j];
      if (!Number.isFinite(x) || !Number.isFinite(y)) { flush(); return; }
      run.push(`${fmt(px(x))},${fmt(py(y))}`);
      if (markers || s.x.length === 1) parts.push(`<circle cx="${fmt(px(x))}" cy="${fmt(py(y))}" r="3.5" fill="${color}"/>`);
    });
    flush();
  });

  // Legend, only when it says something: inside the plot, in the corner the lines cross least.
  if (chart.series.length > 1 || (chart.series.length === 1 && chart.series[0].name)) {
    const rowH = 18;
    const boxW = Math.min(plotW - 8, 36 + 7.5 * Math.max(...chart.series.map((s) => s.name.length)));
    const boxH = chart.series.length * rowH + 8;
    const linePoints = chart.series.flatMap((s) => sampleLine(s).map(([x, y]) => [px(x), py(y)] as const));
    const corners = [
      { x: margin.left + plotW - boxW - 8, y: margin.top + 8 }, // top right first: wins ties
      { x: margin.left + 8, y: margin.top + 8 },
      { x: margin.left + plotW - boxW - 8, y: margin.top + plotH - boxH - 8 },
      { x: margin.left + 8, y: margin.top + plotH - boxH - 8 },
    ];
    const covered = (c: { x: number; y: number }) =>
      linePoints.filter(([x, y]) => x >= c.x - 4 && x <= c.x + boxW + 4 && y >= c.y - 4 && y <= c.y + boxH + 4).length;
    const { x: boxX, y: boxY } = corners.reduce((best, c) => (covered(c) < covered(best) ? c : best));
    parts.push(`<rect x="${fmt(boxX)}" y="${fmt(boxY)}" width="${fmt(boxW)}" height="${boxH}" fill="white" fill-opacity="0.85" stroke="#bbb"/>`);
    chart.series.forEach((s, i) => {
      const color = s.color ?? PALETTE[i % PALETTE.length];
      const y = fmt(boxY + 4 + rowH * i + rowH / 2);
      parts.push(`<line x1="${fmt(boxX + 6)}" y1="${y}" x2="${fmt(boxX + 26)}" y2="${y}" stroke="${color}" stroke-width="3"/>`);
      parts.push(`<text x="${fmt(boxX + 32)}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
    });
  }

  // Title and axis labels.
  if (chart.title) parts.push(`<text x="${width / 2}" y="28" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(chart.title)}</text>`);
  if (chart.xLabel) parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 16}" text-anchor="middle" font-size="14">${escapeXml(chart.xLabel)}</text>`);
  if (chart.yLabel) {
    const cx = 20;
    const cy = margin.top + plotH / 2;
    parts.push(`<text x="${cx}" y="${cy}" text-anchor="middle" font-size="14" transform="rotate(-90 ${cx} ${cy})">${escapeXml(chart.yLabel)}</text>`);
  }
  parts.push('</g></svg>');
  return parts.join('\n');
}

/** The series' finite points and, between neighbours, 8 points along the segment joining them. */
function sampleLine(s: Series): [number, number][] {
  const out: [number, number][] = [];
  for (let j = 0; j < s.x.length; j++) {
    const [x, y] = [s.x[j], s.y[j]];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    out.push([x, y]);
    const [nx, ny] = [s.x[j + 1], s.y[j + 1]];
    if (nx === undefined || ny === undefined || !Number.isFinite(nx) || !Number.isFinite(ny)) continue;
    for (let k = 1; k < 9; k++) out.push([x + ((nx - x) * k) / 9, y + ((ny - y) * k) / 9]);
  }
  return out;
}

/** Renders the chart to a PNG file (written atomically: temp file in the same folder + rename). */
export async function plotLines(path: string, chart: LineChart): Promise<void> {
  if (world().rank !== 0) return; // under MPI, rank 0 alone writes
  writeFileAtomic(path, await renderPng(chart));
}

/** The chart as PNG bytes. */
export async function renderPng(chart: LineChart): Promise<Buffer> {
  return sharp(Buffer.from(lineChartSvg(chart))).png().toBuffer();
}

/**
 * About 5–8 evenly spaced round ticks (steps 1, 2 or 5 × 10^k) covering [lo, hi]; the first and
 * last tick are the axis limits.
 */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad; hi += pad;
  }
  const rough = (hi - lo) / target;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const start = Math.floor(lo / step + 1e-9) * step;
  const end = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; start + i * step <= end + step * 1e-9; i++) ticks.push(roundTo(start + i * step, step));
  return ticks;
}

/** Label with as many decimals as the tick step needs (no float noise like 0.30000000000000004). */
function tickLabel(t: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  const abs = Math.max(Math.abs(ticks[0]), Math.abs(ticks[ticks.length - 1]));
  if (abs >= 1e6 || (abs > 0 && abs < 1e-4)) return t.toExponential(1);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return t.toFixed(Math.min(decimals + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0), 10));
}

function roundTo(v: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  return Number(v.toFixed(Math.min(decimals, 15)));
}

function fmt(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string);
}
