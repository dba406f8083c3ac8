"""PyTorch peer for bench/model.ts: the reference iGPT (784 pixels, 16 colors + SOS, d 256, 8 heads,
8 layers; the model of bench/torch_model.py), run in eager mode (no torch.compile) on 2 threads like
the native kernels.

    /usr/bin/python3 bench/torch_igpt.py --mode train|infer|sample|export [--batch 8] [--steps 3]
                                         [--pixels 784] [--out model.onnx] [--device cpu|cuda]

train: forward, cross-entropy, backward and an Adam step (β 0.9/0.95), one warm-up step first.
infer: a forward pass without gradients. sample: pixel by pixel without a key/value cache (every
step re-runs the whole prefix). export: writes the forward pass as ONNX for bench/ort_forward.ts.
Prints one JSON line: {"peer", "torch", "execution", "mode", "median_s", "min_s", "peak_rss_mib", ...}.
--device cuda runs on the GPU (float32, TF32 off: the same arithmetic as the WebGPU backend), each
timing ending in a synchronize; it prints {"error": ...} where PyTorch has no CUDA.
"""
import argparse
import json
import os
import resource
import statistics
import time

from torch_peer_env import settle

settle()  # before torch loads: see bench/torch_peer_env.py

import torch
import torch.nn.functional as F

from torch_model import ImageGPT

parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=["train", "infer", "sample", "export"], default="train")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--pixels", type=int, default=784)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--out", default="igpt_forward.onnx")
parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
args = parser.parse_args()

COLORS, WIDTH, HEADS, LAYERS = 16, 256, 8, 8
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


if args.device == "cuda":
    if not torch.cuda.is_available():
        print(json.dumps({"error": f"PyTorch {torch.__version__} has no CUDA device here"}))
        raise SystemExit
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
device = torch.device(args.device)
model = ImageGPT(COLORS, args.pixels, WIDTH, HEADS, LAYERS).to(device)
sos = torch.full((args.batch, 1), COLORS, dtype=torch.long, device=device)
pixels = torch.randint(0, COLORS, (args.batch, args.pixels), device=device)
inputs = torch.cat([sos, pixels[:, :-1]], dim=1)

if args.mode == "export":
    model.eval()
    torch.onnx.export(model, (inputs,), args.out, input_names=["ids"], output_names=["logits"],
                      dynamic_axes={"ids": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    print(json.dumps({"exported": args.out, "pixels": args.pixels, "vocab": COLORS}))
    raise SystemExit

optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.95))


def train_step():
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    F.cross_entropy(logits.reshape(-1, COLORS), pixels.reshape(-1)).backward()
    optimizer.step()


@torch.no_grad()
def forward_pass():
    model(inputs)


@torch.no_grad()
def sample_without_cache():
    ids = sos.clone()
    for _ in range(args.pixels):
        probs = model(ids)[:, -1].softmax(-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1)], dim=1)


def synchronize():
    if args.device == "cuda":
        torch.cuda.synchronize()


run = {"train": train_step, "infer": forward_pass, "sample": sample_without_cache}[args.mode]
if args.mode != "sample":
    run()  # warm-up: allocations and the thread pool
times = []
for _ in range(args.steps):
    synchronize()
    t0 = time.perf_counter()
    run()
    synchronize()
    times.append(time.perf_counter() - t0)

print(json.dumps({
    "peer": "pytorch", "torch": torch.__version__, "execution": "eager", "mode": args.mode,
    "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
    "batch": args.batch, "threads": args.threads, "median_s": round(statistics.median(times), 4),
    "min_s": round(min(times), 4), "steps": len(times), "peak_rss_mib": peak_rss_mib(), "device": args.device,
}))
