"""Starting from pretrained weights: timm's published checkpoints, or a checkpoint file.

MOOD starts from a BEiT pretrained on ImageNet-22k; ``ModelConfig(pretrained=...)`` is how a
researcher does the same here:

- ``pretrained="timm"``: timm's published weights for a timm model name (``timm.create_model(...,
  pretrained=True)``: fetched from the Hugging Face hub on first use and cached there; timm adapts
  the input channels and the position embedding to ``in_chans`` and ``img_size`` itself);
- ``pretrained="zoo:NAME"``: an entry of the zoo (:mod:`mood.core.zoo`), checked against its card
  (file hashes, model) before anything is built;
- ``pretrained="<path>"``: a checkpoint file (a state dict, or a dict holding one under ``model``,
  ``state_dict``, ``backbone`` or ``module``, as BEiT's, MAE's, timm's and ``mood``'s own files do).
  :func:`load_checkpoint` strips ``module.``/``net.`` prefixes, resamples the position embedding to
  the model's patch grid and the patch embedding to its patch size and channels, and drops a head
  whose class count differs (a new head is trained anyway); any other mismatch is an error naming
  the keys.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from mood.core import zoo

CONTAINER_KEYS = ("model", "state_dict", "backbone", "module")
PREFIXES = ("module.", "net.")
EXPECTED = ("expected a file written by torch.save holding a state dict (or a .safetensors file), "
            "or 'timm' for timm's published weights")


def describe(pretrained: str) -> str:
    """What identifies ``pretrained`` in a cache key: ``"timm"`` as is; a zoo entry by its name and the
    sha256 of its weights; a file by its content hash."""
    if pretrained == "timm":
        return pretrained
    if zoo.is_zoo(pretrained):
        return zoo.describe(pretrained)
    st = Path(pretrained).stat()
    return f"{Path(pretrained).name}@{_file_digest(str(Path(pretrained).resolve()), st.st_size, st.st_mtime_ns)}"


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """A checkpoint's content hash, computed once per file version (every stage's cache key asks for it;
    a BEiT-L file is 1.2 GB)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def check_pretrained(pretrained: str | None, name: str, is_preset: bool, img_size: int | None = None,
                     in_chans: int | None = None) -> None:
    """Raises a one-line ``ValueError`` for a source that cannot work, before anything is built or cached:
    a checkpoint file is read here (once per file version), so a file of another format, a truncated
    one or a directory is named at configuration time; a zoo entry's files are checked against its
    card and its model against ``name``, ``img_size`` and ``in_chans``."""
    if pretrained is None:
        return
    if zoo.is_zoo(pretrained):
        zoo.check_entry(pretrained, name, img_size, in_chans)
        return
    if pretrained == "timm":
        if is_preset:
            raise ValueError(f"model {name!r} is a mood preset, which timm publishes no weights for; name a timm "
                             f"model (e.g. beit_base_patch16_224.in22k_ft_in22k) or pass a checkpoint file")
        return
    path = Path(pretrained)
    if path.is_dir():
        raise ValueError(f"pretrained={pretrained!r} is a directory; {EXPECTED}")
    if not path.is_file():
        raise ValueError(f"pretrained={pretrained!r} is neither 'timm' nor an existing checkpoint file")
    st = path.stat()
    _check_file(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _check_file(path: str, size: int, mtime_ns: int) -> None:
    """Reads checkpoint ``path`` once per file version (memory-mapped where torch can), so that a file
    of another format fails at configuration time rather than after a stage's cache folder is made."""
    if size == 0:
        raise ValueError(f"pretrained={path!r} is an empty file; {EXPECTED}")
    read_state_dict(path, mmap=zipfile.is_zipfile(path))


def timm_pretrained(name: str, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=True, **kwargs)``, with a clear error when the weights
    cannot be fetched (offline, and not in the hub's cache)."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # the hub raises many kinds (offline, not found, no file in the cache)
        raise RuntimeError(
            f"timm's pretrained weights for {name!r} could not be loaded ({type(err).__name__}: {err}). They are "
            f"fetched from the Hugging Face hub on first use: run once online (they are then cached under "
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}), e.g. python -c \"import timm; "
            f"timm.create_model('{name}', pretrained=True)\"; or pass a checkpoint file as pretrained") from err


def read_state_dict(path: str | os.PathLike, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint ``path``, unwrapped from their container and without the
    ``module.``/``net.`` prefixes of DDP and ``mood`` backbones.

    Raises:
        ValueError: one line naming ``path``, for a file torch cannot load (another format, truncated)
            or one holding no state dict.
    """
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # not a pickle torch wrote: text, JSON, ...
            raise ValueError(f"{path}: not a torch checkpoint ({_reason(err)}); {EXPECTED}") from err
        raise ValueError(f"{path} holds more than tensors (e.g. the argparse Namespace the official BEiT and MAE "
                         f"checkpoints carry), which is loaded only from a trusted file: re-save its weights, "
                         f"torch.save(torch.load(path, weights_only=False)['model'], 'weights.pt')") from err
    except Exception as err:  # the unpickler, zip reader and safetensors raise many kinds (KeyError, EOFError, ...)
        raise ValueError(f"{path}: not a torch checkpoint ({_reason(err)}); {EXPECTED}") from err
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in CONTAINER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{path}: no state dict found (looked under {', '.join(CONTAINER_KEYS)})")
        state = inner
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        for p in PREFIXES:
            k = k.removeprefix(p)
        if isinstance(v, torch.Tensor):
            out[k] = v
    return out


def _reason(err: Exception) -> str:
    """``err`` in one short line: its type and the first line of its message."""
    lines = [ln.strip() for ln in str(err).strip().splitlines()]
    lines = [ln for ln in lines if ln.startswith("Unsupported")] or lines  # the weights-only unpickler's gist
    return f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__


def _adapt(key: str, value: torch.Tensor, target: torch.Tensor, net: nn.Module) -> torch.Tensor | None:
    """``value`` reshaped for ``target`` where a known resampling applies, else None."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed
    from timm.models import adapt_input_conv

    if key == "pos_embed" and value.ndim == 3 and hasattr(net, "patch_embed"):
        prefix = 0 if getattr(net, "no_embed_class", False) else getattr(net, "num_prefix_tokens", 1)
        return resample_abs_pos_embed(value, new_size=list(net.patch_embed.grid_size), num_prefix_tokens=prefix)
    if value.ndim == 4 and target.ndim == 4:  # a convolution's weight: channels, then kernel size
        if value.shape[1] != target.shape[1]:
            value = adapt_input_conv(target.shape[1], value)
        if value.shape[-2:] != target.shape[-2:]:
            value = resample_patch_embed(value, list(target.shape[-2:]))
        return value if value.shape == target.shape else None
    return None


def load_checkpoint(net: nn.Module, path: str | os.PathLike) -> list[str]:
    """Loads checkpoint ``path`` into ``net`` (a timm model), adapting what :func:`_adapt` can.

    Returns:
        The keys of ``net`` left at their initialisation: its classifier's, when the checkpoint has
        none or one of another size.
    Raises:
        ValueError: a key that does not fit, or is missing beyond the classifier, named.
    """
    state = read_state_dict(path)
    own = net.state_dict()
    head = {f"{n}.{p}" for n, m in net.named_modules() if m is getattr(net, "get_classifier", lambda: None)()
            for p in ("weight", "bias")}
    fitted, misfit = {}, []
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape != own[k].shape:
            v = None if k in head else _adapt(k, v, own[k], net)
            if v is None:
                if k not in head:
                    misfit.append(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
                continue
        fitted[k] = v.to(own[k].dtype)
    missing = [k for k in own if k not in fitted and k not in head]
    unexpected = [k for k in state if k not in own]
    if misfit or missing:
        raise ValueError(f"{path} does not fit {type(net).__name__}: "
                         + "; ".join(s for s in (f"shapes {misfit[:5]}" if misfit else "",
                                                 f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
                                                 f"unused {unexpected[:5]}" if unexpected else "") if s))
    net.load_state_dict(fitted, strict=False)
    return sorted(k for k in own if k not in fitted)
