"""A file that is not a checkpoint, given as ``--pretrained``, fails in one line before anything is cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mood.core.weights import check_pretrained


def _state_dict() -> dict[str, torch.Tensor]:
    return {"blocks.0.weight": torch.randn(64, 64), "blocks.0.bias": torch.zeros(64)}


def _junk(path: Path) -> Path:
    path.write_text("junk\n")
    return path


def _truncated(path: Path) -> Path:
    torch.save(_state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _npz(path: Path) -> Path:
    path = path.with_suffix(".npz")
    np.savez(path, a=np.zeros(3))
    return path


def _json(path: Path) -> Path:
    path = path.with_suffix(".json")
    path.write_text(json.dumps({"a": 1}))
    return path


def _bad_safetensors(path: Path) -> Path:
    path = path.with_suffix(".safetensors")
    path.write_bytes((200).to_bytes(8, "little") + b'{"a": ')  # a header length, then half a header
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


BAD = {"junk": _junk, "truncated": _truncated, "directory": _directory, "npz": _npz, "json": _json,
       "safetensors": _bad_safetensors, "empty": _empty}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_checkpoint_is_one_line_and_exit_2_before_any_folder(tmp_path, kind) -> None:
    path = BAD[kind](tmp_path / "x.pt")
    env = {k: v for k, v in os.environ.items() if k != "MOOD_ARTIFACTS"}  # the default: ./artifacts under cwd
    proc = subprocess.run([sys.executable, "-m", "mood", "run", "--pretrained", str(path), "--profile", "smoke"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and path.name in lines[0] and "expected a file written by torch.save" in lines[0], lines
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("kind", list(BAD))
def test_check_pretrained_names_the_file(tmp_path, kind) -> None:
    path = BAD[kind](tmp_path / "x.pt")
    with pytest.raises(ValueError, match=f"{path.name}.*expected a file written by torch.save"):
        check_pretrained(str(path), "vit_tiny_p4", True)


def test_valid_checkpoints_are_accepted(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.save({"model": _state_dict(), "epoch": 3}, tmp_path / "zip.pt")
    torch.save(_state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(_state_dict(), tmp_path / "w.safetensors")
    for name in ("zip.pt", "legacy.pt", "w.safetensors"):
        check_pretrained(str(tmp_path / name), "vit_tiny_p4", True)
    torch.save([1, 2], tmp_path / "list.pt")  # a torch file, but no state dict
    with pytest.raises(ValueError, match="list.pt: expected a state dict, got list"):
        check_pretrained(str(tmp_path / "list.pt"), "vit_tiny_p4", True)
