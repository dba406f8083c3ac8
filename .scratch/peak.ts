import { loadKernels } from '../src/kernels/select.js';
const k = loadKernels(); const n = 1024; const a = new Float32Array(n*n).fill(0.5), b = new Float32Array(n*n).fill(0.25), c = new Float32Array(n*n);
for (let i=0;i<3;i++) k.sgemm(false,false,n,n,n,1,a,n,b,n,0,c,n);
const ts: number[] = []; for (let i=0;i<10;i++) { const t0=performance.now(); k.sgemm(false,false,n,n,n,1,a,n,b,n,0,c,n); ts.push(performance.now()-t0); }
console.log((2*n*n*n/Math.min(...ts)/1e6).toFixed(0), 'GFLOP/s best,', (2*n*n*n/(ts.reduce((x,y)=>x+y)/ts.length)/1e6).toFixed(0), 'mean');
