#!/usr/bin/python3
"""Peer for bench/probe.ts: scikit-learn's multinomial LogisticRegression (lbfgs) on the same
features. Reads float32 feature files and int32 label files written by the bench, standardizes
with the training mean/std (StandardScaler), fits, and prints one JSON line."""
import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-x", required=True)
    p.add_argument("--train-y", required=True)
    p.add_argument("--test-x", required=True)
    p.add_argument("--test-y", required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--C", type=float, required=True)
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--tol", type=float, default=1e-4)
    a = p.parse_args()

    train_x = np.fromfile(a.train_x, dtype=np.float32).reshape(-1, a.dim)
    train_y = np.fromfile(a.train_y, dtype=np.int32)
    test_x = np.fromfile(a.test_x, dtype=np.float32).reshape(-1, a.dim)
    test_y = np.fromfile(a.test_y, dtype=np.int32)

    start = time.perf_counter()
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=a.C, solver="lbfgs", max_iter=a.max_iter, tol=a.tol)
    clf.fit(scaler.transform(train_x), train_y)
    fit_seconds = time.perf_counter() - start
    acc = float((clf.predict(scaler.transform(test_x)) == test_y).mean())
    print(json.dumps({
        "accuracy": acc,
        "fitSeconds": fit_seconds,
        "iterations": int(np.max(clf.n_iter_)),
    }))


if __name__ == "__main__":
    main()
