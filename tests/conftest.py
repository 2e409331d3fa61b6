"""Shared fixtures: seeded RNGs, tiny on-disk datasets, and access to the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mood import data


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
