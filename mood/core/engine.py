"""The one training loop, shared by pretraining and fine-tuning.

``fit(task, x, y, cfg, run_dir)`` trains ``task`` (any module with ``loss(x, y, rng)`` and a
``backbone``) on in-memory tensors. Per epoch it appends a line of metrics to ``log.jsonl`` and saves
``last.pt`` (model, optimiser, scheduler, history) through a temporary file and a rename. Called
again on the same ``run_dir`` it resumes after the last finished epoch; because every epoch's
shuffling, masks, views and dropout are drawn from generators seeded by ``(seed, epoch)``, a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from timm.models.vision_transformer import Block
from timm.optim import create_optimizer_v2, param_groups_layer_decay
from timm.scheduler import CosineLRScheduler
from timm.scheduler.scheduler import Scheduler
from torch import nn

from mood.core.distributed import World, all_mean, all_true, barrier, shard, world
from mood.core.io import atomic_torch_save, atomic_write_text
from mood.core.pretext import Rng
from mood.core.progress import progress

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings common to every stage.

    Args:
        epochs: passes over the training images.
        batch_size: images per step.
        lr: peak learning rate, reached after the warm-up, then cosine decay.
        weight_decay: weight decay (AdamW: decoupled, not on biases and norms; SGD: L2 on every weight,
            as the Unleashing-Mask code does).
        warmup_epochs: linear warm-up length, in epochs (fractions allowed).
        min_lr: learning rate at the end of the cosine.
        layer_decay: BEiT's layer-wise lr decay for ViT backbones (None = off).
        grad_clip: max gradient norm (None = off).
        max_images: train on a stratified sample of at most this many images (None = all).
        seed: seeds sampling, shuffling, masks, augmentations and initialisation.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov-free, with ``momentum``).
        momentum: SGD's momentum.
        compile: compile every transformer block with ``torch.compile`` (the weights and results are
            the same; only speed differs, so it is not part of a stage's cache key).
        steps: optimiser steps in all (None = ``epochs`` x steps per epoch); set, it wins over
            ``epochs`` and may end inside an epoch (the zoo's doses at equal FLOPs).
        schedule: ``"cosine"`` (warm-up, cosine decay to ``min_lr``) or ``"wsd"`` (warm-up, a constant
            ``lr``, then the last ``cooldown`` fraction of the steps decayed to ``min_lr`` as 1 - sqrt,
            Hägele et al. 2024): runs of several lengths share their stable part, so a shorter run is a
            cooldown branch off a longer one's checkpoint, and still equals a run trained alone.
        cooldown: the decayed fraction of a ``"wsd"`` schedule.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    layer_decay: float | None = None
    grad_clip: float | None = 3.0
    max_images: int | None = None
    seed: int = 0
    device: str = "auto"
    optimizer: str = "adamw"
    momentum: float = 0.9
    compile: bool = False
    steps: int | None = None
    schedule: str = "cosine"
    cooldown: float = 0.2

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{type(self).__name__}.{name} must be > 0, got {value!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"{type(self).__name__}.max_images must be >= 1 or None (all images), got {self.max_images}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.min_lr < 0:
            raise ValueError(f"{type(self).__name__}: warmup_epochs, weight_decay and min_lr must be >= 0, got "
                             f"{self.warmup_epochs}, {self.weight_decay}, {self.min_lr}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"{type(self).__name__}.layer_decay must lie in (0, 1] or be None, got {self.layer_decay}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"{type(self).__name__}.device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{type(self).__name__}.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"{type(self).__name__}.momentum must lie in [0, 1), got {self.momentum}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"{type(self).__name__}.steps must be >= 1 or None (epochs x steps per epoch), got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{type(self).__name__}.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 < self.cooldown <= 1:
            raise ValueError(f"{type(self).__name__}.cooldown must lie in (0, 1], got {self.cooldown}")

    def to_dict(self) -> dict:
        """The settings as a dict (the cache key of a stage). An AdamW stage leaves out the SGD-only
        fields, so its key is the same as before SGD was an option and cached models stay valid."""
        d = asdict(self)
        del d["compile"]
        if self.optimizer == "adamw":
            del d["optimizer"], d["momentum"]
        if self.steps is None:  # the fields of step budgets and schedules stay out of the older keys
            del d["steps"]
        if self.schedule == "cosine":
            del d["schedule"], d["cooldown"]
        return d

    def total_steps(self, n_images: int) -> int:
        """Optimiser steps of this stage on ``n_images`` images (after ``max_images``; the ragged last
        batch of an epoch is dropped)."""
        return self.steps if self.steps is not None else steps_per_epoch(n_images, self) * self.epochs


def steps_per_epoch(n_images: int, cfg: TrainConfig) -> int:
    """Optimiser steps of one pass over ``n_images`` images (the ragged last batch is dropped)."""
    n = n_images if cfg.max_images is None else min(n_images, cfg.max_images)
    return max(1, n // cfg.batch_size)


class WarmupStableDecay(Scheduler):
    """Linear warm-up to each group's lr, constant, then ``1 - sqrt`` decay to ``lr_min`` over the last
    ``t_decay`` of ``t_total`` steps (timm's :class:`Scheduler`, so layer-decay ``lr_scale`` applies).
    The lr at step ``t`` depends on ``t`` and these settings only: a checkpoint taken in the stable
    part serves every run whose stable part covers it."""

    def __init__(self, optimizer: torch.optim.Optimizer, t_total: int, t_warmup: int, t_decay: int,
                 lr_min: float = 0.0, warmup_lr_init: float = 0.0) -> None:
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False, initialize=True)
        self.t_total, self.t_warmup, self.t_decay = t_total, t_warmup, t_decay
        self.lr_min, self.warmup_lr_init = lr_min, warmup_lr_init
        self.update_groups(self._get_lr(0))

    def _get_lr(self, t: int) -> list[float]:
        def one(base: float) -> float:
            if t < self.t_warmup:
                return self.warmup_lr_init + t * (base - self.warmup_lr_init) / self.t_warmup
            start = self.t_total - self.t_decay
            if t < start:
                return base
            frac = min(1.0, (t - start) / max(1, self.t_decay))
            return self.lr_min + (base - self.lr_min) * (1 - math.sqrt(frac))
        return [one(b) for b in self.base_values]


SCHEDULES = ("cosine", "wsd")


def decay_steps(cfg: TrainConfig, total: int) -> int:
    """Steps of a ``"wsd"`` run's cooldown: ``cooldown`` of ``total``, at least one."""
    return max(1, round(cfg.cooldown * total))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, spe: int, total: int) -> Scheduler:
    """The lr schedule of ``cfg`` over ``total`` steps of ``spe`` a epoch."""
    warmup = int(cfg.warmup_epochs * spe)
    if cfg.schedule == "wsd":
        return WarmupStableDecay(opt, total, warmup, decay_steps(cfg, total), cfg.min_lr, cfg.lr * 1e-3)
    return CosineLRScheduler(opt, t_initial=total, lr_min=cfg.min_lr, warmup_t=warmup, warmup_lr_init=cfg.lr * 1e-3,
                             t_in_epochs=False)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(device)


def make_optimizer(task: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; with ``cfg.layer_decay`` the backbone's layers get BEiT's decayed lr scales and every
    other parameter of the task (heads, decoders) the full lr. Or SGD with momentum
    (``cfg.optimizer="sgd"``: the Unleashing-Mask recipe), every trainable parameter at one lr."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    backbone = getattr(task, "backbone", None)
    if cfg.layer_decay is None or backbone is None or not getattr(backbone, "is_vit", False):
        return create_optimizer_v2(task, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    groups = param_groups_layer_decay(backbone.net, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay,
                                      no_weight_decay_list=backbone.net.no_weight_decay())
    seen = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in task.parameters() if id(p) not in seen and p.requires_grad]
    groups.append({"params": [p for p in rest if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr_scale": 1.0})
    groups.append({"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": 1.0})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


SYNC_EVERY = 50  # steps between the host's looks at the loss (a non-finite loss stops training there)


def _check_finite(finite: torch.Tensor, desc: str, epoch: int, step: int, lr: float) -> None:
    if not bool(finite):
        raise FloatingPointError(f"{desc}: the loss became non-finite in epoch {epoch + 1} by step {step + 1}; "
                                 f"lower the learning rate (now {lr})")


def compile_blocks(task: nn.Module) -> int:
    """Compiles every transformer block of ``task`` in place (``nn.Module.compile``: parameter names and
    checkpoints are unchanged). Returns how many were compiled."""
    blocks = [m for m in task.modules() if isinstance(m, Block)]
    for b in blocks:
        b.compile()
    return len(blocks)


class _LossForward(nn.Module):
    """``task.loss`` as a module's forward, which is what DistributedDataParallel wraps and hooks."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, x: torch.Tensor, y: torch.Tensor, rng: Rng):
        return self.task.loss(x, y, rng)


def _distributed(task: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    # a pretext task leaves parts of the backbone unused (its classification head), hence the search for
    # unused parameters; buffers (mask banks) are equal on every rank by seeding, so none are broadcast
    return DistributedDataParallel(_LossForward(task), device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True, broadcast_buffers=False)


def _epoch_streams(seed: int, epoch: int, device: torch.device, w: World) -> tuple[Rng, Rng]:
    """The epoch's batch-order stream (the same on every rank) and the stream of the task's own draws
    (masks, views, augmentation; per rank in a world of several), after seeding dropout / drop-path."""
    order = Rng.seeded(seed, epoch, device=device)
    if w.size == 1:
        torch.manual_seed(seed * 100_003 + epoch)
        return order, order
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch, w.rank, 1]).generate_state(1)[0]))
    return order, Rng.seeded(seed, epoch, 1 + w.rank, device=device)


def _capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def fit(task: nn.Module, x: torch.Tensor, y: torch.Tensor | None, cfg: TrainConfig,
        run_dir: str | os.PathLike | None = None, desc: str = "train", stop_after: int | None = None,
        on_epoch: Callable[[dict], None] | None = None, stop_at_step: int | None = None) -> list[dict]:
    """Trains ``task`` in place and returns the per-epoch history.

    Args:
        task: module with ``loss(x, y, rng) -> (loss, metrics)``.
        x: ``[N, C, H, W]`` float images (normalised). Under ``torchrun`` (:func:`mood.core.distributed.init`)
            every rank passes the same tensors and trains its share of each global batch of
            ``cfg.batch_size`` images in DistributedDataParallel; rank 0 writes the checkpoints.
        y: ``[N]`` long labels, or None for unlabelled pretraining.
        cfg: optimisation settings.
        run_dir: where ``last.pt`` and ``log.jsonl`` live; None trains without checkpoints.
        desc: progress-bar label.
        stop_after: return after this epoch (1-based), as an interruption would; a later call resumes.
        on_epoch: called with each epoch's record.
        stop_at_step: return after this many optimiser steps in all, saving a checkpoint there even
            inside an epoch (with the epoch's random streams, so a later call resumes exactly): the
            branch point of a shorter ``"wsd"`` run. One process only.
    Returns:
        One dict per finished epoch: ``epoch``, ``loss``, task metrics, ``lr``, ``seconds``, ``img_per_s``
        (a run whose ``steps`` end inside an epoch records that last part as an epoch too).
    """
    if len(x) == 0:
        raise ValueError("fit: no training images")
    device = resolve_device(cfg.device)
    w = world()
    if cfg.batch_size % w.size:
        raise ValueError(f"fit: the global batch of {cfg.batch_size} does not split over {w.size} processes; "
                         f"use a batch_size divisible by the world size")
    if stop_at_step is not None and w.size > 1:
        raise ValueError("fit: stop_at_step checkpoints inside an epoch, which one process only can do")
    if device.type == "cuda" and w.size > 1:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (set by init)
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    if len(y) != len(x):
        raise ValueError(f"fit: {len(x)} images but {len(y)} labels")
    torch.manual_seed(cfg.seed)
    task.to(device)
    if device.type == "cuda":  # the data sets are small: keep them on the GPU, no loader needed
        x, y = x.to(device), y.to(device)
    spe = max(1, len(x) // cfg.batch_size)  # the ragged last batch is dropped
    total = cfg.steps if cfg.steps is not None else cfg.epochs * spe
    opt = make_optimizer(task, cfg)
    sched = make_scheduler(opt, cfg, spe, total)
    if cfg.compile:
        compile_blocks(task)
    history: list[dict] = []
    done = 0  # optimiser steps already taken
    inside: dict | None = None  # the state of an epoch interrupted part-way
    ckpt = Path(run_dir) / "last.pt" if run_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        task.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if cfg.schedule == "cosine":
            sched.load_state_dict(state["scheduler"])
        history = state["history"]
        done = state.get("step", state["epoch"] * spe)
        inside = state.get("inside")
        if done:
            sched.step_update(done)
    step_loss = task.loss if w.size == 1 else _distributed(task, device)
    local = shard(cfg.batch_size, w)  # this rank's part of every global batch
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    n_epochs = -(-total // spe)

    def save(epoch: int, inside_state: dict | None) -> None:
        if ckpt is not None and w.is_main:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"model": task.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch, "step": done, "history": history,
                               "inside": inside_state, "rng": _capture_rng()}, ckpt)
            atomic_write_text(ckpt.parent / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))

    for epoch in range(done // spe, n_epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        if stop_at_step is not None and done >= stop_at_step:
            break
        first, end = done - epoch * spe, min(spe, total - epoch * spe)  # this epoch's steps: [first, end)
        last = end if stop_at_step is None else min(end, stop_at_step - epoch * spe)
        rng, draws = _epoch_streams(cfg.seed, epoch, device, w)
        order = torch.randperm(len(x), generator=rng.torch_gen, device=device)
        task.train()
        # metrics are summed on the device and read once per epoch: a per-step .item() would make the
        # host wait for the GPU at every step
        sums: dict[str, torch.Tensor] = {}
        finite = torch.ones((), dtype=torch.bool, device=device)
        spent = 0.0
        if first and inside is not None:  # an epoch interrupted part-way: its streams and sums as they were
            draws.torch_gen.set_state(inside["gen"].cpu() if device.type == "cpu" else inside["gen"])
            draws.np_rng.bit_generator.state = inside["np"]
            torch.set_rng_state(inside["torch"].cpu())
            sums = {k: v.to(device) for k, v in inside["sums"].items()}
            spent = inside["seconds"]
        inside = None
        t0 = time.perf_counter()
        bar = progress(range(first, last), desc=f"{desc} {epoch + 1}/{n_epochs}")
        for step in bar:
            idx = order[step * cfg.batch_size: (step + 1) * cfg.batch_size][local]
            with autocast:
                loss, metrics = step_loss(x[idx], y[idx], draws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
            opt.step()
            sched.step_update(epoch * spe + step + 1)
            for k, v in {"loss": loss, **metrics}.items():
                v = torch.as_tensor(v, device=device).detach().float()
                sums[k] = sums[k] + v if k in sums else v
            finite &= torch.isfinite(loss.detach()).all()
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == last:
                _check_finite(all_true(finite), desc, epoch, step, cfg.lr)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        seconds = spent + time.perf_counter() - t0
        done = epoch * spe + last
        if last < end:  # stopped inside the epoch: keep what resuming it needs
            save(epoch, {"gen": draws.torch_gen.get_state(), "np": draws.np_rng.bit_generator.state,
                         "torch": torch.get_rng_state(), "sums": {k: v.cpu() for k, v in sums.items()},
                         "seconds": seconds})
            break
        record = {"epoch": epoch + 1, **{k: all_mean(v).item() / end for k, v in sums.items()},
                  "lr": max(g["lr"] for g in opt.param_groups), "seconds": seconds,
                  "img_per_s": end * cfg.batch_size / seconds}
        history.append(record)
        save(epoch + 1, None)
        barrier()  # no rank runs ahead of the checkpoint it might resume from
        if on_epoch is not None:
            on_epoch(record)
    task.eval()
    return history
