"""The zoo's store: pretrained backbones shipped in ``zoo/``, each with a card saying what it is.

An entry is a folder ``zoo/<name>/`` (``MOOD_ZOO`` names another root) holding

- ``backbone.safetensors``: the backbone's weights under timm's own names (no ``net.`` prefix, no
  classifier), stored as fp16 (the card says so); fine-tuning starts from exactly these values;
- ``pretext.safetensors``: what else the pretext trained or needs (BEiT's token head and its k-means
  tokenizer codebook), for chapters that show the pretext at work;
- ``card.json``: the entry's card, like timm's ``pretrained_cfg`` and a Hugging Face model card: the
  fully resolved training configuration, the data (with the hash of its image ids), the dose (steps,
  images seen, FLOPs), the command, commit, device, seconds and img/s, the per-epoch history, and the
  sha256 of every file.

``pretrained="zoo:NAME"`` in a :class:`mood.core.models.ModelConfig` loads an entry after
:func:`check_entry` has checked its files against the card and its model against the config; the
entry's hash is part of every downstream cache key (:func:`describe`). Training the entries lives in
:mod:`mood.experiments.zoo`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

ZOO_ENV = "MOOD_ZOO"
PREFIX = "zoo:"
CARD, BACKBONE, PRETEXT = "card.json", "backbone.safetensors", "pretext.safetensors"
STORAGE_DTYPE = torch.float16  # the backbone's stored precision (the card's "storage")


def zoo_root(root: str | os.PathLike | None = None) -> Path:
    """The zoo folder: ``root``, else ``MOOD_ZOO``, else ``zoo/`` beside the ``mood`` package."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ZOO_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "zoo"


def is_zoo(pretrained: str | None) -> bool:
    """Whether ``pretrained`` names a zoo entry (``"zoo:NAME"``)."""
    return isinstance(pretrained, str) and pretrained.startswith(PREFIX)


def entry_name(pretrained: str) -> str:
    """``"zoo:NAME"`` -> ``"NAME"``."""
    return pretrained[len(PREFIX):]


def shipped(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the entries present in the zoo folder (those with a card), sorted."""
    r = zoo_root(root)
    return sorted(p.parent.name for p in r.glob(f"*/{CARD}")) if r.is_dir() else []


def read_card(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The card of entry ``name``; a one-line ``ValueError`` naming the shipped entries when absent."""
    path = zoo_root(root) / name / CARD
    if not path.is_file():
        have = shipped(root)
        raise ValueError(f"unknown zoo entry {name!r} in {zoo_root(root)}; shipped: {', '.join(have) or 'none'} "
                         f"(python -m mood zoo list; python -m mood zoo train {name} trains a registered one)")
    return json.loads(path.read_text())


def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, computed once per file version (size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_problems(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """What is wrong with entry ``name``'s files against its card: ``[]`` when every file's sha256 matches."""
    card = read_card(name, root)
    folder = zoo_root(root) / name
    out = []
    for fname, meta in card["files"].items():
        path = folder / fname
        if not path.is_file():
            out.append(f"{fname} is missing")
        elif sha256(path) != meta["sha256"]:
            out.append(f"{fname} does not match its card's sha256 (changed or corrupted)")
    return out


def check_entry(pretrained: str, model: str | None = None, img_size: int | None = None,
                in_chans: int | None = None, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The card of ``"zoo:NAME"`` once its files match the card and its model is the one asked for
    (name, image size, channels, where given); otherwise a one-line ``ValueError`` naming the entry and
    the fix, before anything is built or trained."""
    name = entry_name(pretrained)
    card = read_card(name, root)
    bad = file_problems(name, root)
    if bad:
        raise ValueError(f"zoo entry {name!r}: {'; '.join(bad)}: restore it (git checkout -- zoo/{name}) or train it "
                         f"again (python -m mood zoo train {name} --force)")
    m = card["model"]
    for what, asked in (("name", model), ("img_size", img_size), ("in_chans", in_chans)):
        if asked is not None and m[what] != asked:
            raise ValueError(f"zoo entry {name!r} holds a {m['name']} for {m['img_size']} px, {m['in_chans']} channel(s); "
                             f"the model asked for has {what}={asked!r}: use that entry's model (model name "
                             f"{m['name']!r}) or another entry (python -m mood zoo list)")
    return card


def backbone_path(pretrained: str, root: str | os.PathLike | None = None) -> Path:
    """The weights file of ``"zoo:NAME"``."""
    return zoo_root(root) / entry_name(pretrained) / BACKBONE


def describe(pretrained: str, root: str | os.PathLike | None = None) -> str:
    """What identifies ``"zoo:NAME"`` in a cache key: the name and the weights' sha256 (16 hex digits)."""
    return f"{pretrained}@{sha256(backbone_path(pretrained, root))[:16]}"


def load_state(name: str, fname: str = BACKBONE, root: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The tensors of one of entry ``name``'s files, as stored."""
    from safetensors.torch import load_file

    return load_file(str(zoo_root(root) / name / fname))


def write_entry(name: str, backbone: dict[str, torch.Tensor], pretext: dict[str, torch.Tensor], card: dict[str, Any],
                root: str | os.PathLike | None = None) -> Path:
    """Writes entry ``name`` whole or not at all: the files go to a temporary folder beside it, the card
    gets their sha256, and one rename puts the folder in place (an older entry of that name is
    replaced). ``backbone`` is stored as fp16, ``pretext`` as given."""
    from safetensors.torch import save_file

    r = zoo_root(root)
    r.mkdir(parents=True, exist_ok=True)
    tmp = r / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().to(STORAGE_DTYPE).contiguous().cpu() for k, v in backbone.items()}, str(tmp / BACKBONE),
              metadata={"entry": name, "format": "pt"})
    save_file({k: v.detach().contiguous().cpu() for k, v in pretext.items()}, str(tmp / PRETEXT),
              metadata={"entry": name, "format": "pt"})
    files = {f: {"sha256": sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in (BACKBONE, PRETEXT)}
    card = {**card, "name": name, "storage": str(STORAGE_DTYPE).removeprefix("torch."), "files": files}
    (tmp / CARD).write_text(json.dumps(card, indent=1, sort_keys=False, default=str) + "\n")
    final = r / name
    if final.exists():
        old = r / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final


def size_bytes(root: str | os.PathLike | None = None) -> int:
    """Bytes of every shipped entry's files."""
    r = zoo_root(root)
    return sum(p.stat().st_size for name in shipped(root) for p in (r / name).iterdir() if p.is_file())
