"""The book's verdict rules, in one place: when a comparison may carry a verdict, how a paired
comparison is put into words, and what it says about a paper's claim.

- The accuracy floor. Open-set and OOD scores track closed-set accuracy (Vaze et al. 2022), so a
  comparison drawn from an under-trained classifier mostly measures how under-trained it is. Every
  profile declares the ID accuracy its verdicts need (:attr:`mood.experiments.config.Profile.accuracy_floor`;
  None: the profile exercises the code only). :func:`gate` says why models of given accuracies carry
  no verdict; :class:`Validity` (from :func:`check`) is the same rule for one model, with the message a
  chapter prints beside its numbers and the row it saves (``NN_validity``).
- :func:`paired` puts a paired comparison into words: the effect, its 95% interval, ``p`` (and the
  Holm-adjusted ``p`` where given), the test, and the call.
- :func:`direction` is the decision behind every call: the interval lies above 0, below it, or
  includes it (with a Holm-adjusted ``p``, that too must be below 5%); :func:`call` reads it against a
  paper's claimed direction: ``replicated``, ``contradicted`` or ``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, NamedTuple

import pandas as pd

from mood.core.stats import ALPHA
from mood.experiments.config import Profile

CODE_ONLY = "this profile exercises the code only"


def _under(accuracy: float, floor: float) -> bool:
    """The rule: a model classifying below ``floor`` (%) carries no verdict; NaN (a model without a
    classifier, e.g. pretrained only) is not gated."""
    return accuracy < floor


def gate(accuracy: Mapping[str, float], floor: float | None) -> str:
    """Why models of ``accuracy`` (name -> ID test accuracy, %) carry no verdict at a profile's
    accuracy ``floor``: ``"no verdict: this profile exercises the code only"`` (no floor),
    ``"no verdict: below the 84.5% accuracy floor (A 80.5%)"`` naming the models under it, or ``""``
    when a verdict stands."""
    if floor is None:
        return f"no verdict: {CODE_ONLY}"
    below = [f"{name} {a:.1f}%" for name, a in accuracy.items() if _under(a, floor)]
    return f"no verdict: below the {floor}% accuracy floor ({', '.join(below)})" if below else ""


@dataclass(frozen=True)
class Validity:
    """Whether numbers at ``profile`` from a model of ``id_accuracy`` (%) can carry a verdict."""

    profile: str
    id_accuracy: float
    floor: float | None

    @classmethod
    def read(cls, row: pd.Series) -> Validity:
        """The gate saved as a row of ``NN_validity`` (:meth:`to_dict`; index ``profile``)."""
        floor = row["floor"]
        return cls(str(row.name), float(row["id_accuracy"]), None if pd.isna(floor) else float(floor))

    @property
    def ok(self) -> bool:
        return self.floor is not None and not math.isnan(self.id_accuracy) and not _under(self.id_accuracy, self.floor)

    @property
    def reason(self) -> str:
        """Why there is no verdict, in a table cell's words; ``""`` when there is one."""
        if self.floor is None:
            return f"profile {self.profile} exercises the code only"
        return "" if self.ok else f"ID accuracy {self.id_accuracy:.1f}% < floor {self.floor:.1f}%"

    def gated(self, result: object) -> object:
        """``result`` where the model passes the floor, else ``"no verdict (<reason>)"``."""
        return result if self.ok else f"no verdict ({self.reason})"

    @property
    def message(self) -> str:
        if self.floor is None:
            return (f"Profile `{self.profile}` exercises the code only: its models train for seconds, so every number "
                    f"here (ID accuracy {self.id_accuracy:.1f}%) is meaningless and no verdict is drawn.")
        if not self.ok:
            return (f"**No verdict.** The model classifies the ID test set at {self.id_accuracy:.1f}%, below the "
                    f"{self.floor:.1f}% this profile's verdicts need (a logistic regression on the raw pixels of the "
                    f"same training images): "
                    f"its OOD numbers say how under-trained it is, not whether the method works.")
        return (f"ID accuracy {self.id_accuracy:.1f}% is above the profile's floor of {self.floor:.1f}%: the numbers "
                f"below can carry a verdict.")

    def to_dict(self) -> dict:
        return {"profile": self.profile, "id_accuracy": self.id_accuracy, "floor": self.floor, "ok": self.ok}


def floor(prof: Profile, protocol: str | None = None) -> float | None:
    """The accuracy floor (%) of ``protocol``'s models at ``prof``: its own where the profile measured
    one (``Profile.floors``: a label space other than the ten classes), else ``Profile.accuracy_floor``;
    None where the profile exercises the code only. A protocol label such as ``"near-split (main
    scale)"`` is read by its first word."""
    if prof.accuracy_floor is None:
        return None
    name = (protocol or "").split(" ")[0]
    return prof.floors.get(name, prof.accuracy_floor)


def check(prof: Profile, id_accuracy: float, protocol: str | None = None) -> Validity:
    """The gate of profile ``prof`` for a model of ``id_accuracy`` (%) on ``protocol`` (:func:`floor`)."""
    return Validity(prof.name, float(id_accuracy), floor(prof, protocol))


# --------------------------------------------------------------------------------------------
# Paired comparisons: the decision, the call on a claim, the words

Outcome = Literal["replicated", "contradicted", "inconclusive"]
SIGNIFICANCE = ("significant", "significant", "not significant")  # what a call says: above 0, below 0, neither


class Call(NamedTuple):
    """What a comparison says about a paper's claim: ``outcome``, and ``reason`` (why it is
    inconclusive; ``""`` otherwise)."""

    outcome: Outcome
    reason: str


def _defined(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def direction(ci_lo: float, ci_hi: float, p_holm: float | None = None, alpha: float = ALPHA) -> int:
    """+1 when the ``1 - alpha`` interval of an effect lies above 0, -1 when below, 0 when it
    includes 0 or is undefined (one seed). With a Holm-adjusted ``p`` (a family of comparisons,
    :func:`mood.core.stats.holm`), 0 also unless that is below ``alpha``."""
    if not _defined(ci_lo, ci_hi) or (p_holm is not None and not p_holm < alpha):
        return 0
    return 1 if ci_lo > 0 else -1 if ci_hi < 0 else 0


def call(ci_lo: float, ci_hi: float, claimed: int, p_holm: float | None = None, no_verdict: str = "") -> Call:
    """The three-way call on a paper's claim that an effect has sign ``claimed`` (+1: positive, such
    as an AUROC gain; -1: negative, such as an FPR95 drop), from the effect's 95% interval
    ``[ci_lo, ci_hi]``: ``replicated`` when it excludes 0 in the claimed direction, ``contradicted``
    when it excludes 0 against it, else ``inconclusive``. A Holm-adjusted ``p_holm`` must also be
    below 5% (:func:`direction`). ``no_verdict`` (a :func:`gate` reason: the models are below the
    accuracy floor) makes it ``inconclusive`` with that reason."""
    if claimed not in (1, -1):
        raise ValueError(f"call: claimed must be +1 (the paper claims a positive effect) or -1, got {claimed!r}")
    if no_verdict:
        return Call("inconclusive", no_verdict)
    if not _defined(ci_lo, ci_hi):
        return Call("inconclusive", "one seed: no test")
    d = direction(ci_lo, ci_hi, p_holm)
    if d:
        return Call("replicated" if d == claimed else "contradicted", "")
    if p_holm is not None and (ci_lo > 0 or ci_hi < 0):
        return Call("inconclusive", f"Holm p = {p_holm:.3f} is not below {ALPHA}")
    return Call("inconclusive", f"the 95% CI [{ci_lo:+.2f}, {ci_hi:+.2f}] includes 0")


def paired(effect: float, ci_lo: float, ci_hi: float, p: float | None = None, *, unit: str = "AUROC",
           p_holm: float | None = None, test: str = "", says: tuple[str, str, str] | None = SIGNIFICANCE,
           claimed: int | None = None, no_verdict: str = "") -> str:
    """A paired comparison in words: ``"+3.00 AUROC, 95% CI [+1.10, +4.90], p = 0.035, Holm p = 0.070
    (paired t-test) — too close to call"``.

    Args:
        effect, ci_lo, ci_hi, p: the effect (A minus B, in ``unit``), its 95% interval and p-value
            (p None: not shown). An undefined interval (one seed) says ``"one seed: no test"``.
        p_holm: the Holm-adjusted p, shown and used for the call where given.
        test: which test, in brackets after the numbers ("" for none).
        says: the call when the interval lies above 0, below 0, or neither (:func:`direction`); None: no call.
        claimed: the sign a paper claims for the effect: the call is then :func:`call`'s outcome.
        no_verdict: a :func:`gate` reason, said instead of the call.
    """
    if not _defined(ci_lo, ci_hi):
        return f"{effect:+.2f} {unit} — {no_verdict or 'one seed: no test'}"
    words = f"{effect:+.2f} {unit}, {1 - ALPHA:.0%} CI [{ci_lo:+.2f}, {ci_hi:+.2f}]"
    if p is not None:
        words += f", p = {p:.3f}"
    if p_holm is not None:
        words += f", Holm p = {p_holm:.3f}"
    if test:
        words += f" ({test})"
    if claimed is not None:
        verdict = call(ci_lo, ci_hi, claimed, p_holm, no_verdict)
        return f"{words} — {verdict.outcome}" + (f": {verdict.reason}" if verdict.reason else "")
    said = no_verdict or (says[{1: 0, -1: 1, 0: 2}[direction(ci_lo, ci_hi, p_holm)]] if says else "")
    return f"{words} — {said}" if said else words
