"""Figures of the book. Each function returns a matplotlib ``Figure`` and draws nothing else."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_curve

from mood.core.images import ImageFormat, ImageSet, from_tensor
from mood.core.masking import mask_batch
from mood.core.tokenizer import PatchTokenizer, unpatchify

sns.set_theme(style="whitegrid", context="notebook")


def _show(ax, img: np.ndarray) -> None:
    """``uint8 [H, W, C]`` on ``ax``, grey colour map for one channel."""
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
              vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(sets: Mapping[str, ImageSet], n: int = 8, seed: int = 0) -> plt.Figure:
    """``n`` random images of each set, one row per set, as they are stored."""
    fig, axes = plt.subplots(len(sets), n, figsize=(1.2 * n, 1.3 * len(sets)), squeeze=False)
    rng = np.random.default_rng(seed)
    for row, (name, s) in zip(axes, sets.items()):
        for ax, i in zip(row, rng.choice(len(s), min(n, len(s)), replace=False)):
            _show(ax, s.images[i])
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def mim_figure(task, x: torch.Tensor, fmt: ImageFormat = ImageFormat(), seed: int = 0) -> plt.Figure:
    """BEiT MIM at work on images ``x [n, C, H, W]``: the image, what the encoder sees (masked
    patches grey), the tokenizer's version of the image (the targets), and the prediction (the
    predicted token at every masked patch, the target elsewhere)."""
    bb = task.backbone
    mask = mask_batch(len(x), bb.grid, task.mask_ratio, task.mask_kind, np.random.default_rng(seed))
    target = task.tokenizer.encode(x)
    pred = task.predict(x, mask).argmax(-1)
    shown = torch.where(mask, pred, target)
    p, g, c = bb.patch_size, bb.grid, x.shape[1]
    grey = x.clone()
    pixel_mask = unpatchify(mask[..., None].float().expand(-1, -1, c * p * p), p, g, c).bool()
    grey[pixel_mask] = 0.0
    rows = {"image": x, "encoder input": grey, "tokens (target)": task.tokenizer.decode(target, g),
            "prediction": task.tokenizer.decode(shown, g)}
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.3 * len(x), 1.4 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for k, img in enumerate(from_tensor(imgs, fmt)):
            _show(axes[r, k], img)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    acc = float((pred[mask] == target[mask]).float().mean())
    fig.suptitle(f"masked tokens predicted exactly: {100 * acc:.1f}% (vocabulary {task.tokenizer.vocab_size})")
    fig.tight_layout()
    return fig


def codebook_figure(tokenizer: PatchTokenizer, counts: torch.Tensor | None = None, n: int = 64,
                    fmt: ImageFormat = ImageFormat()) -> plt.Figure:
    """The ``n`` most used codes (or the first ``n``) of the tokenizer, each a ``p x p`` patch."""
    order = torch.argsort(counts, descending=True)[:n] if counts is not None else torch.arange(min(n, tokenizer.vocab_size))
    p, c = tokenizer.patch_size, tokenizer.channels
    patches = from_tensor(tokenizer.codebook[order].reshape(-1, c, p, p), fmt)
    cols = 16
    rows = int(np.ceil(len(order) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.55, rows * 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, patch, k in zip(axes.ravel(), patches, order.tolist()):
        _show(ax, patch)
        if counts is not None:
            ax.set_title(f"{100 * float(counts[k]) / float(counts.sum()):.1f}%", fontsize=6)
    fig.suptitle("visual vocabulary: most frequent codes (share of patches)" if counts is not None else "codes")
    fig.tight_layout()
    return fig


CURVE_LABELS = {"loss": "training loss", "acc": "training accuracy (fraction)",
                "token_acc": "masked-token accuracy (fraction)", "lr": "learning rate"}


def curves(histories: Mapping[str, Sequence[dict]], keys: Sequence[str] = ("loss",)) -> plt.Figure:
    """Per-epoch curves of ``keys`` for each named history (from :func:`mood.core.engine.fit`)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, h in histories.items():
            pts = [(r["epoch"], r[key]) for r in h if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(CURVE_LABELS.get(key, key))
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def score_histograms(id_scores: torch.Tensor | np.ndarray, ood_scores: Mapping[str, torch.Tensor | np.ndarray],
                     xlabel: str = "OOD score (higher = more OOD)", log_x: bool = False) -> plt.Figure:
    """Density of the ID test scores beside each OOD set's."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    tf = (lambda v: np.log10(np.asarray(v, dtype=np.float64) + 1e-9)) if log_x else np.asarray
    sns.kdeplot(tf(id_scores), ax=ax, fill=True, lw=2, color="black", label="ID test", warn_singular=False)
    for name, s in ood_scores.items():
        sns.kdeplot(tf(s), ax=ax, lw=1.5, label=name, warn_singular=False)
    ax.set_xlabel(f"log10 {xlabel}" if log_x else xlabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def class_score_grid(scores: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
                     xlabel: str = "log10 Mahalanobis distance", cols: int = 5) -> plt.Figure:
    """One panel per one-class run (``{class: (ID test scores [N], OOD scores [M])}``): the density
    of the normal class's test scores (black) beside the other classes' (orange), on a log10 axis
    of each panel's own range, so that the overlap — what each class's AUROC summarises — can be seen."""
    rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax, (name, (id_s, ood_s)) in zip(axes.flat, scores.items()):
        tf = lambda v: np.log10(np.asarray(v, dtype=np.float64) + 1e-9)  # noqa: E731
        sns.kdeplot(tf(id_s), ax=ax, fill=True, color="black", lw=1.5, label="its test images", warn_singular=False)
        sns.kdeplot(tf(ood_s), ax=ax, color="tab:orange", lw=1.5, label="other classes", warn_singular=False)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_yticks([])
    for ax in list(axes.flat)[len(scores):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.supxlabel(xlabel, fontsize=10)
    fig.tight_layout()
    return fig


def image_strip(images: ImageSet, titles: Sequence[str]) -> plt.Figure:
    """The images of ``images`` in a row, each with its title (two short lines at most)."""
    n = max(len(images), 1)
    fig, axes = plt.subplots(1, n, figsize=(1.45 * n, 2.0), squeeze=False)
    for ax, img, title in zip(axes[0], images.images, titles):
        _show(ax, img)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def roc_figure(id_scores: torch.Tensor | np.ndarray, ood_scores: Mapping[str, torch.Tensor | np.ndarray]) -> plt.Figure:
    """ROC curves in FPR95's convention (ID is the positive class, accepted when its OOD score is at
    most the threshold): the share of ID images kept against the share of OOD images let through,
    with the 95% line whose crossing is each set's FPR95."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    s_id = np.asarray(id_scores)
    for (name, s), color in zip(ood_scores.items(), sns.color_palette("colorblind")):
        s = np.asarray(s)
        fpr, tpr, _ = roc_curve(np.r_[np.ones(len(s_id)), np.zeros(len(s))], -np.r_[s_id, s])
        ax.plot(fpr, tpr, label=name, color=color)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.axhline(0.95, ls="--", color="grey", lw=0.8, label="95% of ID kept (FPR95)")
    ax.set_xlabel("OOD images let through (FPR)")
    ax.set_ylabel("ID images kept (TPR)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def feature_scatter(fit: torch.Tensor, id_test: torch.Tensor, ood: Mapping[str, torch.Tensor], n: int = 600,
                    seed: int = 0) -> plt.Figure:
    """The first two principal components of the ID training features, with ID test and OOD
    features projected on them (``n`` points per set)."""
    rng = np.random.default_rng(seed)
    pca = PCA(2, random_state=seed).fit(fit.numpy())

    def pick(t: torch.Tensor) -> np.ndarray:
        idx = rng.choice(len(t), min(n, len(t)), replace=False)
        return pca.transform(t.numpy()[idx])

    fig, ax = plt.subplots(figsize=(6, 5))
    z = pick(id_test)
    ax.scatter(z[:, 0], z[:, 1], s=5, c="black", alpha=0.5, label="ID test")
    for (name, t), color in zip(ood.items(), sns.color_palette("colorblind")):  # distinct hues, none near black
        z = pick(t)
        ax.scatter(z[:, 0], z[:, 1], s=5, alpha=0.5, label=name, color=color)
    ax.set_xlabel("PC 1 of ID features")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def stage_figure(curve: pd.DataFrame, floors: Mapping[tuple[str, str], float] | None = None,
                 scores: Sequence[str] = ("msp", "energy", "odin")) -> plt.Figure:
    """Unleashing Mask's intermediate stages, one column per (``condition``, ``model``) of ``curve``.

    Top: mean test AUROC over the OOD sets of each score by epoch (mean over seeds, band = sd); the
    oracle best epoch of the first score (picked on the test sets) dotted, the epoch picked on the
    validation OOD set (when the curve has it) dash-dotted. Bottom: training and validation loss and
    ID test accuracy by epoch, with the estimated loss floor ``floors[(condition, model)]`` (mean
    over seeds) dashed.
    """
    groups = list(dict.fromkeys(zip(curve["condition"], curve["model"])))
    fig, axes = plt.subplots(2, len(groups), figsize=(5.2 * len(groups), 6.4), sharex="col", squeeze=False)
    for j, (cond, model) in enumerate(groups):
        c = curve[(curve["condition"] == cond) & (curve["model"] == model)]
        top, bottom = axes[0, j], axes[1, j]
        long = c.melt(id_vars=["epoch", "seed"], value_vars=[f"{s} AUROC" for s in scores], var_name="score",
                      value_name="AUROC")
        sns.lineplot(data=long, x="epoch", y="AUROC", hue="score", errorbar="sd", marker="o", ax=top)
        mean = c.groupby("epoch")[f"{scores[0]} AUROC"].mean()
        top.axvline(mean.idxmax(), ls=":", color="tab:green", label=f"oracle best {scores[0]} epoch")
        if f"{scores[0]} val AUROC" in c:
            picked = c.groupby("epoch")[f"{scores[0]} val AUROC"].mean().idxmax()
            top.axvline(picked, ls="-.", color="tab:purple", label="picked on val OOD")
        top.axvline(mean.index.max(), ls="--", color="grey", label="last epoch")
        top.set_title(f"{model}, {cond}")
        top.legend(fontsize=7)
        sns.lineplot(data=c, x="epoch", y="train loss", errorbar="sd", color="tab:blue", label="train loss", ax=bottom)
        if "val loss" in c:
            sns.lineplot(data=c, x="epoch", y="val loss", errorbar="sd", color="tab:cyan", label="val loss", ax=bottom)
        if floors and (cond, model) in floors:
            b = floors[(cond, model)]
            bottom.axhline(b, ls="--", color="tab:red", label=f"UM floor b = {b:.3f}")
        bottom.set_ylabel("cross-entropy")
        acc = bottom.twinx()
        sns.lineplot(data=c, x="epoch", y="ID acc", errorbar="sd", color="tab:orange", ax=acc)
        acc.set_ylabel("ID test accuracy (%)", color="tab:orange")
        acc.grid(False)
        bottom.legend(fontsize=7, loc="upper right")
        bottom.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def loss_histogram(losses: pd.DataFrame, floors: Mapping[tuple[str, str], float] | None = None) -> plt.Figure:
    """Per-image training loss of the final models, one panel per (``condition``, ``model``):
    a histogram of log10 cross-entropy, mislabelled images apart, with the UM floor ``b`` marked.
    The long right tail is what late training memorises."""
    groups = list(dict.fromkeys(zip(losses["condition"], losses["model"])))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.4), squeeze=False)
    for ax, (cond, model) in zip(axes[0], groups):
        d = losses[(losses["condition"] == cond) & (losses["model"] == model)]
        d = d.assign(log10_loss=np.log10(d["loss"].clip(lower=1e-8)),
                     label=np.where(d["mislabelled"], "mislabelled", "correct label"))
        sns.histplot(data=d, x="log10_loss", hue="label", hue_order=["correct label", "mislabelled"], bins=60,
                     element="step", stat="count", common_norm=False, ax=ax)
        if floors and (cond, model) in floors:
            ax.axvline(np.log10(floors[(cond, model)]), ls="--", color="tab:red", label="UM floor b")
        ax.set_xlabel("log10 training cross-entropy, final model")
        ax.set_yscale("log")
        ax.set_title(f"{model}, {cond}")
    fig.tight_layout()
    return fig


def floor_climb(climb: pd.DataFrame, tolerance: float = 0.10) -> plt.Axes:
    """UM's training cross-entropy over its floor ``b`` per tuning epoch (a :class:`UnleashStudy`'s
    ``climb``: one line per condition and seed), on a log scale, with 1 (the floor) and the ±``tolerance`` band marked."""
    ax = sns.lineplot(data=climb, x="epoch", y="ce / b", hue="condition", units="seed", estimator=None, marker="o")
    ax.axhline(1.0, color="tab:red", ls="--", label="floor b")
    ax.axhspan(1 - tolerance, 1 + tolerance, color="tab:red", alpha=0.1)
    ax.set_yscale("log")
    ax.set_ylabel("training CE / b")
    ax.set_xlabel("UM tuning epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return ax


CHANCE = 50.0  # AUROC of a detector that guesses: every AUROC axis starts here, so gaps are not magnified


def auroc_points(data: pd.DataFrame, y: str, x: str = "AUROC", hue: str | None = None,
                 marks: Mapping[str, Mapping[str, float]] | None = None, lines: Mapping[str, float] | None = None,
                 ax: plt.Axes | None = None) -> plt.Axes:
    """AUROC per ``y`` as points with 95% t-intervals over the rows of each group (seeds; a group of
    one row is a point without interval), on an axis from chance (50) to 100 so that no gap looks
    larger than it is.

    Args:
        data: one row per (``y``, ``hue``, seed) with the AUROC in ``x``.
        marks: trivial baselines drawn as labelled crosses: name -> {``y`` value: AUROC}.
        lines: reference values drawn as labelled vertical lines (published anchors, a mean): name -> AUROC.
    """
    ax = ax or plt.subplots(figsize=(7, 0.45 * data[y].nunique() + 1.2))[1]
    sns.pointplot(data=data, y=y, x=x, hue=hue, errorbar=("ci", 95), linestyle="none", dodge=0.4 if hue else False,
                  markers="o", ax=ax)
    order = list(dict.fromkeys(data[y]))
    for (name, points), marker in zip((marks or {}).items(), ("x", "+", "^", "s")):
        pts = [(v, order.index(k)) for k, v in points.items() if k in order]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, s=60, color="black", zorder=3, label=name)
    for (name, value), color in zip((lines or {}).items(), sns.color_palette("colorblind")[3:]):
        ax.axvline(value, ls="--", lw=1.2, color=color, label=f"{name} {value:.1f}")
    ax.set_xlim(CHANCE, 100.5)
    ax.set_xlabel(f"{x} (%), from chance ({CHANCE:.0f}); points: mean, bars: 95% interval over seeds")
    ax.set_ylabel("")
    if marks or lines or hue:
        ax.legend(fontsize=8, loc="lower left")
    return ax


def ablation_tradeoff(runs: pd.DataFrame, value: str = "AUROC",
                      against: Sequence[str] = ("ID acc", "images seen", "linear probe acc")) -> plt.Figure:
    """``value`` of each run against its ID accuracy, the training images it processed and, where
    measured, its pretrained features' linear-probe accuracy: one panel each, one colour per variant,
    a small dot per seed and a large one at the variant's mean. A variant that wins on OOD only
    because it trained longer, or learned the classes better, shows as a point further right."""
    against = [c for c in against if c in runs and runs[c].notna().any()]
    fig, axes = plt.subplots(1, len(against), figsize=(4.6 * len(against), 4.0), squeeze=False, sharey=True)
    palette = dict(zip(dict.fromkeys(runs["variant"]), sns.color_palette("tab10")))
    means = runs.groupby("variant", sort=False)[[value, *against]].mean()
    for ax, x in zip(axes[0], against):
        sns.scatterplot(data=runs, x=x, y=value, hue="variant", palette=palette, s=25, alpha=0.5, ax=ax, legend=False)
        for variant, row in means.iterrows():
            ax.scatter(row[x], row[value], s=140, color=palette[variant], edgecolor="black", label=variant, zorder=3)
        ax.set_xlabel(x + (" (pretraining + fine-tuning)" if x == "images seen" else ""))
    axes[0][0].set_ylabel(f"mean OOD {value}")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
