"""The PyTorch peer for quality per hour: pretrains the model of bench/torch_model.py (AR objective)
on an igpt token dataset with igpt's recipe (Adam β 0.9/0.95, no weight decay; linear warmup for
one epoch, at most 10% of the steps, then cosine to 0; the same initial distributions), for a
wall-clock budget planned as `igpt experiment` plans it (steps = budget / a measured step), and
saves a Hugging Face ImageGPT folder. igpt's own eval-nll, probe and lowdata then measure it
exactly as they measure a model igpt trained:

    /usr/bin/python3 bench/torch_pretrain.py --data study/tokens --out runs/torch --budget-hours 1.25 \
        --width 128 --layers 6 --heads 4 --batch 16 --lr 0.002
    igpt eval-nll --model runs/torch/model --data study/tokens --split test
    igpt probe    --model runs/torch/model --data study/tokens --max-train 10000

Writes <out>/model/ and <out>/history.json (step, loss, lr, seconds); prints progress on stderr.
"""
import argparse
import json
import math
import os
import sys
import time

from torch_peer_env import settle

settle()  # before torch loads: see bench/torch_peer_env.py

import numpy as np
import torch
import torch.nn.functional as F

from torch_model import ImageGPT, save_hf_folder

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True, help="igpt token dataset folder (igpt encode, or an experiment's tokens/)")
parser.add_argument("--out", required=True)
parser.add_argument("--budget-hours", type=float, help="wall-clock budget of the training steps")
parser.add_argument("--steps", type=int, help="instead of --budget-hours")
parser.add_argument("--width", type=int, default=128)
parser.add_argument("--layers", type=int, default=6)
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--lr", type=float, default=0.002)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--test-images", type=int, default=0,
                    help="also report the NLL of the first N test images, computed here (igpt eval-nll must agree)")
args = parser.parse_args()
if (args.steps is None) == (args.budget_hours is None):
    sys.exit("torch_pretrain.py: give exactly one of --steps and --budget-hours")

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)


def read_tokens(folder):
    """The train and test splits of an igpt token dataset (meta.json + <split>.tokens) and its palette."""
    meta_path = os.path.join(folder, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        sys.exit(f"{meta_path}: cannot read the token dataset's meta ({err})")
    pixels = meta["meta"]["pixels"]
    dtype = {"uint8": np.uint8, "uint16": np.dtype("<u2")}[meta["dtype"]]

    def split(name):
        count = meta["splits"].get(name, {}).get("count", 0)
        path = os.path.join(folder, f"{name}.tokens")
        tokens = np.fromfile(path, dtype=dtype) if count > 0 else np.zeros(0, dtype)
        if tokens.size != count * pixels:
            sys.exit(f"{path}: {tokens.size} ids, expected {count} × {pixels}")
        return torch.from_numpy(tokens.astype(np.int64)).view(count, pixels)

    palette = meta["palette"]
    channels = palette["channels"]
    centers = palette["centers"]
    clusters = centers if isinstance(centers[0], list) else [centers[i:i + channels] for i in range(0, len(centers), channels)]
    return split("train"), split("test"), palette["k"], clusters


train, test, colors, clusters = read_tokens(args.data)
count, pixels = train.shape
side = int(round(math.sqrt(pixels)))
model = ImageGPT(colors, pixels, args.width, args.heads, args.layers)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
sos = torch.full((args.batch, 1), colors, dtype=torch.long)


def step_on(batch_ids, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    inputs = torch.cat([sos[: batch_ids.shape[0]], batch_ids[:, :-1]], dim=1)
    loss = F.cross_entropy(model(inputs).reshape(-1, colors), batch_ids.reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.item()


def measured_step_seconds():
    """As igpt experiment plans: the fastest of 3 steps (here on a throwaway copy), plus 5%."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step_on(train[: args.batch], 0.0)
        times.append(time.perf_counter() - t0)
    model.load_state_dict(saved)
    optimizer.state.clear()  # a fresh Adam, as the real run starts with
    return min(times) * 1.05


steps = args.steps
if steps is None:
    per_step = measured_step_seconds()
    steps = max(10, int(args.budget_hours * 3600 / per_step))
    print(f"torch_pretrain: {steps} steps of ~{per_step:.2f} s (budget {args.budget_hours} h)", file=sys.stderr)
steps_per_epoch = math.ceil(count / args.batch)
warmup = min(steps_per_epoch, math.ceil(steps / 10))


def learning_rate(step):
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


generator = torch.Generator().manual_seed(args.seed)
order = torch.randperm(count, generator=generator)
history, seconds, t_start = [], 0.0, time.perf_counter()
for step in range(steps):
    position = (step * args.batch) % count
    if step > 0 and position < args.batch:  # a new epoch: a new order
        order = torch.randperm(count, generator=generator)
    rows = order[position: position + args.batch]
    t0 = time.perf_counter()
    loss = step_on(train[rows], learning_rate(step))
    seconds += time.perf_counter() - t0
    history.append({"step": step + 1, "loss": loss, "lr": learning_rate(step), "seconds": seconds})
    if (step + 1) % 50 == 0 or step + 1 == steps:
        rate = (step + 1) / seconds
        print(f"torch_pretrain {step + 1}/{steps} steps | {rate:.2f} steps/s | ETA {(steps - step - 1) / rate / 60:.0f} min | "
              f"loss {loss:.4f} | lr {learning_rate(step):.2e}", file=sys.stderr)



@torch.no_grad()
def test_nll(n):
    """Mean NLL (nats/pixel) of the first n test images, in batches."""
    total, images = 0.0, test[:n]
    for first in range(0, images.shape[0], args.batch):
        ids = images[first: first + args.batch]
        inputs = torch.cat([sos[: ids.shape[0]], ids[:, :-1]], dim=1)
        total += F.cross_entropy(model(inputs).reshape(-1, colors), ids.reshape(-1), reduction="sum").item()
    return total / (images.shape[0] * pixels)


save_hf_folder(model, os.path.join(args.out, "model"), clusters, side)
result = {"peer": "pytorch", "steps": steps, "train_seconds": round(seconds, 1), "model": os.path.join(args.out, "model")}
if args.test_images > 0:
    result.update(test_images=min(args.test_images, test.shape[0]), test_nll=test_nll(args.test_images))
with open(os.path.join(args.out, "history.json"), "w") as f:
    json.dump({**result, "torch": torch.__version__, "batch": args.batch, "lr": args.lr, "width": args.width,
               "layers": args.layers, "heads": args.heads, "threads": args.threads,
               "wall_seconds": time.perf_counter() - t_start, "history": history}, f)
print(json.dumps(result))
