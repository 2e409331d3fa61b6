"""Training throughput of the profile's model: mood's training loop against a plain fp32 eager loop
over the same model, measured side by side in one run (the ratio is the figure).

Both loops train the same task (BEiT pretraining; fine-tuning with shift-and-flip augmentation) on
the same images for the same steps; each is timed over its second epoch (the first pays for warm-up,
autotuning and compilation).

- ``plain fp32 eager``: what a first training loop looks like: fp32, masks drawn image by image on
  the host and copied over, the loss read back (``.item()``) at every step, the per-image crop loop,
  convolutions in the default (contiguous) memory format.
- ``mood``: :func:`mood.core.engine.fit` as the chapters run it (on CUDA: bf16 autocast, masks and views
  drawn on the device, metrics read once per epoch; a convolutional backbone channels-last).
- ``mood + compile``: the same with ``TrainConfig(compile=True)`` (every transformer block compiled).

On a GPU the table also gives the model FLOP utilisation: FLOPs of one training step (counted by
``torch.utils.flop_counter``) times steps per second, over the chip's dense bf16 peak.

    python benchmarks/train_speed.py --profile cpu
    python benchmarks/train_speed.py --profile gpu --batch 512 1024 --compile --out speed.csv
    python benchmarks/train_speed.py --profile cpu --model resnet10_quarter --stages finetune
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mood.core.engine import TrainConfig, fit, make_optimizer, resolve_device
from mood.core.masking import mask_batch
from mood.core.models import Backbone
from mood.core.pretext import BeitMIM, Classification, Rng
from mood.core.tokenizer import PatchTokenizer
from mood.experiments.resolve import resolve

# dense bf16 tensor-core peaks (vendor figures) of the chips this project has run on
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def make_task(stage: str, prof, x: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = Backbone(replace(prof.model))
    if stage == "pretrain":
        tok = PatchTokenizer(backbone.patch_size, backbone.cfg.in_chans, prof.pretrain.vocab_size).fit(x[:2048], iters=2)
        return BeitMIM(backbone, tok)
    return Classification(backbone, label_smoothing=prof.finetune.label_smoothing, augment=prof.finetune.augment)


def plain_loss(task: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The task's loss written the plain way: host-drawn masks, boolean indexing, per-image crops."""
    if isinstance(task, BeitMIM):
        target = task.tokenizer.encode(x)
        mask = mask_batch(len(x), task.backbone.grid, task.mask_ratio, task.mask_kind,
                          np.random.default_rng(int(torch.randint(1 << 30, (1,), generator=g)))).to(x.device)
        logits = task.predict(x, mask)[mask]
        return F.cross_entropy(logits, target[mask])
    n, _, h, w = x.shape
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    dx, dy = torch.randint(0, 5, (n,), generator=g).tolist(), torch.randint(0, 5, (n,), generator=g).tolist()
    x = torch.stack([padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w] for i in range(n)])
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    return F.cross_entropy(task.backbone(x), y)


def plain_fit(task: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> float:
    """Two epochs of the plain loop; images per second of the second."""
    device = resolve_device(cfg.device)
    task.to(device, memory_format=torch.contiguous_format)
    x, y = x.to(device), y.to(device)
    opt = make_optimizer(task, cfg)
    steps, g = len(x) // cfg.batch_size, torch.Generator().manual_seed(0)
    for _ in range(2):
        t0 = time.perf_counter()
        for s in range(steps):
            idx = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
            loss = plain_loss(task, x[idx], y[idx], g)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip or 1e9)
            opt.step()
            _ = loss.item()  # logged every step
        seconds = time.perf_counter() - t0
    return steps * cfg.batch_size / seconds


def step_flops(task: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """FLOPs of one forward and backward pass of the task on the batch ``x``."""
    task.to(device).train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = task.loss(x.to(device), y.to(device), Rng.seeded(0, device=device))
        loss.backward()
    task.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(prof, stage: str, batch: int, steps: int, device: torch.device, compile_too: bool) -> list[dict]:
    cfg = prof.pretrain if stage == "pretrain" else prof.finetune
    g = torch.Generator().manual_seed(0)
    n = batch * steps
    x = torch.randn(n, prof.model.in_chans, prof.model.img_size, prof.model.img_size, generator=g)
    y = torch.randint(0, prof.model.num_classes, (n,), generator=g)
    base = TrainConfig(epochs=2, batch_size=batch, lr=cfg.lr, warmup_epochs=0.0, layer_decay=cfg.layer_decay,
                       grad_clip=cfg.grad_clip, device=device.type)
    flops = step_flops(make_task(stage, prof, x), x[:batch], y[:batch], device)
    peak = peak_flops(device)
    rows = [{"loop": "plain fp32 eager", "img_per_s": plain_fit(make_task(stage, prof, x), x, y, base)}]
    for name, c in [("mood", base)] + ([("mood + compile", replace(base, compile=True))] if compile_too else []):
        try:
            hist = fit(make_task(stage, prof, x), x, y, c, desc=f"{stage} {name}")
        except Exception as err:  # a compiler that fails here is a finding, not the end of the table
            print(f"{stage} {name} failed: {type(err).__name__}: {err}")
            continue
        rows.append({"loop": name, "img_per_s": hist[-1]["img_per_s"]})
    for r in rows:
        r.update(stage=stage, model=prof.model.name, batch=batch, device=str(device),
                 ratio_to_plain=r["img_per_s"] / rows[0]["img_per_s"],
                 tflop_per_s=flops / batch * r["img_per_s"] / 1e12)
        r["mfu"] = r["tflop_per_s"] * 1e12 / peak if peak else float("nan")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: MOOD_PROFILE or cpu)")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default: the profile's)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per epoch")
    ap.add_argument("--stages", nargs="+", default=["pretrain", "finetune"], choices=["pretrain", "finetune"])
    ap.add_argument("--compile", action="store_true", help="also time TrainConfig(compile=True)")
    ap.add_argument("--model", default=None, help="another backbone than the profile's (a convolutional one: "
                                                  "--stages finetune, BEiT pretraining needs patch tokens)")
    ap.add_argument("--out", default=None, help="write the table to this CSV")
    args = ap.parse_args()
    try:  # the multi-class run's model: 28 px, one channel, ten classes
        prof = resolve(args.profile, "multi-class", model={"name": args.model} if args.model else None).profile
    except ValueError as err:  # ModelConfig names the presets
        ap.error(str(err))
        if "pretrain" in args.stages and not Backbone(prof.model).is_vit:
            ap.error(f"--model {args.model} has no patch tokens for BEiT pretraining: add --stages finetune")
    device = resolve_device("auto")
    rows = []
    columns = ["stage", "model", "device", "batch", "loop", "img_per_s", "ratio_to_plain", "tflop_per_s", "mfu"]
    for stage in args.stages:
        for batch in args.batch or [(prof.pretrain if stage == "pretrain" else prof.finetune).batch_size]:
            rows += measure(prof, stage, batch, args.steps, device, args.compile)
            if args.out:  # written as it goes: a run stopped early keeps what it measured
                pd.DataFrame(rows)[columns].to_csv(args.out, index=False)
    table = pd.DataFrame(rows)[columns]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, "
          f"threads {torch.get_num_threads()}; peak bf16 {peak_flops(device) or float('nan'):.3g} FLOP/s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"))


if __name__ == "__main__":
    main()
