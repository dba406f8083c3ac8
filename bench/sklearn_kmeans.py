"""Peer for bench/palette.ts: scikit-learn KMeans on Fashion-MNIST pixels.

Samples N pixels of the training images (values v / 127.5 - 1), fits KMeans(n_clusters=k,
k-means++, n_init as given), then predicts the cluster of every pixel of all 70,000 images.
Prints one JSON line: fitSeconds, predictSeconds, mse (over all pixels), iterations, centers.

    /usr/bin/python3 bench/sklearn_kmeans.py DIR [--samples 1000000] [--k 16] [--seed 0] [--n-init 1]
"""
import argparse
import gzip
import json
import time

import numpy as np
from sklearn.cluster import KMeans


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-init", type=int, default=1)
    args = ap.parse_args()

    train = read_idx_images(f"{args.dir}/train-images-idx3-ubyte.gz")
    test = read_idx_images(f"{args.dir}/t10k-images-idx3-ubyte.gz")
    rng = np.random.default_rng(args.seed)
    flat = train.reshape(-1)
    sample = flat[rng.integers(0, flat.size, args.samples)].astype(np.float32) / 127.5 - 1
    everything = np.concatenate([train, test]).reshape(-1, 1).astype(np.float32) / 127.5 - 1

    t0 = time.perf_counter()
    km = KMeans(n_clusters=args.k, init="k-means++", n_init=args.n_init, random_state=args.seed)
    km.fit(sample.reshape(-1, 1))
    t1 = time.perf_counter()
    labels = km.predict(everything)
    t2 = time.perf_counter()

    centers = km.cluster_centers_.astype(np.float32)
    mse = float(np.mean((everything[:, 0] - centers[labels, 0]) ** 2))
    print(json.dumps({
        "fitSeconds": t1 - t0,
        "predictSeconds": t2 - t1,
        "mse": mse,
        "iterations": int(km.n_iter_),
        "centers": centers[:, 0].tolist(),
    }))


if __name__ == "__main__":
    main()
