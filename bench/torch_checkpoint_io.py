"""Peer for bench/io.ts: torch.save / torch.load of an ImageGPT-shaped state dict (HF's names and
shapes, the format HF ships as pytorch_model.bin). Prints one JSON line with the timings.

Usage: python3 bench/torch_checkpoint_io.py <dir> <vocab> <positions> <d> <layers> <repeats>
"""
import json
import os
import sys
import time

from torch_peer_env import settle

settle()  # before torch loads: see bench/torch_peer_env.py

import torch


def main():
    out_dir = sys.argv[1]
    V, P, d, L, repeats = (int(x) for x in sys.argv[2:7])
    torch.manual_seed(0)
    sd = {"transformer.wte.weight": torch.randn(V, d), "transformer.wpe.weight": torch.randn(P, d)}
    for layer in range(L):
        p = f"transformer.h.{layer}."
        for name, shape in [("ln_1.weight", (d,)), ("attn.c_attn.weight", (d, 3 * d)), ("attn.c_attn.bias", (3 * d,)),
                            ("attn.c_proj.weight", (d, d)), ("attn.c_proj.bias", (d,)), ("ln_2.weight", (d,)),
                            ("mlp.c_fc.weight", (d, 4 * d)), ("mlp.c_fc.bias", (4 * d,)),
                            ("mlp.c_proj.weight", (4 * d, d)), ("mlp.c_proj.bias", (d,))]:
            sd[p + name] = torch.randn(*shape)
    sd["transformer.ln_f.weight"] = torch.randn(d)
    sd["lm_head.weight"] = torch.randn(V - 1, d)
    path = os.path.join(out_dir, "pytorch_model.bin")
    saves, loads = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.save(sd, path)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        saves.append(time.perf_counter() - t)
        t = time.perf_counter()
        loaded = torch.load(path, map_location="cpu")
        loads.append(time.perf_counter() - t)
        assert len(loaded) == len(sd)
    print(json.dumps({"saveSeconds": sorted(saves)[len(saves) // 2], "loadSeconds": sorted(loads)[len(loads) // 2],
                      "bytes": os.path.getsize(path)}))


if __name__ == "__main__":
    main()
