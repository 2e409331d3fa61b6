"""Published figures this book cites beside its own (never as its own): typed once, read by the
claims, the chapters' tables and figures, and the study summaries."""

from __future__ import annotations

from dataclasses import dataclass

# Fashion-MNIST one-class mean AUROC of methods that use no external data (chapter 5's anchors)
ONE_CLASS_FMNIST: dict[str, float] = {"GEOM (2018)": 93.5, "GOAD (2020)": 94.1, "Sohn et al. (2021)": 94.6}
ONE_CLASS_BEST = "Sohn et al. (2021)"  # the best of them: rotation-prediction features with a one-class SVM


@dataclass(frozen=True)
class Effect:
    """An effect a paper reports: ``auroc`` and ``fpr95`` (points, method minus baseline) on ``setting``."""

    auroc: float
    fpr95: float
    setting: str

    def words(self, method: str) -> str:
        return f"{method}: {self.auroc:+.2f} AUROC, {self.fpr95:+.2f} FPR95 ({self.setting})"


UM_ENERGY = Effect(+1.66, -9.40, "CIFAR-10, DenseNet-101")  # Zhu et al. 2023, Energy score with UM against without


__all__ = ["ONE_CLASS_FMNIST", "ONE_CLASS_BEST", "Effect", "UM_ENERGY"]
