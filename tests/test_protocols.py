"""Protocols on the real Fashion-MNIST: splits are what they claim, and never share images."""

from __future__ import annotations

import numpy as np
import pytest

from mood.core import protocols
from mood.core.data import FMNIST_CLASSES

pytestmark = pytest.mark.usefixtures("require_fmnist")


def _ids(s) -> set[tuple[str, int]]:
    return {(s.origin, int(i)) for i in s.ids}


def _no_test_image_in_training(p: protocols.Protocol) -> None:
    trained = _ids(p.train).union(*(_ids(s) for s in p.ood_train.values()))
    tested = _ids(p.id_test).union(*(_ids(s) for s in p.ood_test.values()))
    assert not trained & tested
    assert p.train.origin == "fashion-mnist/train" and p.id_test.origin == "fashion-mnist/test"


@pytest.mark.parametrize("k", [0, 7])
def test_one_class(k: int) -> None:
    p = protocols.make_protocol(f"one-class:{k}")
    assert (p.train.labels == k).all() and len(p.train) == 6000
    assert (p.id_test.labels == k).all() and len(p.id_test) == 1000
    other = p.ood_test["other classes"]
    assert len(other) == 9000 and not (other.labels == k).any()
    assert not _ids(p.id_test) & _ids(other)
    _no_test_image_in_training(p)


def test_multi_class_and_near_split() -> None:
    p = protocols.make_protocol("multi-class", ood=("mnist", "gaussian"), n_ood=100)
    assert p.num_classes == 10 and set(p.ood_test) == {"mnist", "gaussian"}
    _no_test_image_in_training(p)
    n = protocols.make_protocol("near-split")
    assert n.num_classes == 6 and set(np.unique(n.train.labels)) == set(range(6))
    assert set(n.classes) == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Sneaker", "Bag"}
    assert list(n.ood_test) == ["Coat", "Sandal", "Shirt", "Ankle boot"]
    for name, s in n.ood_test.items():
        assert len(s) == 1000 and (s.labels == FMNIST_CLASSES.index(name)).all()
    for kept, held in protocols.NEAR_PAIRS.values():  # each look-alike pair straddles the split
        assert FMNIST_CLASSES[kept] in n.classes and FMNIST_CLASSES[held] in n.ood_test
    _no_test_image_in_training(n)


@pytest.mark.parametrize("pair", list(protocols.NEAR_PAIRS))
def test_near_pairs_keep_the_lookalike(pair: str) -> None:
    kept, held = protocols.NEAR_PAIRS[pair]
    p = protocols.make_protocol(f"near-pair:{pair}")
    assert FMNIST_CLASSES[held] not in p.classes and FMNIST_CLASSES[kept] in p.classes
    (ood,) = p.ood_test.values()
    assert (ood.labels == held).all() and len(ood) == 1000
    _no_test_image_in_training(p)


def test_few_shot_exposure_is_disjoint_from_test() -> None:
    p = protocols.make_protocol("few-shot:5", ood=("mnist", "textures", "photos", "digits"), n_ood=200)
    assert set(p.ood_train) == {"mnist", "textures", "photos"}  # digits: never exposed
    assert set(p.ood_test) == {"mnist", "textures", "photos", "digits"}
    for name in ("mnist", "textures", "photos"):
        assert len(p.ood_train[name]) == 5
        assert p.ood_train[name].origin == p.ood_test[name].origin
        assert not _ids(p.ood_train[name]) & _ids(p.ood_test[name])
    for name in ("textures", "photos"):  # crops of one picture never on both sides
        assert not set(p.ood_train[name].groups) & set(p.ood_test[name].groups)
    _no_test_image_in_training(p)
    with pytest.raises(ValueError, match="some, not all"):
        protocols.make_protocol("few-shot:5", ood=("digits",), n_ood=50)


@pytest.mark.parametrize("bad", ["two-class", "one-class:12", "one-class:x", "few-shot", "near-pair:cat-dog"])
def test_unknown_protocol_lists_valid(bad: str) -> None:
    with pytest.raises(ValueError, match="valid"):
        protocols.make_protocol(bad)


def test_kind_is_a_property_of_the_protocol_and_names_parse_without_data() -> None:
    kinds = {name: protocols.parse_protocol(name)[0].kind for name in
             ("one-class:3", "multi-class", "near-split", "near-pair:tshirt-shirt", "few-shot:2")}
    assert kinds == {"one-class:3": "one-class", "multi-class": "multi-class", "near-split": "near",
                     "near-pair:tshirt-shirt": "near", "few-shot:2": "few-shot"}
    assert protocols.expand("one-class:all") == [f"one-class:{k}" for k in range(10)]
    for bad in ("one-class", "multi-class:2", "few-shot:0", "near-pair:x", "one-class:"):
        with pytest.raises(ValueError, match="valid: one-class:K, multi-class"):
            protocols.expand(bad)


@pytest.mark.usefixtures("require_fmnist")
def test_builders_set_the_kind() -> None:
    assert protocols.make_protocol("near-pair:sneaker-boot").kind == "near"
    assert protocols.make_protocol("one-class:1").ood_is_fmnist
    assert not protocols.make_protocol("multi-class", ood=("gaussian",), n_ood=10).ood_is_fmnist
