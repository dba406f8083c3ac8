"""Peer for the RGB part of bench/palette.ts: scikit-learn MiniBatchKMeans on color pixels.

Reads the sampled pixels and the full pixel set (uint8 [n, 3] .npy files written by the bench),
maps v / 127.5 - 1, fits MiniBatchKMeans(n_clusters=k, k-means++, n_init=1, batch_size), predicts
every pixel. Prints one JSON line: fitSeconds, predictSeconds, mse (over all pixels), iterations.

    /usr/bin/python3 bench/sklearn_minibatch_kmeans.py SAMPLE.npy ALL.npy [--k 512] [--seed 0] [--batch 4096]
"""
import argparse
import json
import time

import numpy as np
from sklearn.cluster import MiniBatchKMeans


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sample")
    ap.add_argument("all")
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    sample = np.load(args.sample).astype(np.float32) / 127.5 - 1
    everything = np.load(args.all).astype(np.float32) / 127.5 - 1

    t0 = time.perf_counter()
    km = MiniBatchKMeans(n_clusters=args.k, init="k-means++", n_init=1, batch_size=args.batch, random_state=args.seed)
    km.fit(sample)
    t1 = time.perf_counter()
    labels = km.predict(everything)
    t2 = time.perf_counter()
    centers = km.cluster_centers_.astype(np.float32)
    mse = float(np.mean(np.sum((everything - centers[labels]) ** 2, axis=1)))
    print(json.dumps({"fitSeconds": t1 - t0, "predictSeconds": t2 - t1, "mse": mse, "iterations": int(km.n_iter_)}))


if __name__ == "__main__":
    main()
