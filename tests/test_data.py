"""Data loading, the image format and bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mood.core import data, images
from tests.conftest import write_idx


def test_idx_round_trip_gz_and_raw(tmp_path: Path) -> None:
    a = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    for gz in (True, False):
        p = write_idx(tmp_path / f"x{gz}", a, gz=gz)
        np.testing.assert_array_equal(data.read_idx(p), a)


def test_corrupt_idx_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78garbage")
    with pytest.raises(data.CorruptDataError, match=str(bad)):
        data.read_idx(bad)
    p = write_idx(tmp_path / "short", np.zeros((4, 28, 28), np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(data.CorruptDataError, match="truncated"):
        data.read_idx(p)


def test_load_fashion_mnist_from_named_folder(tiny_fmnist: Path) -> None:
    s = data.load_fashion_mnist("train", root=tiny_fmnist)
    assert s.images.shape == (50, 28, 28, 1) and s.images.dtype == np.uint8
    assert s.source == str(tiny_fmnist)
    assert sorted(np.unique(s.labels)) == list(range(10))
    assert s.classes[9] == "Ankle boot"


def test_environment_variable_is_used(tiny_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOOD_FMNIST_DIR", str(tiny_fmnist))
    assert data.load_fashion_mnist("test").source == str(tiny_fmnist)


def test_missing_fashion_mnist_lists_three_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("MOOD_NO_DOWNLOAD", "1")
    monkeypatch.setenv("MOOD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MOOD_FMNIST_DIR", raising=False)
    data._load_fmnist_arrays.cache_clear()
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_fashion_mnist("test")
    msg = str(err.value)
    assert "MOOD_FMNIST_DIR" in msg and "apt-get install dataset-fashion-mnist" in msg and "torchvision" in msg
    data._load_fmnist_arrays.cache_clear()
    with pytest.raises(ValueError, match="valid"):
        data.load_fashion_mnist("validation")


def test_to_tensor_grey_rgb_resize_and_normalise() -> None:
    grey = np.full((2, 28, 28, 1), 255, np.uint8)
    x = images.to_tensor(grey, images.ImageFormat(size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.ones_like(x))  # (1 - 0.5) / 0.5
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 255
    y = images.to_tensor(red, images.ImageFormat(size=8, channels=1, mean=(0.0,), std=(1.0,)))
    torch.testing.assert_close(y, torch.full((1, 1, 8, 8), 0.299))
    with pytest.raises(ValueError, match=r"uint8 \[N, H, W, C\]"):
        images.to_tensor(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="channels"):
        images.ImageFormat(channels=2, mean=(0, 0), std=(1, 1))


def test_from_tensor_inverts_to_tensor() -> None:
    a = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(images.from_tensor(images.to_tensor(a)), a)


def test_from_array_layouts_and_errors() -> None:
    chw = np.random.default_rng(0).random((4, 3, 10, 10))
    s = data.from_array("mine", chw)
    assert s.images.shape == (4, 10, 10, 3) and s.images.dtype == np.uint8
    assert data.from_array("t", torch.zeros(2, 9, 9)).shape == (9, 9, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.from_array("x", np.full((2, 8, 8), 3.0))
    with pytest.raises(ValueError, match="NaN"):
        data.from_array("x", np.full((2, 8, 8), np.nan))
    with pytest.raises(ValueError, match="channels"):
        data.from_array("x", np.zeros((2, 8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match="expected images"):
        data.from_array("x", np.zeros((8, 8)))


def test_from_folder(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((40, 30, 3), 50 * i, np.uint8)).save(tmp_path / f"{i}.png")
    s = data.from_folder(tmp_path, size=16)
    assert s.images.shape == (3, 16, 16, 3) and s.images[2].mean() == 100
    with pytest.raises(data.DataNotFoundError, match="no images"):
        data.from_folder(_empty(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(data.CorruptDataError, match="bad.png"):
        data.from_folder(tmp_path)


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize("name", data.OFFLINE_OOD)
def test_offline_ood_sets(name: str) -> None:
    a, b = data.load_ood(name, n=64, seed=3), data.load_ood(name, n=64, seed=3)
    assert len(a) == 64 and a.images.dtype == np.uint8 and a.images.shape[-1] in (1, 3)
    np.testing.assert_array_equal(a.images, b.images)  # seeded
    assert a.images.std() > 5, "an OOD set of constant images is a bug"
    x = images.to_tensor(a)
    assert x.shape == (64, 1, 28, 28) and torch.isfinite(x).all()


def test_unknown_ood_set_lists_valid() -> None:
    with pytest.raises(ValueError, match="mnist, digits"):
        data.load_ood("imagenet")


def test_cifar10_loads_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real torchvision CIFAR-10 reader on a 6-image file in the on-disk format."""
    import torchvision.datasets.cifar as tv_cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": pixels, "labels": [0, 1, 2, 3, 4, 5]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # md5s are of the real files
    s = data.load_cifar("cifar10", "test", root=tmp_path, download=False)
    assert s.images.shape == (6, 32, 32, 3) and list(s.labels) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(s.images[1, :, :, 0].reshape(-1), pixels[1, :1024])  # red plane first
    assert s.classes[0] == "c0"


def test_svhn_loads_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # the .mat layout: H, W, C, N
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [2], [10], [4], [5]])})
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)
    s = data.load_svhn("test", root=tmp_path, download=False)
    assert s.images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(s.images[3], x[..., 3])
    assert list(s.labels) == [1, 2, 0, 4, 5]  # torchvision maps digit 10 to 0


def test_missing_online_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(data.DataNotFoundError, match="download=True"):
        data.load_cifar("cifar10", root=tmp_path, download=False)


def test_sample_is_stratified_and_split_disjoint(tiny_fmnist: Path) -> None:
    s = data.load_fashion_mnist("train", root=tiny_fmnist)
    small = s.sample(20, seed=0)
    assert np.bincount(small.labels, minlength=10).tolist() == [2] * 10
    a, b = images.split_disjoint(s, 0.3, seed=0)
    assert len(a) == 15 and len(b) == 35 and not set(a.ids) & set(b.ids)


def test_patch_sets_know_their_source_picture_and_split_by_it() -> None:
    photos = data.load_photos(400, seed=1)
    assert photos.groups is not None and set(photos.groups) == set(range(len(data.PHOTO_IMAGES)))
    a, b = images.split_disjoint(photos, 0.5, seed=0)
    assert len(set(a.groups)) == 4 and len(set(b.groups)) == 4 and not set(a.groups) & set(b.groups)
    assert len(a) + len(b) == 400 and photos.sample(50, 0).groups is not None  # carried through subsets


def test_from_array_ambiguity_dtypes_and_messages() -> None:
    with pytest.raises(ValueError, match=r"shape \(25, 25, 3\) is ambiguous.*array\[None\] for one image"):
        data.from_array("x", np.zeros((25, 25, 3), np.uint8))
    one = data.from_array("x", np.zeros((25, 25, 3), np.uint8)[None])
    assert len(one) == 1 and one.shape == (25, 25, 3)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\], got min 0.0, max 1.0001"):
        data.from_array("x", np.stack([np.zeros((8, 8)), np.full((8, 8), 1.0001)]))
    ints = data.from_array("x", np.arange(2 * 8 * 8, dtype=np.int64).reshape(2, 8, 8) % 256)
    assert ints.images.dtype == np.uint8 and int(ints.images.max()) == 127
    with pytest.raises(ValueError, match=r"integer images must lie in 0..255, got 0..300"):
        data.from_array("x", np.array([[[0, 300]]], dtype=np.int64).repeat(2, 0))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        data.from_array("x", np.zeros((3, 8, 8), np.uint8), labels=[0, 1])


def test_imageset_repr_is_short_and_to_tensor_does_not_warn(tiny_fmnist: Path) -> None:
    import warnings

    train = data.load_fashion_mnist("train", tiny_fmnist)
    text = repr(train)
    assert text == ("ImageSet('fashion-mnist/train', 50 images 28x28x1, 10 classes, "
                    "origin='fashion-mnist/train')") and len(text) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writable array
        images.to_tensor(train)


def test_named_folder_that_is_empty_or_missing_is_an_error(tmp_path: Path, tiny_fmnist: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOOD_FMNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataNotFoundError, match=r"MOOD_FMNIST_DIR=.*nowhere does not exist.*unset it"):
        data.load_fashion_mnist("train")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MOOD_FMNIST_DIR", str(empty))
    with pytest.raises(data.DataNotFoundError, match=r"has no train-images-idx3-ubyte\[.gz\]"):
        data.load_fashion_mnist("train")
    with pytest.raises(data.DataNotFoundError, match="root=.*empty has no t10k-images"):
        data.load_fashion_mnist("test", root=empty)
    monkeypatch.setenv("MOOD_FMNIST_DIR", str(tiny_fmnist))
    assert len(data.load_fashion_mnist("train")) == 50


def test_label_noise_flips_exactly_the_rate_and_never_to_the_true_class() -> None:
    from mood.core.data import from_array
    from mood.core.images import with_label_noise

    rng = np.random.default_rng(0)
    s = from_array("t", rng.integers(0, 255, (200, 28, 28), dtype=np.uint8), np.arange(200) % 10)
    noisy = with_label_noise(s, 0.2, seed=1)
    wrong = noisy.labels != s.labels
    assert wrong.sum() == 40 and noisy.labels.min() >= 0 and noisy.labels.max() <= 9
    assert noisy.name != s.name and np.array_equal(noisy.ids, s.ids)  # cache keys tell them apart
    assert not np.array_equal(with_label_noise(s, 0.2, seed=2).labels, noisy.labels)
    assert with_label_noise(s, 0.0) is s
    with pytest.raises(ValueError, match="must lie in"):
        with_label_noise(s, 1.0)


def test_shuffled_tiles_keep_each_images_tiles() -> None:
    from mood.core.data import from_array
    from mood.core.images import shuffle_patches

    rng = np.random.default_rng(0)
    s = from_array("t", rng.integers(0, 255, (5, 28, 28), dtype=np.uint8), np.arange(5))
    out = shuffle_patches(s, patch=7, seed=0)

    def tiles(img: np.ndarray) -> list[bytes]:
        return sorted(img[r:r + 7, c:c + 7].tobytes() for r in range(0, 28, 7) for c in range(0, 28, 7))

    for a, b in zip(s.images, out.images):
        assert tiles(a) == tiles(b) and not np.array_equal(a, b)
    assert (out.labels == -1).all() and out.origin != s.origin
    with pytest.raises(ValueError, match="do not split"):
        shuffle_patches(s, patch=5)
