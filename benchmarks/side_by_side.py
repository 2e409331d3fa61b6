"""Two independent trainings one after the other (every core each) against side by side
(:func:`mood.experiments.parallel.prefetch`, one core each), measured in one run on this machine.

Each training is the ``cpu`` profile's fine-tuning stage (model, batch, augmentation) for one epoch
on ``--images`` Fashion-MNIST training images, from a random initialisation, into a fresh cache
folder, so the two schedules do the same work. Prints images per second of each schedule and their
ratio (> 1: side by side is faster).

    python benchmarks/side_by_side.py --images 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import torch

from mood.core.cache import Cache
from mood.experiments.config import StageOverrides
from mood.experiments.parallel import Job, prefetch
from mood.experiments.pipeline import finetune, pretrain
from mood.experiments.resolve import base_profile, resolve


def start(protocol: str, prof, root: str):
    """The random initialisation every fine-tuning starts from (made once, before the timed part)."""
    run = resolve(prof, protocol)
    proto, p = run.protocol, run.profile
    return proto, p, pretrain(proto.train, p.model, replace(p.pretrain, pretext="none"), p.format, Cache(root))


def train(protocol: str, prof, seed: int, root: str) -> None:
    """One fine-tuning of the random initialisation (what each job of the benchmark runs)."""
    proto, p, init = start(protocol, prof, root)
    finetune(init, proto.train, replace(p.finetune, seed=seed), proto.num_classes, p.format, Cache(root))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000, help="training images per run")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    prof = base_profile("cpu", changes=StageOverrides(finetune={"epochs": 1, "max_images": args.images, "warmup_epochs": 0.0}))
    train("multi-class", prof, 99, tempfile.mkdtemp())  # warm-up: data loading, first-call costs
    seeds = range(args.workers)
    with tempfile.TemporaryDirectory() as root:
        start("multi-class", prof, root)
        t0 = time.perf_counter()
        for s in seeds:
            train("multi-class", prof, s, root)
        one_after_other = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as root:
        start("multi-class", prof, root)
        t0 = time.perf_counter()
        prefetch([Job(train, ("multi-class", prof, s, root), name=f"seed {s}") for s in seeds], args.workers)
        side_by_side = time.perf_counter() - t0
    n = args.images * len(seeds)
    print(f"{len(seeds)} fine-tunings of {args.images} images, torch threads {torch.get_num_threads()}:")
    print(f"  one after the other: {one_after_other:6.1f} s, {n / one_after_other:6.0f} img/s")
    print(f"  side by side:        {side_by_side:6.1f} s, {n / side_by_side:6.0f} img/s (process start-up included)")
    print(f"  ratio: {one_after_other / side_by_side:.2f}x")


if __name__ == "__main__":
    main()
