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


def _score_by_definition(name: str, feats, backbone=None, inputs=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The OOD scores (higher = more OOD) of score ``name`` of the ID test set and each OOD set, from its
    published definition in numpy / scikit-learn (ODIN: torch autograd) on saved features ``feats``
    (:class:`~mood.experiments.pipeline.ProtocolFeatures`), independently of :mod:`mood.core.scores`."""
    import torch.nn.functional as F
    from scipy.special import entr, logsumexp, softmax
    from sklearn.covariance import EmpiricalCovariance

    from mood.core.scores import SCORES

    if name == "odin":  # Liang et al. 2018: x - eps sign(grad of CE(l(x)/T, argmax)), then -max softmax(l/T)
        t, eps = SCORES["odin"].params["temperature"], SCORES["odin"].params["epsilon"]

        def odin(x: torch.Tensor) -> np.ndarray:
            x = x.clone().requires_grad_(True)
            logits = backbone.eval()(x) / t
            grad, = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), x)
            with torch.no_grad():
                return -softmax(backbone(x - eps * grad.sign()).double().numpy() / t, axis=1).max(1)

        return odin(inputs.id_x), {k: odin(x) for k, x in inputs.ood_x.items()}
    if SCORES[name].needs == "logits":
        def from_logits(fs) -> np.ndarray:
            logit = fs.logits.double().numpy()
            p = softmax(logit, axis=1)
            return {"msp": -p.max(1), "maxlogit": -logit.max(1), "energy": -logsumexp(logit, axis=1),
                    "entropy": entr(p).sum(1), "outlier_class": p[:, -1]}[name]

        return from_logits(feats.id), {k: from_logits(v) for k, v in feats.ood.items()}
    fit, y = feats.fit.features.double().numpy(), feats.fit.labels.numpy()
    if name == "mahalanobis":  # squared distance to the mean under the (pseudo-)inverse covariance
        f = EmpiricalCovariance().fit(fit).mahalanobis
    elif name == "mahalanobis_cc":  # min over the class means, one covariance of the within-class residuals
        classes = np.unique(y)
        means = np.stack([fit[y == c].mean(0) for c in classes])
        prec = EmpiricalCovariance(assume_centered=True).fit(fit - means[np.searchsorted(classes, y)]).precision_
        f = lambda x: np.einsum("nkd,de,nke->nk", x[:, None] - means, prec, x[:, None] - means).min(1)  # noqa: E731
    elif name == "knn":  # minus the cosine similarity to the k-th nearest training feature
        k = SCORES["knn"].params["k"]
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
        f = lambda x: -np.sort(unit(x) @ unit(fit).T, axis=1)[:, -k]  # noqa: E731
    elif name == "vim":  # Wang et al. 2022: alpha |x - u| off the principal subspace, minus the energy
        w, b = (p.detach().double().numpy() for p in backbone.head_weights())
        d = fit.shape[1]
        u = -np.linalg.pinv(w) @ b
        _, vecs = np.linalg.eigh((fit - u).T @ (fit - u) / len(fit))  # ascending
        off = vecs[:, : d - (512 if d >= 1500 else d // 2)]
        alpha = (fit @ w.T + b).max(1).mean() / np.linalg.norm((fit - u) @ off, axis=1).mean()
        f = lambda x: alpha * np.linalg.norm((x - u) @ off, axis=1) - logsumexp(x @ w.T + b, axis=1)  # noqa: E731
    else:
        raise KeyError(f"no definition of score {name!r} here: add it to tests/conftest.py")
    g = lambda fs: f(fs.features.double().numpy())  # noqa: E731
    return g(feats.id), {k: g(v) for k, v in feats.ood.items()}


@pytest.fixture
def score_by_definition():
    """``(name, feats, backbone=None, inputs=None) -> (ID scores, {OOD set: scores})``: any score of the
    registry recomputed from its published definition (:func:`_score_by_definition`), to check the
    library's scores and tables against."""
    return _score_by_definition
