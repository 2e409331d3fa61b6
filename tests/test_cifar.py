"""MOOD's own benchmarks on CIFAR: protocols, formats and the whole pipeline, offline on tiny files
written in torchvision's formats (``tiny_cifar``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mood.core.data import CIFAR_FORMATS, DataNotFoundError
from mood.core.protocols import expand, make_protocol
from mood.experiments.profiles import get_profile
from mood.experiments.resolve import resolve


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
    p = resolve("smoke", "cifar10", root=str(tiny_cifar)).profile
    assert (p.format.size, p.format.channels, p.model.img_size, p.model.in_chans) == (32, 3, 32, 3)
    p = resolve("smoke", "cifar10", img_size=48, root=str(tiny_cifar)).profile
    assert (p.format.size, p.format.mean, p.model.img_size) == (48, CIFAR_FORMATS["cifar10"].mean, 48)
    with pytest.raises(ValueError, match="img_size must be an integer >= 8"):
        replace(get_profile("smoke"), img_size=4)


@pytest.mark.filterwarnings("ignore:Mahalanobis.*rank:RuntimeWarning")  # 60 training images, 128 dims: expected
def test_mood_on_cifar10_scores_the_cifar_test_images_by_mahalanobis_and_tables_their_auroc(tiny_cifar: Path,
                                                                                          tmp_path: Path) -> None:
    """From pretraining to scores on CIFAR-10: the ID features are the model's on the CIFAR test images in
    CIFAR's normalisation (rebuilt here in numpy), the scores are scikit-learn's Mahalanobis distances
    of those features, and the table holds their AUROC; SVHN, uniform noise in ``tiny_cifar``, is far."""
    import torch
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.metrics import roc_auc_score

    from mood.core.cache import Cache
    from mood.core.metrics import per_set
    from mood.core.models import ModelConfig
    from mood.experiments.pipeline import id_accuracy, run_mood

    prof = replace(get_profile("smoke"), model=ModelConfig("vit_tiny_p4", drop_path=0.0))  # 4 px patches: an 8x8 grid at 32 px
    run = run_mood("cifar10", prof, Cache(tmp_path / "art"), root=str(tiny_cifar))
    assert run.finetuned.backbone.grid == (8, 8) and run.features.id.features.shape[0] == 30
    test = make_protocol("cifar10", root=str(tiny_cifar)).id_test
    np.testing.assert_array_equal(run.features.id.labels.numpy(), test.labels)
    fmt = CIFAR_FORMATS["cifar10"]  # [N, 32, 32, 3] uint8 -> [N, 3, 32, 32], minus CIFAR's mean, over its std
    x = ((test.images / 255.0 - np.array(fmt.mean)) / np.array(fmt.std)).transpose(0, 3, 1, 2)
    with torch.no_grad():
        logits = run.finetuned.backbone.eval()(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(run.features.id.logits.numpy(), logits.numpy(), atol=1e-4)
    assert id_accuracy(run.features) == pytest.approx(100 * np.mean(logits.numpy().argmax(1) == test.labels))
    feats = run.features  # 60 training images in 128 dims: the pseudo-inverse covariance, as scikit-learn's
    gauss = EmpiricalCovariance().fit(feats.fit.features.double().numpy())
    id_s, ood_s = run.scores
    np.testing.assert_allclose(id_s.numpy(), gauss.mahalanobis(feats.id.features.double().numpy()), rtol=1e-5)
    sets = per_set(run.table)
    assert set(sets.index) == {"svhn", "cifar100"}
    for k in sets.index:
        np.testing.assert_allclose(ood_s[k].numpy(), gauss.mahalanobis(feats.ood[k].features.double().numpy()), rtol=1e-5)
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s[k]))]
        assert sets.loc[k, "AUROC"] == pytest.approx(100 * roc_auc_score(y, np.r_[id_s.numpy(), ood_s[k].numpy()]))
    np.testing.assert_allclose(run.table.loc["mean"], sets.mean())
    assert sets.loc["svhn", "AUROC"] > 75  # uniform noise over 0..255 against dim images: far, whatever the training
