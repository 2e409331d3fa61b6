"""Command line over the functions the notebooks call: ``python -m mood --help``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import pandas as pd


def _cmd_data(args: argparse.Namespace) -> int:
    from mood.data import OFFLINE_OOD, ONLINE_OOD, DataNotFoundError, load_fashion_mnist, load_ood
    from mood.protocols import NEAR_PAIRS, make_protocol

    rows = []
    for split in ("train", "test"):
        try:
            rows.append(load_fashion_mnist(split, args.root).summary())
        except DataNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for name in OFFLINE_OOD + (ONLINE_OOD if args.online else ()):
        try:
            rows.append(load_ood(name).summary())
        except DataNotFoundError as err:
            rows.append({"name": name, "images": 0, "size": "-", "classes": 0, "source": f"missing: {err}"})
    with pd.option_context("display.max_colwidth", 70, "display.width", 160):
        print("Datasets\n" + pd.DataFrame(rows).to_string(index=False))
        names = ["one-class:0", "multi-class", "near-split", *(f"near-pair:{p}" for p in NEAR_PAIRS), "few-shot:5"]
        protos = [make_protocol(n, root=args.root).summary() for n in names]
        print("\nProtocols (one-class:K for K=0..9 alike; few-shot:K for any K)\n"
              + pd.DataFrame(protos).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mood", description="Masked image modeling for OOD detection.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="summarise every dataset and protocol and where it was loaded from")
    d.add_argument("--root", default=None, help="folder with the Fashion-MNIST idx files (else MOOD_FMNIST_DIR, Debian, download)")
    d.add_argument("--online", action="store_true", help="also load CIFAR-10/100 and SVHN through torchvision")
    d.set_defaults(func=_cmd_data)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
