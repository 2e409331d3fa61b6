"""Changes to a dataclass checked against its fields and their type annotations before any work:
a wrong field or a value of the wrong type is a one-line ``ValueError`` naming it and what is valid."""

from __future__ import annotations

import types
import typing
from dataclasses import fields, replace
from typing import Any, Mapping


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type annotation ``hint`` (ints pass for floats, bools for neither)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple)
    return isinstance(value, origin or hint)


def check_changes(cls: type, changes: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``changes`` if every key is a field of dataclass ``cls`` and every value fits the field's
    type; otherwise a ``ValueError`` naming the wrong key or value and the valid fields."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    label = f"{where}: " if where else ""
    bad = sorted(set(changes) - set(valid))
    if bad:
        raise ValueError(f"{label}{cls.__name__} has no field(s) {bad}; valid: {', '.join(valid)}")
    for key, value in changes.items():
        if not _matches(value, hints[key]):
            hint = hints[key]
            name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(f"{label}{cls.__name__}.{key} must be {name}, got {value!r} ({type(value).__name__})")
    return dict(changes)


def override(cfg, **changes):
    """``dataclasses.replace`` with every change checked (:func:`check_changes`) first."""
    return replace(cfg, **check_changes(type(cfg), changes))


__all__ = ["check_changes", "override"]
