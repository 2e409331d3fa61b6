"""MOOD's own benchmarks on CIFAR: protocols, formats and the whole pipeline, offline on tiny files
written in torchvision's formats (``tiny_cifar``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mood.experiments.config import get_profile
from mood.core.data import CIFAR_FORMATS, DataNotFoundError
from mood.experiments.pipeline import setup
from mood.core.protocols import expand, make_protocol


def test_cifar_protocols_keep_test_images_out_of_training(tiny_cifar: Path) -> None:
    c10 = make_protocol("cifar10", root=str(tiny_cifar))
    assert (len(c10.train), len(c10.id_test)) == (60, 30) and set(c10.ood_test) == {"svhn", "cifar100"}
    assert c10.kind == "multi-class" and c10.format == CIFAR_FORMATS["cifar10"] and c10.train.images.shape[1:] == (32, 32, 3)
    assert c10.train.origin == "cifar10/train" and all(s.origin.endswith("/test") for s in (c10.id_test, *c10.ood_test.values()))
    near = make_protocol("cifar100-near", root=str(tiny_cifar))
    assert near.num_classes == 100 and near.kind == "near" and list(near.ood_test) == ["cifar10"]
    one = make_protocol("cifar10-one-class:3", root=str(tiny_cifar))
    assert set(one.train.labels) == {3} and len(one.train) == 6 and len(one.ood_test["other classes"]) == 27
    assert expand("cifar10-one-class:all")[-1] == "cifar10-one-class:9"
    assert len(make_protocol("cifar10", root=str(tiny_cifar), n_ood=10).ood_test["svhn"]) == 10
    with pytest.raises(ValueError, match="valid: svhn, cifar100"):
        make_protocol("cifar10", root=str(tiny_cifar), ood=("mnist",))


def test_missing_cifar_says_how_to_download_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOOD_NO_DOWNLOAD", "1")
    with pytest.raises(DataNotFoundError, match=r"load_cifar\('cifar10', 'train'\).*Downloading is off"):
        make_protocol("cifar10", root=str(tmp_path))


def test_the_format_follows_the_protocol_and_the_profile_can_resize(tiny_cifar: Path) -> None:
    _, p = setup("cifar10", "smoke", root=str(tiny_cifar))
    assert (p.format.size, p.format.channels, p.model.img_size, p.model.in_chans) == (32, 3, 32, 3)
    _, p = setup("cifar10", replace(get_profile("smoke"), img_size=48), root=str(tiny_cifar))
    assert (p.format.size, p.format.mean, p.model.img_size) == (48, CIFAR_FORMATS["cifar10"].mean, 48)
    with pytest.raises(ValueError, match="img_size must be an integer >= 8"):
        replace(get_profile("smoke"), img_size=4)


@pytest.mark.filterwarnings("ignore:Mahalanobis.*rank:RuntimeWarning")  # 60 training images, 128 dims: expected
def test_mood_runs_on_cifar10_from_pretraining_to_scores(tiny_cifar: Path, tmp_path: Path) -> None:
    from mood.core.cache import Cache
    from mood.core.models import ModelConfig
    from mood.experiments.pipeline import id_accuracy, run_mood

    prof = get_profile("smoke")
    prof.model = ModelConfig("vit_tiny_p4", drop_path=0.0)  # 4 px patches: an 8x8 grid at 32 px
    run = run_mood("cifar10", prof, Cache(tmp_path / "art"), root=str(tiny_cifar))
    assert set(run.table.index) >= {"svhn", "cifar100"} and run.table["AUROC"].between(0, 100).all()
    assert run.finetuned.backbone.grid == (8, 8) and run.features.id.features.shape[0] == 30
    assert 0 <= id_accuracy(run.features) <= 100
    np.testing.assert_array_equal(run.features.id.labels.numpy(), make_protocol("cifar10", root=str(tiny_cifar)).id_test.labels)
