"""The zoo: an entry trained at smoke size, written, listed, verified, retrained bit for bit and loaded
(by mood and by plain timm); a changed file, a card naming another model and an unknown name are
refused in one line; every shipped entry matches its card and its registry line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from mood.core import zoo as store
from mood.core.cache import Cache
from mood.core.models import Backbone, ModelConfig
from mood.experiments import zoo

SMALL = "near-beit-e4-s0"  # a branch of its family's longest run (near-beit-e64-s0)


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory: pytest.TempPathFactory, require_fmnist) -> Path:
    """The smallest near-split BEiT entry trained at smoke size (branched off its family's trunk)."""
    root = tmp_path_factory.mktemp("zoo")
    zoo.train([SMALL], "smoke", root, Cache(tmp_path_factory.mktemp("artifacts")))
    return root


def test_the_registry_holds_what_the_science_needs() -> None:
    near = [s for s in zoo.ZOO if s.protocol == "near-split" and s.mask_kind is None]
    for pretext in ("beit", "classification"):
        doses = sorted({s.dose for s in near if s.pretext == pretext})
        assert len(doses) >= 3 and doses[-1] >= 64 and doses[-1] / doses[0] >= 16
        for d in doses:  # every dose has three pretraining seeds
            assert {s.seed for s in near if s.pretext == pretext and s.dose == d} >= {0, 1, 2}
    assert any(s.mask_kind == "random" and s.dose == max(zoo.NEAR_DOSES) for s in zoo.ZOO)
    assert {s.protocol for s in zoo.ZOO if s.protocol.startswith("one-class:")} == {f"one-class:{k}" for k in range(10)}
    assert any(s.protocol == "multi-class" and s.dose == 64 for s in zoo.ZOO)
    assert len(zoo.ZOO_NAMES) == len(zoo.ZOO)  # one name, one entry


def test_pretexts_get_equal_flops_and_doses_branch_off_the_longest_run() -> None:
    beit, cls = zoo.plan(zoo.get_spec("near-beit-e16-s0"), "smoke"), zoo.plan(zoo.get_spec("near-cls-e16-s0"), "smoke")
    assert cls.flops_per_step < beit.flops_per_step  # classification's step is cheaper: it gets more steps
    assert cls.steps > beit.steps
    assert abs(cls.steps * cls.flops_per_step / (beit.steps * beit.flops_per_step) - 1) < 1 / beit.steps
    top = zoo.plan(zoo.get_spec("near-beit-e64-s0"), "smoke")
    assert top.branch_at is None and 0 < beit.branch_at < beit.steps
    assert beit.cfg.schedule == "wsd" and beit.cfg.to_dict()["steps"] == beit.steps


def test_an_entry_is_written_listed_and_verified(smoke_zoo: Path) -> None:
    card = store.read_card(SMALL, smoke_zoo)
    assert card["registry"] == asdict(zoo.get_spec(SMALL)) and card["profile"] == "smoke"
    assert card["schedule"]["branched_at_step"] == zoo.plan(zoo.get_spec(SMALL), "smoke").branch_at
    assert card["dose"]["steps"] == sum(1 for _ in range(card["dose"]["steps"]))  # an int
    assert len(card["history"]) == card["pretrain"]["epochs"] and card["img_per_s"] > 0
    assert card["data"]["ids"] and card["commit"] and card["device"] and card["storage"] == "float16"
    table = zoo.table(smoke_zoo)
    assert list(table["entry"]) == [SMALL] and table["steps"].iloc[0] == card["dose"]["steps"]
    assert zoo.verify(smoke_zoo)["ok"].all()
    assert not list(smoke_zoo.glob(".*"))  # nothing half-written left beside it


def test_a_branch_retrains_bit_for_bit_alone(smoke_zoo: Path) -> None:
    r = zoo.retrain(SMALL, smoke_zoo)
    assert r["bit_for_bit"] and r["max_abs_weight_diff"] == 0.0


def test_an_entry_loads_into_mood_and_keys_the_cache_by_its_hash(smoke_zoo: Path, monkeypatch) -> None:
    monkeypatch.setenv(store.ZOO_ENV, str(smoke_zoo))
    cfg = ModelConfig("vit_tiny_p7", pretrained=f"zoo:{SMALL}")
    sha = store.read_card(SMALL, smoke_zoo)["files"][store.BACKBONE]["sha256"]
    assert cfg.to_dict()["pretrained"] == f"zoo:{SMALL}@{sha[:16]}"
    net = Backbone(cfg).net
    stored = store.load_state(SMALL, root=smoke_zoo)
    for k, v in stored.items():
        assert torch.equal(net.state_dict()[k], v.float()), k  # fine-tuning starts from the stored values
    assert set(net.state_dict()) - set(stored) == {"head.weight", "head.bias"}


def test_an_entry_loads_in_plain_timm(smoke_zoo: Path) -> None:
    import timm

    card = store.read_card(SMALL, smoke_zoo)
    path = smoke_zoo / SMALL / store.BACKBONE
    net = timm.create_model(card["timm"]["model_name"], pretrained=True, num_classes=0,
                            pretrained_cfg_overlay={"file": str(path)}, **card["timm"]["kwargs"])
    stored = store.load_state(SMALL, root=smoke_zoo)
    assert set(net.state_dict()) == set(stored)
    assert all(torch.equal(net.state_dict()[k], v.float()) for k, v in stored.items())


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_changed_file_a_wrong_model_and_an_unknown_name_are_refused(smoke_zoo: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    import shutil

    root = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, root)
    monkeypatch.setenv(store.ZOO_ENV, str(root))
    with pytest.raises(ValueError) as err:
        ModelConfig("vit_tiny_p4", pretrained=f"zoo:{SMALL}")
    assert SMALL in _one_line(err) and "vit_tiny_p7" in str(err.value)
    with pytest.raises(ValueError) as err:
        ModelConfig("vit_tiny_p7", pretrained="zoo:no-such-entry")
    assert "no-such-entry" in _one_line(err) and SMALL in str(err.value)
    card_path = root / SMALL / store.CARD
    card = json.loads(card_path.read_text())
    card["model"]["name"] = "vit_small_p4"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError) as err:
        ModelConfig("vit_tiny_p7", pretrained=f"zoo:{SMALL}")
    assert "vit_small_p4" in _one_line(err)
    weights = root / SMALL / store.BACKBONE
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as err:
        ModelConfig("vit_tiny_p7", pretrained=f"zoo:{SMALL}")
    assert "sha256" in _one_line(err) and f"zoo train {SMALL}" in str(err.value)
    assert not zoo.verify(root)["ok"].any()


def test_unknown_names_are_refused_before_any_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a registered zoo entry"):
        zoo.train(["near-beit-e5-s0"], "smoke", tmp_path)
    assert not list(tmp_path.iterdir())


def test_every_shipped_entry_matches_its_card_and_its_registry_line() -> None:
    shipped = store.shipped()
    table = zoo.verify()
    assert list(table["entry"]) == shipped and table["ok"].all(), table[~table["ok"]].to_string()
    for name in shipped:
        card = store.read_card(name)
        assert card["profile"] == "cpu" and card["registry"] == asdict(zoo.get_spec(name))
        assert not card["code_dirty"], f"{name} was trained by uncommitted code"
    assert store.size_bytes() <= 64 * 2**20
