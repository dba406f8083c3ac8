import { loadKernels } from '../src/kernels/select.js';
import { makeConfig, presetShape } from '../src/model/config.js';
import { KvDecoder } from '../src/model/decode.js';
import { loadModelFolder } from '../src/io/hf.js';
const k = loadKernels();
const m = loadModelFolder(process.argv[2]!);
const B = 4, T = m.config.nPositions;
const a = new KvDecoder(k, m.params, B, T, 'f32'), b = new KvDecoder(k, m.params, B, T, 'f16');
const feed = new Int32Array(B).fill(m.config.vocabSize - 1);
let md = 0, mr = 0, mp = 0;
for (let t = 0; t < T; t++) {
  const la = a.feed(feed), lb = b.feed(feed);
  const V = la.length / B;
  for (let i = 0; i < B; i++) {
    let za = 0, zb = 0; const mxa = Math.max(...la.subarray(i*V,(i+1)*V)), mxb = Math.max(...lb.subarray(i*V,(i+1)*V));
    for (let v = 0; v < V; v++) { za += Math.exp(la[i*V+v]! - mxa); zb += Math.exp(lb[i*V+v]! - mxb); }
    for (let v = 0; v < V; v++) { md = Math.max(md, Math.abs(la[i*V+v]! - lb[i*V+v]!)); mr = Math.max(mr, Math.abs(la[i*V+v]!));
      mp = Math.max(mp, Math.abs(Math.exp(la[i*V+v]! - mxa)/za - Math.exp(lb[i*V+v]! - mxb)/zb)); }
  }
  for (let i = 0; i < B; i++) feed[i] = (t * 7 + i * 3) % 16;
}
console.log(`max |Δlogit| ${md.toExponential(2)} (max |logit| ${mr.toFixed(2)}), max |Δp| ${mp.toExponential(2)}`);
