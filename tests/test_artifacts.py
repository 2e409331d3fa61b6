"""The one home of stored artifacts: atomic writes, the cache's keys, trained stages on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mood.book.records import training_note
from mood.core.cache import LEDGER_ENV, Cache, fingerprint, is_finished, load_trained, read_ledger, save_trained
from mood.core.data import from_array
from mood.core.images import ImageFormat, concat, hash_ids
from mood.core.io import atomic_torch_save, atomic_write_text
from mood.core.models import create_backbone


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_atomic_torch_save_leaves_nothing_half_written(tmp_path: Path) -> None:
    target = atomic_torch_save({"a": torch.ones(2)}, tmp_path / "x.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"b": Unpicklable()}, target)
    assert torch.load(target)["a"].sum() == 2 and [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_one_hash_of_image_ids_keys_sets_and_corpora() -> None:
    a = from_array("a", np.zeros((6, 8, 8), np.uint8))
    b = a.subset([0, 1, 2])
    assert fingerprint(a)["ids"] == hash_ids(a.ids) != fingerprint(b)["ids"]
    corpus = concat([a, b], ImageFormat(size=8), name="c")
    assert hash_ids(a.ids) in corpus.origin and hash_ids(b.ids) in corpus.origin  # the same hash in both places


def test_cache_key_is_the_spec_and_trained_round_trips(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    d1, d2 = cache.dir("s", {"x": 1}), cache.dir("s", {"x": 2})
    assert d1 != d2 and cache.dir("s", {"x": 1}) == d1 and (d1 / "spec.json").exists()
    bb = create_backbone("vit_tiny_p4", drop_path=0.0)
    done = save_trained(bb, d1, [{"epoch": 1, "seconds": 2.5}], 3.0)
    assert done.run_id == f"s/{d1.name}" and done.train_seconds == 2.5 and is_finished(d1)
    other = load_trained(create_backbone("vit_tiny_p4", drop_path=0.0), d1)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(other.backbone(x), bb.eval()(x))
    assert other.seconds == 0.0 and other.history == done.history


def test_the_ledger_tells_stages_trained_from_stages_loaded_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    cache, ledger = Cache(tmp_path / "art"), tmp_path / "chapter.jsonl"
    bb = lambda: create_backbone("vit_tiny_p4", drop_path=0.0)  # noqa: E731
    old = cache.dir("s", {"x": 1})
    save_trained(bb(), old, [{"seconds": 40.0}, {"seconds": 60.0}], 100.0)  # before the chapter: no ledger
    assert not ledger.exists()
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    new = cache.dir("s", {"x": 2})
    save_trained(bb(), new, [{"seconds": 7.0}], 7.5)  # trained in the chapter ...
    load_trained(bb(), new)  # ... and loaded again there: still one trained stage
    load_trained(bb(), old)
    load_trained(bb(), old)  # loaded twice, counted once, at its logged training time
    assert read_ledger(ledger) == {"trained runs": 1, "trained s": 7.5, "trained images": 0, "cached runs": 1, "cached s": 100.0}
    # over two chapters: a stage one trains and the other loads counts as trained
    other = tmp_path / "next.jsonl"
    monkeypatch.setenv(LEDGER_ENV, str(other))
    load_trained(bb(), new)
    assert read_ledger(other)["cached runs"] == 1
    assert read_ledger(ledger, other) == read_ledger(ledger)
    note = training_note(read_ledger(ledger))
    assert "1 training stage(s) ran here (8 s)" in note and "100 s" in note
    assert training_note(read_ledger(tmp_path / "none.jsonl")) == ""
