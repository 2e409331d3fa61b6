"""Shared fixtures: seeded RNGs, tiny on-disk datasets, and access to the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mood.core import data


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Writes ``uint8`` ``array`` in the IDX format (gzipped when ``gz``)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> Path:
    """A Fashion-MNIST folder with 50 train and 20 test images (5 and 2 per class)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 50), ("test", 20)):
        img_name, lbl_name = data._IDX_FILES[split]
        write_idx(tmp_path / img_name, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / lbl_name, np.tile(np.arange(10, dtype=np.uint8), n // 10))
    data._load_fmnist_arrays.cache_clear()
    yield tmp_path
    data._load_fmnist_arrays.cache_clear()


def fmnist_available() -> bool:
    try:
        data.load_fashion_mnist("test", download=False)
        return True
    except data.DataNotFoundError:
        return False


@pytest.fixture(scope="session")
def require_fmnist() -> None:
    """Real Fashion-MNIST: CI installs it (`make data`), so there a missing copy is a failure."""
    if not fmnist_available():
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST missing on CI: `make data` should have installed it")
        pytest.skip("Fashion-MNIST not installed (run `make data`)")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CIFAR-10, CIFAR-100 and SVHN in torchvision's own on-disk formats (pickled batches, a .mat file),
    a few images each, under one folder (their md5 checks patched: the sums are of the real files).
    CIFAR-10: 6 images a class in training (5 batches), 3 a class in test; the class shows as brightness."""
    import pickle

    import torchvision.datasets.cifar as tv_cifar
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(0)
    root = tmp_path / "online"

    def batch(labels: np.ndarray, key: str) -> dict:
        pixels = rng.integers(0, 96, (len(labels), 3072)) + labels[:, None] * 15
        return {"data": pixels.astype(np.uint8), key: labels.tolist()}

    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    for i in range(5):
        (c10 / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch(np.repeat(np.arange(10), 6)[i::5], "labels")))
    (c10 / "test_batch").write_bytes(pickle.dumps(batch(np.repeat(np.arange(10), 3), "labels")))
    (c10 / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    c100 = root / "cifar-100-python"
    c100.mkdir()
    (c100 / "train").write_bytes(pickle.dumps(batch(np.arange(200) % 100, "fine_labels")))
    (c100 / "test").write_bytes(pickle.dumps(batch(np.arange(100) % 100, "fine_labels")))
    (c100 / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"fine{i}" for i in range(100)]}))
    savemat(root / "test_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, 40), dtype=np.uint8),
                                      "y": (np.arange(40) % 10 + 1).reshape(-1, 1)})
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setenv("MOOD_NO_DOWNLOAD", "1")
    return root
