/** What a model folder, a cached owner/name or one weight file holds, read from headers only, as text or JSON (`igpt info`). */
import { basename } from 'node:path';
import { CHECKSUMS_FILE, verifyChecksums } from '../io/checksums.js';
import { inspectModelFolder, type StoredTensor } from '../io/hf.js';
import { SafetensorsReader } from '../io/safetensors.js';
import { TorchCheckpoint } from '../io/torch-checkpoint.js';
import { parameterCount } from '../model/parameters.js';

const fmt = (n: number): string => n.toLocaleString('en-US');
const bytesText = (n: number): string =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;

function tensorTable(tensors: readonly StoredTensor[], showFile: boolean): string {
  const rows = tensors.map((t) => [t.name, `[${t.shape.join(', ')}]`, t.dtype, showFile ? basename(t.file) : '']);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c].length), 0));
  return rows.map((r) => '  ' + [r[0].padEnd(widths[0]), r[1].padEnd(widths[1]), r[2].padEnd(widths[2]), r[3]]
    .join('  ').trimEnd() + '\n').join('');
}

/** A model folder's config, parameter count, palette, labels and tensors. */
export function describeModelFolder(dir: string, json: boolean): string {
  const s = inspectModelFolder(dir);
  const c = s.config;
  const params = parameterCount(c);
  if (json) {
    return JSON.stringify({
      config: c, labels: s.labels, parameters: params,
      palette: s.palette ? { k: s.palette.k, channels: s.palette.channels } : null,
      weightFiles: s.weightFiles, missing: s.missing, ignored: s.ignored,
      tensors: s.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype, file: basename(t.file) })),
    }, null, 2) + '\n';
  }
  const side = Math.round(Math.sqrt(c.nPositions));
  const image = side * side === c.nPositions ? ` (${side}×${side})` : '';
  const lines = [
    `model folder: ${s.dir}${s.dir === dir ? '' : ` (${dir})`}`,
    `config: vocab ${c.vocabSize} (${c.vocabSize - 1} colors + SOS), positions ${c.nPositions}${image}, ` +
      `d ${c.nEmbd}, layers ${c.nLayer}, heads ${c.nHead}, labels ${c.numLabels}, eps ${c.layerNormEpsilon.toExponential()}`,
    `parameters: ${fmt(params)} (${bytesText(params * 4)} as float32)`,
    `palette: ${s.palette ? `${s.palette.k} colors, ${s.palette.channels === 3 ? 'RGB' : 'gray'}` : 'none (no preprocessor_config.json)'}`,
  ];
  if (s.labels) lines.push(`labels: ${s.labels.join(', ')}`);
  lines.push(`weights: ${s.weightFiles.map((f) => basename(f)).join(', ')}`);
  if (s.missing.length) lines.push(`MISSING tensors (the folder will not load): ${s.missing.join(', ')}`);
  if (s.ignored.length) lines.push(`unused tensors: ${s.ignored.join(', ')}`);
  lines.push(`tensors (${s.tensors.length}):`);
  return lines.join('\n') + '\n' + tensorTable(s.tensors, s.weightFiles.length > 1);
}

/** The tensors of a PyTorch checkpoint file (pytorch_model.bin, *.pt), read from its pickle only. */
function describeTorchFile(file: string, json: boolean): string {
  const c = TorchCheckpoint.open(file);
  try {
    const values = c.entries.reduce((sum, e) => sum + e.shape.reduce((a, b) => a * b, 1), 0);
    if (json) return JSON.stringify({ file, values, tensors: c.entries }, null, 2) + '\n';
    return [`PyTorch checkpoint: ${file}`, `values: ${fmt(values)}`, `tensors (${c.entries.length}):`].join('\n') + '\n' +
      tensorTable(c.entries.map((e) => ({ ...e, file })), false);
  } finally {
    c.close();
  }
}

/** One weight file's tensors: safetensors (with its metadata) or a PyTorch checkpoint. */
export function describeWeightFile(file: string, json: boolean): string {
  return file.endsWith('.safetensors') ? describeSafetensorsFile(file, json) : describeTorchFile(file, json);
}

function describeSafetensorsFile(file: string, json: boolean): string {
  const r = SafetensorsReader.open(file);
  try {
    const tensors = r.entries.map((e) => ({ name: e.name, shape: e.shape, dtype: e.dtype, file }));
    const values = r.entries.reduce((sum, e) => sum + e.shape.reduce((a, b) => a * b, 1), 0);
    if (json) {
      return JSON.stringify({ file, metadata: r.metadata, values,
        tensors: tensors.map(({ name, shape, dtype }) => ({ name, shape, dtype })) }, null, 2) + '\n';
    }
    const meta = Object.entries(r.metadata).map(([k, v]) => `${k}=${v}`).join(', ');
    return [`safetensors file: ${file}`, `metadata: ${meta || 'none'}`, `values: ${fmt(values)}`,
            `tensors (${tensors.length}):`].join('\n') + '\n' + tensorTable(tensors, false);
  } finally {
    r.close();
  }
}

/** Checks the folder's files (or only the file `only`) against checksums.json; throws naming a file that differs. */
export function verifyText(dir: string, only?: string): string {
  const t0 = performance.now();
  const checked = verifyChecksums(dir, only);
  if (checked === null) return `checksums: none recorded (no ${CHECKSUMS_FILE}: a folder not written by igpt's training); nothing to verify`;
  if (checked.length === 0) return `checksums: ${CHECKSUMS_FILE} records no checksum for ${only ?? 'any file'}`;
  const bytes = checked.reduce((s, c) => s + c.bytes, 0);
  return `checksums: ${checked.length} file(s) match (sha256 of ${bytesText(bytes)}, ${Math.round(performance.now() - t0)} ms): ` +
         checked.map((c) => c.name).join(', ');
}
