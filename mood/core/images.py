"""One kind of image set and one image format.

An :class:`ImageSet` holds ``uint8`` images ``[N, H, W, C]`` as they are stored, labels, and the
index of each image in the file it came from (``ids``), so that tests can prove that splits never
share an image. Conversion to what a model eats (size, channels, normalisation) happens in one
place, :func:`to_tensor`. The transforms here (disjoint splits, label noise, tile shuffling,
concatenation) keep the ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def hash_ids(ids: np.ndarray) -> str:
    """A short content hash of an id array (``int64``): the one hash of image ids in ``mood``."""
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]

@dataclass
class ImageSet:
    """A set of images kept in memory exactly as stored.

    Attributes:
        name: short name used in tables (``"mnist"``, ``"fashion-mnist/test"``).
        images: ``uint8 [N, H, W, C]``.
        labels: ``int64 [N]``; ``-1`` where the set is unlabelled.
        ids: ``int64 [N]``, index of each image within ``origin``.
        origin: the file or generator the ids index into (two sets with the same origin and
            overlapping ids share images).
        source: where it was loaded from, for humans (a path, a package, a seed).
        classes: class names, when labelled.
        groups: ``int64 [N]`` source of each image when several images come from one source (the
            picture a patch was cut from), else None (every image its own source). Splits that
            must not share a source (:func:`split_disjoint`) split by group.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    origin: str
    source: str
    classes: tuple[str, ...] = field(default=())
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"{self.name}: images must be uint8 [N, H, W, C], got {self.images.dtype} "
                f"{tuple(self.images.shape)}; use mood.core.data.from_array to convert")
        n = len(self.images)
        if len(self.labels) != n or len(self.ids) != n:
            raise ValueError(f"{self.name}: {n} images but {len(self.labels)} labels and {len(self.ids)} ids")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"{self.name}: {n} images but {len(self.groups)} group ids")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        h, w, c = self.shape
        labelled = f", {len(self.classes)} classes" if self.classes else (", labelled" if (self.labels >= 0).any() else "")
        return f"ImageSet({self.name!r}, {len(self)} images {h}x{w}x{c}{labelled}, origin={self.origin!r})"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: np.ndarray | Sequence[int], name: str | None = None) -> "ImageSet":
        """The images at ``index`` (an int array or a boolean mask), keeping their ids."""
        index = np.asarray(index)
        return replace(self, name=name or self.name, images=self.images[index], labels=self.labels[index],
                       ids=self.ids[index], groups=None if self.groups is None else self.groups[index])

    def sample(self, n: int | None, seed: int = 0, name: str | None = None) -> "ImageSet":
        """``n`` images drawn without replacement (all of them, shuffled, when ``n`` is None or
        larger than the set); stratified by label when labelled, so small samples keep every class."""
        rng = np.random.default_rng(seed)
        if n is None or n >= len(self):
            return self.subset(rng.permutation(len(self)), name)
        if (self.labels >= 0).all():
            classes, counts = np.unique(self.labels, return_counts=True)
            share = np.floor(counts / counts.sum() * n).astype(int)
            share[: n - share.sum()] += 1
            picks = [rng.choice(np.flatnonzero(self.labels == c), k, replace=False)
                     for c, k in zip(classes, share)]
            index = rng.permutation(np.concatenate(picks))
        else:
            index = rng.choice(len(self), n, replace=False)
        return self.subset(index, name)

    def summary(self) -> dict:
        """One row for ``python -m mood data``."""
        h, w, c = self.shape
        return {"name": self.name, "images": len(self), "size": f"{h}x{w}x{c}",
                "classes": len(self.classes) if self.classes else 0, "source": self.source}


# --------------------------------------------------------------------------------------------
# Image format: the one place where grey/RGB, size and normalisation are decided.

@dataclass(frozen=True)
class ImageFormat:
    """What a model eats.

    Args:
        size: side in pixels, images are resized to ``size x size``.
        channels: 1 (grey) or 3 (RGB); grey is repeated to RGB, RGB is turned to luminance.
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel std divided by.
    """

    size: int = 28
    channels: int = 1
    mean: tuple[float, ...] = (0.2860,)  # Fashion-MNIST train statistics
    std: tuple[float, ...] = (0.3530,)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"ImageFormat.channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"ImageFormat: mean/std need {self.channels} values, "
                             f"got {len(self.mean)}/{len(self.std)}")


def to_tensor(images: np.ndarray | ImageSet, fmt: ImageFormat = ImageFormat()) -> torch.Tensor:
    """``uint8 [N, H, W, C]`` (C in 1, 3) to the normalised ``float32 [N, fmt.channels, S, S]``."""
    if isinstance(images, ImageSet):
        images = images.images
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"to_tensor expects uint8 [N, H, W, C] with C in (1, 3), got "
                         f"{images.dtype} {tuple(images.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 3 and fmt.channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and fmt.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (fmt.size, fmt.size):
        x = F.interpolate(x, size=(fmt.size, fmt.size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > fmt.size).clamp_(0, 1)
    mean = torch.tensor(fmt.mean).view(1, -1, 1, 1)
    std = torch.tensor(fmt.std).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def sample_tensors(s: ImageSet, fmt: ImageFormat = ImageFormat(), max_images: int | None = None,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A training stage's data: a stratified sample of at most ``max_images`` of ``s`` (all, shuffled,
    when None) as images ``[N, C, S, S]`` (:func:`to_tensor`) and labels ``[N]`` (long)."""
    s = s.sample(max_images, seed) if max_images is not None else s
    return to_tensor(s, fmt), torch.from_numpy(s.labels.copy()).long()


def from_tensor(x: torch.Tensor, fmt: ImageFormat = ImageFormat()) -> np.ndarray:
    """Inverse of :func:`to_tensor` up to resizing: ``[N, C, S, S]`` to ``uint8 [N, S, S, C]``."""
    mean = torch.tensor(fmt.mean).view(1, -1, 1, 1)
    std = torch.tensor(fmt.std).view(1, -1, 1, 1)
    x = (x.detach().float().cpu() * std + mean).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def split_disjoint(s: ImageSet, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Splits ``s`` into two disjoint parts, the first holding ``fraction`` of the images; a set with
    ``groups`` is split by group (``fraction`` of its sources, at least one on each side), so no
    source picture has crops on both sides."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if s.groups is not None:
        sources = rng.permutation(np.unique(s.groups))
        if len(sources) < 2:
            raise ValueError(f"{s.name}: all images come from one source; it cannot be split by source")
        k = min(len(sources) - 1, max(1, int(round(fraction * len(sources)))))
        first = np.isin(s.groups, sources[:k])
        return s.subset(np.flatnonzero(first), f"{s.name}/a"), s.subset(np.flatnonzero(~first), f"{s.name}/b")
    order = rng.permutation(len(s))
    k = int(round(fraction * len(s)))
    return s.subset(order[:k], f"{s.name}/a"), s.subset(order[k:], f"{s.name}/b")


def with_label_noise(s: ImageSet, rate: float, seed: int = 0) -> ImageSet:
    """``s`` with symmetric label noise: ``round(rate * N)`` images, drawn at random, get a label drawn
    uniformly from the *other* classes (so exactly that fraction is wrong). The name records the
    rate and seed, so cached models trained on it are keyed apart from clean ones."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label noise rate must lie in [0, 1), got {rate}")
    if rate == 0.0:
        return s
    if (s.labels < 0).any():
        raise ValueError(f"{s.name}: label noise needs a labelled set")
    rng = np.random.default_rng(seed)
    classes = int(s.labels.max()) + 1
    flip = rng.choice(len(s), int(round(rate * len(s))), replace=False)
    labels = s.labels.copy()
    labels[flip] = (labels[flip] + rng.integers(1, classes, len(flip))) % classes  # never the true class
    return replace(s, name=f"{s.name}[noise {rate:g}, seed {seed}]", labels=labels)


def shuffle_patches(s: ImageSet, patch: int = 7, seed: int = 0) -> ImageSet:
    """Every image of ``s`` cut into ``patch x patch`` tiles that are put back in a random order (one
    permutation per image): the same pixels and local strokes, no object. An OOD set made from ID
    images, unlike any of the book's test OOD sets, for choosing hyperparameters on (validation)."""
    h, w, c = s.shape
    if h % patch or w % patch:
        raise ValueError(f"{s.name}: {h}x{w} images do not split into {patch}x{patch} tiles")
    rng = np.random.default_rng(seed)
    gh, gw = h // patch, w // patch
    tiles = (s.images.reshape(len(s), gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
             .reshape(len(s), gh * gw, patch, patch, c))
    order = np.argsort(rng.random((len(s), gh * gw)), axis=1)
    tiles = np.take_along_axis(tiles, order[:, :, None, None, None], axis=1)
    images = tiles.reshape(len(s), gh, gw, patch, patch, c).transpose(0, 1, 3, 2, 4, 5).reshape(len(s), h, w, c)
    return replace(s, name=f"{s.name} patch-shuffled", images=np.ascontiguousarray(images),
                   labels=np.full(len(s), -1, dtype=np.int64), origin=f"{s.origin}+patch-shuffled[{patch}, seed {seed}]",
                   classes=())


def concat(sets: Sequence[ImageSet], fmt: ImageFormat, name: str, relabel: bool = True) -> ImageSet:
    """One set from several of different sizes and channel counts, each first brought to ``fmt``'s
    size and channels (still ``uint8``). With ``relabel`` each part's labels are shifted past the
    previous part's (unlabelled parts get one label of their own), so the union is a classification
    task. The origin names every part, so the cache tells corpora apart."""
    images, labels, ids, classes, offset = [], [], [], [], 0
    for s in sets:
        images.append(from_tensor(to_tensor(s, fmt), fmt))
        lab = s.labels if (s.labels >= 0).all() else np.zeros(len(s), dtype=np.int64)
        n_cls = int(lab.max()) + 1
        labels.append(lab + offset if relabel else s.labels)
        names = s.classes if len(s.classes or ()) >= n_cls else (("all",) if n_cls == 1 else tuple(map(str, range(n_cls))))
        classes += [f"{s.name}:{c}" for c in names[:n_cls]]
        offset += n_cls
        ids.append(s.ids)
    origin = "concat(" + ",".join(f"{s.origin}#{hash_ids(s.ids)}" for s in sets) + ")"
    return ImageSet(name=name, images=np.concatenate(images), labels=np.concatenate(labels),
                    ids=np.arange(sum(len(s) for s in sets)), origin=origin,
                    source=" + ".join(s.name for s in sets), classes=tuple(classes))


__all__ = ["hash_ids", "ImageSet", "ImageFormat", "to_tensor", "sample_tensors", "from_tensor", "split_disjoint",
           "with_label_noise", "shuffle_patches", "concat"]
