"""OOD protocols: what is trained on, what is in-distribution at test time, what is OOD.

A :class:`Protocol` holds ready :class:`~mood.core.images.ImageSet` objects. The four of MOOD:

- ``one-class:K`` — Fashion-MNIST class K is normal; train on its train images; the test images of
  class K are ID, the test images of every other class are the anomalies.
- ``multi-class`` — all ten classes are ID; each OOD set is scored against the whole test set.
- ``near-split`` — a known/unknown split of Fashion-MNIST built around three look-alike pairs:
  T-shirt/top, Trouser, Pullover, Dress, Sneaker and Bag are known; Coat, Sandal, Shirt and Ankle
  boot are unknown, each its own OOD test set. So Coat is scored while its look-alike Pullover is
  in the ID set, Shirt beside T-shirt/top, Ankle boot beside Sneaker (Sandal has no close twin).
  ``near-pair:NAME`` holds out a single class of a pair, the other nine being ID:
  ``tshirt-shirt`` (holds out Shirt), ``pullover-coat`` (Coat), ``sneaker-boot`` (Ankle boot).
- ``few-shot:K`` — multi-class, plus K labelled images per OOD source for outlier exposure, drawn
  from a half of each OOD set that is disjoint from its test half.

Test images never reach training or the fitting of a score: ``train`` comes only from
Fashion-MNIST's train split (or an OOD set's exposure half), ``id_test``/``ood_test`` from the test
split (or the other half). ``tests/test_protocols.py`` proves it with the images' ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from mood.core.data import (
    CIFAR_FORMATS,
    FMNIST_CLASSES,
    OFFLINE_OOD,
    OOD_GROUPS,
    load_cifar,
    load_fashion_mnist,
    load_ood,
    load_svhn,
)
from mood.core.images import ImageFormat, ImageSet, split_disjoint

NEAR_KNOWN: tuple[int, ...] = (0, 1, 2, 3, 7, 8)
NEAR_UNKNOWN: tuple[int, ...] = (4, 5, 6, 9)
NEAR_PAIRS: dict[str, tuple[int, int]] = {
    # name: (class kept in the ID set, its look-alike held out as OOD)
    "tshirt-shirt": (0, 6),
    "pullover-coat": (2, 4),
    "sneaker-boot": (7, 9),
}


@dataclass
class Protocol:
    """Train / test data for one OOD evaluation.

    Attributes:
        name: e.g. ``"one-class:3"``.
        train: ID training images, labels in ``0..num_classes-1``.
        id_test: ID test images, same label space.
        ood_test: OOD test sets by name.
        ood_train: outlier-exposure images by OOD source (few-shot only; empty otherwise).
        num_classes: size of the label space of ``train``.
        classes: class names of that label space.
        ood_train: outlier-exposure images by OOD source (few-shot only).
        kind: the protocol family, one of :data:`KINDS` (``"one-class"``, ``"multi-class"``,
            ``"near"``, ``"few-shot"``); read from ``name`` by the registry when not given.
        format: the input format its images call for (CIFAR's 32 px RGB); None: the profile's
            (Fashion-MNIST's 28 px grey).
    """

    name: str
    train: ImageSet
    id_test: ImageSet
    ood_test: dict[str, ImageSet]
    num_classes: int
    classes: tuple[str, ...]
    ood_train: dict[str, ImageSet] = field(default_factory=dict)
    kind: str = ""
    format: ImageFormat | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = parse_protocol(self.name)[0].kind
        if self.kind not in KINDS:
            raise ValueError(f"protocol {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def ood_groups(self) -> dict[str, str]:
        """Each OOD test set's group for the tables: ``near`` (Fashion-MNIST classes), ``far``
        (MNIST, digits, patches, online sets) or ``noise`` (sanity checks)."""
        if self.ood_is_fmnist:
            return {name: "near" for name in self.ood_test}
        return {name: OOD_GROUPS.get(name, "far") for name in self.ood_test}

    @property
    def ood_is_fmnist(self) -> bool:
        """Whether the OOD test images are classes of the ID data set (one-class, near; "Fashion-MNIST"
        for the book's protocols): then the offline OOD sets (MNIST, patches, ...) are not test data
        and may be used for training."""
        return self.kind in ("one-class", "near")

    def summary(self) -> dict:
        return {"protocol": self.name, "classes": self.num_classes, "train": len(self.train),
                "id_test": len(self.id_test),
                "ood_test": ", ".join(f"{k}:{len(v)}" for k, v in self.ood_test.items()),
                "ood_train": ", ".join(f"{k}:{len(v)}" for k, v in self.ood_train.items()) or "-"}


def _relabel(s: ImageSet, keep: Sequence[int], name: str) -> ImageSet:
    """Images of the ``keep`` classes, labels mapped to ``0..len(keep)-1`` in ``keep`` order."""
    mask = np.isin(s.labels, keep)
    out = s.subset(np.flatnonzero(mask), name)
    lut = np.full(max(10, int(s.labels.max()) + 1), -1, dtype=np.int64)
    lut[list(keep)] = np.arange(len(keep))
    out.labels = lut[out.labels]
    out.classes = tuple(s.classes[k] for k in keep)
    return out


def one_class(normal: int, root: str | None = None) -> Protocol:
    """Class ``normal`` of Fashion-MNIST against the other nine."""
    if not 0 <= normal < 10:
        raise ValueError(f"one-class: normal class {normal} is not a Fashion-MNIST class; valid: 0..9")
    train, test = load_fashion_mnist("train", root), load_fashion_mnist("test", root)
    is_normal = test.labels == normal
    # One label space of 10 classes: the official MOOD code keeps the full head.
    return Protocol(
        name=f"one-class:{normal}",
        train=train.subset(np.flatnonzero(train.labels == normal), f"train[{FMNIST_CLASSES[normal]}]"),
        id_test=test.subset(np.flatnonzero(is_normal), f"test[{FMNIST_CLASSES[normal]}]"),
        ood_test={"other classes": test.subset(np.flatnonzero(~is_normal), "test[other]")}, kind="one-class",
        num_classes=10, classes=FMNIST_CLASSES)


def multi_class(ood: Sequence[str] = OFFLINE_OOD, n_ood: int | None = 2000, seed: int = 0,
                root: str | None = None) -> Protocol:
    """All ten classes are ID; ``ood`` names the OOD sets (``n_ood`` images each at most)."""
    return Protocol(name="multi-class", train=load_fashion_mnist("train", root),
                    id_test=load_fashion_mnist("test", root),
                    ood_test={name: load_ood(name, n_ood, seed) for name in ood},
                    num_classes=10, classes=FMNIST_CLASSES, kind="multi-class")


def near_split(known: Sequence[int] = NEAR_KNOWN, root: str | None = None) -> Protocol:
    """Known classes are ID; every other Fashion-MNIST class is a near-OOD test set of its own."""
    known = tuple(known)
    unknown = tuple(c for c in range(10) if c not in known)
    if not known or not unknown:
        raise ValueError(f"near-split needs known and unknown classes, got known={known}")
    train, test = load_fashion_mnist("train", root), load_fashion_mnist("test", root)
    return Protocol(name="near-split" if known == NEAR_KNOWN else f"near-split:{','.join(map(str, known))}",
                    train=_relabel(train, known, "train[known]"),
                    id_test=_relabel(test, known, "test[known]"),
                    ood_test={FMNIST_CLASSES[c]: test.subset(np.flatnonzero(test.labels == c), FMNIST_CLASSES[c])
                              for c in unknown},
                    num_classes=len(known), classes=tuple(FMNIST_CLASSES[k] for k in known), kind="near")


def near_pair(pair: str, root: str | None = None) -> Protocol:
    """Holds out one class of a look-alike pair (see ``NEAR_PAIRS``); the other nine are ID."""
    if pair not in NEAR_PAIRS:
        raise ValueError(f"unknown near pair {pair!r}; valid: {', '.join(NEAR_PAIRS)}")
    _, held = NEAR_PAIRS[pair]
    p = near_split(tuple(c for c in range(10) if c != held), root)
    p.name = f"near-pair:{pair}"
    return p


FEW_SHOT_UNEXPOSED: tuple[str, ...] = ("digits",)


def few_shot(k: int, ood: Sequence[str] = OFFLINE_OOD, n_ood: int | None = 2000, seed: int = 0,
             root: str | None = None, unexposed: Sequence[str] = FEW_SHOT_UNEXPOSED) -> Protocol:
    """Multi-class plus ``k`` outlier-exposure images per OOD source, except the ``unexposed`` ones.

    Each OOD set is split in two (seeded): the exposure images come from one part, the test images
    are the other. Patch sets (textures, photos) are split by source picture, so no test crop
    overlaps an exposed crop of the same picture. The ``unexposed`` sources give no exposure images
    at all: scoring them shows whether outlier exposure generalises to OOD data it never saw.
    """
    if k < 1:
        raise ValueError(f"few-shot: k must be >= 1, got {k}")
    unknown = sorted(set(unexposed) - set(ood))
    if unknown or set(unexposed) >= set(ood):
        raise ValueError(f"few-shot: unexposed={tuple(unexposed)} must be some, not all, of the OOD sets {tuple(ood)}")
    base = multi_class((), root=root)
    ood_train, ood_test = {}, {}
    for name in ood:
        full = load_ood(name, None if n_ood is None else 2 * n_ood, seed)
        pool, test = split_disjoint(full, 0.5, seed)
        if name not in unexposed:
            if k > len(pool):
                raise ValueError(f"few-shot: k={k} but the exposure part of {name} has {len(pool)} images")
            ood_train[name] = pool.sample(k, seed, name=f"{name}/exposure")
        ood_test[name] = test.subset(np.arange(len(test)), name)
    base.name, base.kind, base.ood_train, base.ood_test = f"few-shot:{k}", "few-shot", ood_train, ood_test
    return base


# --------------------------------------------------------------------------------------------
# MOOD's own benchmarks on CIFAR (online: torchvision downloads into MOOD_DATA_DIR on first use)

CIFAR_OOD: tuple[str, ...] = ("svhn", "cifar100")


def _online_test(name: str, n: int | None, seed: int, root: str | None) -> ImageSet:
    s = load_svhn("test", root) if name == "svhn" else load_cifar(name, "test", root)
    return s if n is None or len(s) <= n else s.sample(n, seed)


def cifar10(ood: Sequence[str] = CIFAR_OOD, n_ood: int | None = None, seed: int = 0, root: str | None = None) -> Protocol:
    """MOOD's multi-class benchmark: CIFAR-10 is ID (its train and test splits); the test images of
    ``ood`` (of :data:`CIFAR_OOD`: SVHN, CIFAR-100) are OOD, ``n_ood`` each at most."""
    unknown = [o for o in ood if o not in CIFAR_OOD]
    if unknown:
        raise ValueError(f"cifar10: unknown OOD sets {unknown}; valid: {', '.join(CIFAR_OOD)}")
    train, test = load_cifar("cifar10", "train", root), load_cifar("cifar10", "test", root)
    return Protocol(name="cifar10", train=train, id_test=test,
                    ood_test={o: _online_test(o, n_ood, seed, root) for o in ood}, num_classes=10,
                    classes=train.classes, kind="multi-class", format=CIFAR_FORMATS["cifar10"])


def cifar100_near(root: str | None = None) -> Protocol:
    """MOOD's near-distribution benchmark: CIFAR-100 is ID, CIFAR-10's test images are OOD."""
    train, test = load_cifar("cifar100", "train", root), load_cifar("cifar100", "test", root)
    return Protocol(name="cifar100-near", train=train, id_test=test,
                    ood_test={"cifar10": load_cifar("cifar10", "test", root)}, num_classes=100,
                    classes=train.classes, kind="near", format=CIFAR_FORMATS["cifar100"])


def cifar10_one_class(normal: int, root: str | None = None) -> Protocol:
    """MOOD's one-class benchmark: CIFAR-10 class ``normal`` against the other nine (10-way head, as
    in :func:`one_class`)."""
    train, test = load_cifar("cifar10", "train", root), load_cifar("cifar10", "test", root)
    is_normal = test.labels == normal
    name = train.classes[normal]
    return Protocol(name=f"cifar10-one-class:{normal}",
                    train=train.subset(np.flatnonzero(train.labels == normal), f"train[{name}]"),
                    id_test=test.subset(np.flatnonzero(is_normal), f"test[{name}]"),
                    ood_test={"other classes": test.subset(np.flatnonzero(~is_normal), "test[other]")},
                    num_classes=10, classes=train.classes, kind="one-class", format=CIFAR_FORMATS["cifar10"])


# --------------------------------------------------------------------------------------------
# The registry: protocol names, parsed in one place

KINDS: tuple[str, ...] = ("one-class", "multi-class", "near", "few-shot")


def _int_arg(what: str, lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(arg: str) -> int:
        try:
            k = int(arg)
        except ValueError:
            raise ValueError(f"{what} must be an integer, got {arg!r}") from None
        if k < lo or (hi is not None and k > hi):
            raise ValueError(f"{what} must lie in {lo}..{hi if hi is not None else ''}, got {k}")
        return k
    return parse


def _pair_arg(arg: str) -> str:
    if arg not in NEAR_PAIRS:
        raise ValueError(f"unknown near pair {arg!r}; valid: {', '.join(NEAR_PAIRS)}")
    return arg


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol name of the registry.

    Attributes:
        prefix: the name before ``:`` (``"one-class"``).
        kind: its family (:data:`KINDS`).
        arg: what follows ``:`` (for help texts), or None when nothing does.
        parse: turns that text into the builder's first argument (``ValueError`` when invalid).
        build: the builder (:func:`one_class`, ...).
        ood_sets: scores a list of OOD sets (the offline ones; CIFAR-10's online ones), so it takes ``n_ood=`` and ``ood=``.
        summary: one line for help texts.
    """

    prefix: str
    kind: str
    arg: str | None
    parse: Callable[[str], Any] | None
    build: Callable[..., Protocol]
    ood_sets: bool
    summary: str

    @property
    def usage(self) -> str:
        return f"{self.prefix}:{self.arg}" if self.arg else self.prefix


PROTOCOLS: dict[str, ProtocolSpec] = {s.prefix: s for s in (
    ProtocolSpec("one-class", "one-class", "K", _int_arg("one-class: the normal class K", 0, 9), one_class, False,
                 "Fashion-MNIST class K (0..9) is normal, the other nine are anomalies"),
    ProtocolSpec("multi-class", "multi-class", None, None, multi_class, True,
                 "all ten classes are ID; the offline OOD sets are OOD"),
    ProtocolSpec("near-split", "near", None, None, near_split, False,
                 "six known classes are ID; Coat, Sandal, Shirt, Ankle boot are each an OOD set"),
    ProtocolSpec("near-pair", "near", "PAIR", _pair_arg, near_pair, False,
                 f"one class of a look-alike pair held out ({', '.join(NEAR_PAIRS)})"),
    ProtocolSpec("few-shot", "few-shot", "K", _int_arg("few-shot: K images per OOD source", 1), few_shot, True,
                 "multi-class plus K outlier-exposure images per OOD source"),
    ProtocolSpec("cifar10", "multi-class", None, None, cifar10, True,
                 "online: CIFAR-10 is ID; SVHN and CIFAR-100 are OOD (MOOD's multi-class benchmark)"),
    ProtocolSpec("cifar100-near", "near", None, None, cifar100_near, False,
                 "online: CIFAR-100 is ID, CIFAR-10 is OOD (MOOD's near-distribution benchmark)"),
    ProtocolSpec("cifar10-one-class", "one-class", "K", _int_arg("cifar10-one-class: the normal class K", 0, 9),
                 cifar10_one_class, False, "online: CIFAR-10 class K is normal, the other nine are anomalies"),
)}
PROTOCOL_NAMES: tuple[str, ...] = tuple(s.usage for s in PROTOCOLS.values())


def parse_protocol(name: str) -> tuple[ProtocolSpec, Any]:
    """The registry entry of protocol ``name`` and its parsed argument (None when it takes none),
    without loading any data; a ``ValueError`` naming the valid forms otherwise."""
    prefix, colon, arg = name.partition(":")
    spec = PROTOCOLS.get(prefix)
    if spec is None or bool(colon) != (spec.arg is not None) or (colon and not arg):
        raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOL_NAMES)} "
                         f"({'; '.join(f'{s.usage}: {s.summary}' for s in PROTOCOLS.values())})")
    try:
        return spec, (spec.parse(arg) if spec.parse is not None else None)
    except ValueError as err:
        raise ValueError(f"protocol {name!r}: {err}; valid: {', '.join(PROTOCOL_NAMES)}") from None


def expand(name: str) -> list[str]:
    """``one-class:all`` (or ``cifar10-one-class:all``) -> the ten one-class protocols; any other
    valid name -> ``[name]``."""
    prefix, _, arg = name.partition(":")
    if arg == "all" and prefix in PROTOCOLS and PROTOCOLS[prefix].kind == "one-class":
        return [f"{prefix}:{k}" for k in range(10)]
    parse_protocol(name)
    return [name]


def make_protocol(name: str, **kwargs: Any) -> Protocol:
    """A protocol by name (see :data:`PROTOCOL_NAMES`); ``kwargs`` go to its builder."""
    spec, arg = parse_protocol(name)
    return spec.build(**kwargs) if spec.arg is None else spec.build(arg, **kwargs)
