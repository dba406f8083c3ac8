/** Progress bars for long work: rate, ETA and a few live figures, on stderr. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

/**
 * A bar over `total` units of `unit` (steps, images, pixels). `fields` are shown after the bar,
 * e.g. the loss. `initial` units are already done (a resumed run): rate and ETA count from there.
 * Falls back to a line every few seconds when stderr is not a terminal (CI, logs).
 */
export function createProgress(label: string, total: number, unit: string, fields: string[] = [], initial = 0): Progress {
  const extra = fields.map((f) => `${f} {${f}}`).join(' | ');
  const start = performance.now();
  if (!process.stderr.isTTY) {
    let lastPrint = 0;
    return {
      update(done, values = {}) {
        const now = performance.now();
        if (now - lastPrint < 5000 && done < total) return;
        lastPrint = now;
        const rate = (done - initial) / ((now - start) / 1000);
        const eta = rate > 0 ? (total - done) / rate : 0;
        const shown = fields.map((f) => `${f} ${values[f] ?? ''}`).join(' | ');
        process.stderr.write(`${label} ${done}/${total} ${unit} | ${rate.toFixed(2)} ${unit}/s | ETA ${formatSeconds(eta)}${shown ? ' | ' + shown : ''}\n`);
      },
      stop() { /* nothing to clear */ },
    };
  }
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_text}${extra ? ' | ' + extra : ''}`,
    barsize: 24, hideCursor: true, stream: process.stderr, etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, initial, { rate: '0', eta_text: '?', ...Object.fromEntries(fields.map((f) => [f, ''])) });
  return {
    update(done, values = {}) {
      const rate = (done - initial) / Math.max(1e-9, (performance.now() - start) / 1000);
      const eta = rate > 0 ? formatSeconds((total - done) / rate) : '?';
      bar.update(done, { rate: rate.toFixed(rate < 10 ? 2 : 0), eta_text: eta, ...values });
    },
    stop() { bar.stop(); },
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}
