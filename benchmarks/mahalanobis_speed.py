"""Class-conditional Mahalanobis: mood's whitened single-product scorer vs the usual recipe.

The usual recipe (OpenOOD's MDS post-processor, Lee et al.'s code): scikit-learn's
``EmpiricalCovariance`` on class-centred features for the shared precision, then a Python loop over
classes, each computing ``(x - mu_c) P (x - mu_c)^T`` for the whole test set, and a min over classes.
mood: one float64 pass for the Gram matrix (lower blocks only) and the class sums, whitening by the
covariance's eigendecomposition (eigen-directions below ``D * eps`` of the largest dropped, as
scikit-learn's ``pinvh`` does), then one product per chunk against the whitened class means.
``--layernorm`` centres every feature vector on its own mean, as a LayerNorm does, so the
covariance has rank D - 1: the case where an inverse without that tolerance turns rounding into score.

Both run here, one after the other on the same random features, several repeats each; the script
prints each side's best time, the speed ratio and the largest relative difference of the scores.

    python benchmarks/mahalanobis_speed.py                    # D=768, 100 classes, 50k / 10k
    python benchmarks/mahalanobis_speed.py --dim 128 --classes 10 --train 20000 --test 5000
    python benchmarks/mahalanobis_speed.py --layernorm          # rank-deficient features
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.covariance import EmpiricalCovariance

from mood.core.scores import Mahalanobis


def baseline(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    classes = np.unique(labels)
    means = np.stack([train[labels == c].mean(0) for c in classes])
    precision = EmpiricalCovariance(assume_centered=False).fit(train - means[np.searchsorted(classes, labels)]).precision_
    dists = []
    for mu in means:
        d = test - mu
        dists.append(((d @ precision) * d).sum(1))
    return np.min(dists, axis=0)


def ours(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    return Mahalanobis(class_conditional=True).fit(train, labels).score(test)


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=768, help="feature dimension D")
    p.add_argument("--classes", type=int, default=100, help="number of ID classes")
    p.add_argument("--train", type=int, default=50_000, help="ID training features")
    p.add_argument("--test", type=int, default=10_000, help="test features")
    p.add_argument("--repeats", type=int, default=3, help="runs per side; the best time counts")
    p.add_argument("--layernorm", action="store_true", help="centre each feature vector (covariance of rank D - 1)")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, a.classes, a.train)
    centres = rng.normal(0, 2, (a.classes, a.dim))
    mix = rng.normal(0, 1, (a.dim, a.dim)) / np.sqrt(a.dim)
    train = (centres[labels] + rng.normal(0, 1, (a.train, a.dim)) @ mix).astype(np.float32)
    test = (centres[rng.integers(0, a.classes, a.test)] + rng.normal(0, 1.5, (a.test, a.dim)) @ mix).astype(np.float32)
    if a.layernorm:
        train, test = train - train.mean(1, keepdims=True), test - test.mean(1, keepdims=True)
    t_train, t_labels, t_test = torch.from_numpy(train), torch.from_numpy(labels), torch.from_numpy(test)
    t_base, ref = best_of(lambda: baseline(train.astype(np.float64), labels, test.astype(np.float64)), a.repeats)
    t_ours, got = best_of(lambda: ours(t_train, t_labels, t_test).numpy(), a.repeats)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"D={a.dim} classes={a.classes} train={a.train} test={a.test} threads={torch.get_num_threads()}"
          + (" (layernorm: rank D-1)" if a.layernorm else ""))
    print(f"sklearn EmpiricalCovariance + per-class loop: {t_base:8.3f} s (fit + score, best of {a.repeats})")
    print(f"mood Mahalanobis (whitened, one product):     {t_ours:8.3f} s")
    print(f"speed-up: {t_base / t_ours:.1f}x   largest score difference: {rel:.2e} of the largest score")


if __name__ == "__main__":
    main()
