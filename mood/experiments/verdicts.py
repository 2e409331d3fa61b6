"""The validity gate: no verdict on a paper's claim from a model that has not learned its task.

Open-set and OOD scores track closed-set accuracy (Vaze et al. 2022), so a comparison drawn from an
under-trained classifier mostly measures how under-trained it is. Every profile declares the ID
accuracy its verdicts need (:attr:`mood.experiments.config.Profile.accuracy_floor`); a chapter prints
:func:`check` beside its numbers and gives no verdict when the model is below the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from mood.experiments.config import Profile


@dataclass(frozen=True)
class Validity:
    """Whether numbers at ``profile`` from a model of ``id_accuracy`` (%) can carry a verdict."""

    profile: str
    id_accuracy: float
    floor: float | None

    @property
    def ok(self) -> bool:
        return self.floor is not None and self.id_accuracy >= self.floor

    @property
    def message(self) -> str:
        if self.floor is None:
            return (f"Profile `{self.profile}` exercises the code only: its models train for seconds, so every number "
                    f"here (ID accuracy {self.id_accuracy:.1f}%) is meaningless and no verdict is drawn.")
        if not self.ok:
            return (f"**No verdict.** The model classifies the ID test set at {self.id_accuracy:.1f}%, below the "
                    f"{self.floor:.1f}% this profile's verdicts need (logistic regression on raw pixels reaches 84.5%): "
                    f"its OOD numbers say how under-trained it is, not whether the method works.")
        return (f"ID accuracy {self.id_accuracy:.1f}% is above the profile's floor of {self.floor:.1f}%: the numbers "
                f"below can carry a verdict.")

    def to_dict(self) -> dict:
        return {"profile": self.profile, "id_accuracy": self.id_accuracy, "floor": self.floor, "ok": self.ok}


def check(prof: Profile, id_accuracy: float) -> Validity:
    """The gate of profile ``prof`` for a model of ``id_accuracy`` (%)."""
    return Validity(prof.name, float(id_accuracy), prof.accuracy_floor)
