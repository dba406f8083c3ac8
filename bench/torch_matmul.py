"""PyTorch peer for bench/kernels.ts, on 2 threads like the native kernels.

Times float32 matmuls of the given shapes (best of `reps` after a warm-up) and, if asked, causal
attention forward + backward as PyTorch code would write it (q·kᵀ·scale, causal mask, softmax, ·v,
autograd). Prints one JSON line: {"gemm": [GFLOP/s, ...], "attention": {"forwardMs", "backwardMs"}}.

    /usr/bin/python3 bench/torch_matmul.py '{"gemm": [[transA, transB, m, n, k], ...],
                                             "attention": [B, T, H, hs], "reps": 3, "threads": 2}'
"""
import json
import sys
import time

from torch_peer_env import settle

settle()  # before torch loads: see bench/torch_peer_env.py

import torch


def best_seconds(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_gemms(shapes, reps):
    rates = []
    for trans_a, trans_b, m, n, k in shapes:
        # Transposed operands are stored transposed, as the kernels see them.
        a = torch.randn(k, m).t() if trans_a else torch.randn(m, k)
        b = torch.randn(n, k).t() if trans_b else torch.randn(k, n)
        c = torch.empty(m, n)
        seconds = best_seconds(lambda: torch.mm(a, b, out=c), reps)
        rates.append(2 * m * n * k / seconds / 1e9)
    return rates


def time_attention(B, T, H, hs, reps):
    qkv = torch.randn(B, T, 3, H, hs)
    q, k, v = (qkv[:, :, i].transpose(1, 2).contiguous().requires_grad_() for i in range(3))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    dout = torch.randn(B, H, T, hs)

    def forward():
        att = (q @ k.transpose(-1, -2)) * hs ** -0.5
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        return att @ v

    with torch.no_grad():
        forward_s = best_seconds(forward, reps)
    backward_s = float("inf")
    for _ in range(reps + 1):
        q.grad = k.grad = v.grad = None
        out = forward()
        t0 = time.perf_counter()
        torch.autograd.backward(out, dout)
        backward_s = min(backward_s, time.perf_counter() - t0)
    return {"forwardMs": forward_s * 1e3, "backwardMs": backward_s * 1e3}


def main():
    spec = json.loads(sys.argv[1])
    reps = spec.get("reps", 3)
    torch.set_num_threads(spec.get("threads", 2))
    torch.manual_seed(0)
    result = {"gemm": time_gemms(spec.get("gemm", []), reps), "threads": torch.get_num_threads()}
    if spec.get("attention"):
        result["attention"] = time_attention(*spec["attention"], reps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
