"""OOD scores with one sign convention: **higher = more likely OOD**.

Feature-based detectors follow scikit-learn's shape: ``fit`` on ID training features (and labels),
then ``score`` any features. They work on saved features, so a backbone's features are extracted
once (:mod:`mood.core.features`) and scored many ways.

=================  ============================================================================
Mahalanobis         squared distance to the ID mean under the shared covariance (MOOD's default:
                    one Gaussian over all ID features); ``class_conditional=True`` takes the
                    minimum over class means with a shared covariance (Lee et al. 2018).
KNN                 negative cosine similarity to the k-th nearest ID training feature (Sun et al. 2022).
ViM                 virtual-logit matching (Wang et al. 2022): residual norm outside the principal
                    subspace, scaled to the logits, minus the energy.
MSP, MaxLogit,      from logits ``[N, C]``: negative max softmax probability, negative max logit,
Energy, Entropy     negative free energy ``-T logsumexp(l/T)``, softmax entropy.
ODIN                MSP at temperature T after a small input step that raises it (needs the model).
=================  ============================================================================

Every score is registered by name in :data:`SCORES` (a :class:`ScoreSpec`: what it needs —
features, logits or the model — and its hyperparameters). :func:`mood.experiments.pipeline.score` dispatches
on that entry, so a score added there works from the CLI, the pipeline, the ablations and
Unleashing Mask at once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import torch
import torch.nn.functional as F

from mood.core.logit_scores import energy, entropy, max_logit, msp, odin, outlier_class

Array = torch.Tensor
EPS64 = torch.finfo(torch.float64).eps


def _as_features(x: Array, what: str, dim: int | None = None) -> Array:
    """``x`` as a float ``[N, D]`` tensor, checked: non-empty, finite, and ``D == dim`` when given."""
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected features [N, D], got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{what}: no features (the set is empty)")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what}: fitted on D={dim} features, got D={x.shape[1]}; score features of the same "
                         f"backbone, layer and pooling as the fit set")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN/inf; the backbone diverged or the input is broken")
    return x.double() if x.dtype == torch.float64 else x.float()


def _as_labels(labels: Array | None, n: int, what: str) -> Array | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"{what}: {n} features but {len(labels)} labels; pass one label per feature row")
    return labels


def _blocks(d: int, n: int = 4) -> list[tuple[int, int]]:
    """``n`` contiguous column blocks ``(start, end)`` covering ``range(d)``."""
    edges = [round(i * d / n) for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _add_lower_gram(gram: Array, x: Array) -> None:
    """``gram += x^T x`` on and below the diagonal blocks only (~5/8 of the full product's flops for
    4 blocks; the symmetric rest is mirrored once at the end). ``x``: ``[n, D]``, ``gram``: ``[D, D]``."""
    for a, b in _blocks(x.shape[1]):
        gram[a:b, :b].addmm_(x[:, a:b].T, x[:, :b])


def _dual_spectrum(x: Array, index: Array, counts: Array, shift: Array) -> tuple[Array, Array, Array]:
    """As :meth:`Mahalanobis._spectrum` (no shrinkage), from the ``[N, N]`` Gram matrix of the
    within-class residuals ``A`` (``[N, D]``, ``N < D``): ``A A^T / N = U diag(l) U^T`` has the nonzero
    eigenvalues of the covariance ``A^T A / N``, whose eigenvectors are ``A^T U diag(N l)^-1/2``.
    Returns the sums ``[K, D]``, eigenvalues ``[N]`` and eigenvectors ``[D, N]`` (the columns of
    eigenvalues at rounding level are not unit vectors; the fit's tolerance drops them)."""
    n = len(x)
    resid = x.to(torch.float64, copy=True).sub_(shift)  # [N, D]: smaller than the primal [D, D] Gram
    sums = torch.zeros(len(counts), x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, index, resid)
    resid.sub_((sums / counts)[index])
    evals, u = torch.linalg.eigh(resid @ resid.T / n)
    evecs = resid.T @ (u / (n * evals.clamp_min(torch.finfo(torch.float64).tiny)).sqrt())
    return sums, evals, evecs


class Detector:
    """Base class: ``fit(features, labels)`` then ``score(features) -> [N]`` (higher = more OOD)."""

    fitted: bool = False
    dim: int | None = None

    def fit(self, features: Array, labels: Array | None = None) -> "Detector":
        raise NotImplementedError

    def score(self, features: Array) -> Array:
        raise NotImplementedError

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(id_train_features) first")


class Mahalanobis(Detector):
    """Mahalanobis distance with a shared covariance, computed by whitening.

    ``fit`` makes one float64 pass over the features in chunks (the Gram matrix on and below the
    diagonal blocks, and the class sums) and forms the shared within-class covariance ``S``; its
    eigendecomposition ``S = V diag(l) V^T`` gives the whitening ``W = V_r diag(l_r)^-1/2`` over the
    ``r`` eigen-directions with ``l > rtol * l_max``. Directions below that tolerance carry no
    variance the data can resolve: the pooled tokens of a ViT's final LayerNorm sum to a constant,
    so their covariance has rank ``D - 1`` and a smallest eigenvalue of ~1e-16 relative, pure
    rounding; inverting it (Cholesky "succeeds" on such a pivot) turns float32 rounding into score.
    Dropping them is the pseudo-inverse (scikit-learn's ``EmpiricalCovariance`` uses ``pinvh``, same
    default tolerance). ``score`` is then ``||W^T (x - mu)||^2`` in float64, min over means.

    Degenerate fits: fewer than 2 samples (or no more samples than class means) and constant
    features raise ``ValueError``; fewer samples than dimensions fits with a warning (the estimate
    is then the pseudo-inverse on the span of the training features: distances off that span are
    not counted; ``shrinkage > 0`` gives a full-rank estimate instead).

    Args:
        class_conditional: min over class means (needs labels) instead of one global mean.
        shrinkage: ``S <- (1 - a) S + a * tr(S)/D * I`` with ``a = shrinkage`` (Ledoit-Wolf style).
        normalize: L2-normalise features first.
        rtol: eigenvalues at or below ``rtol * l_max`` are dropped (None: ``D * eps(float64)``, as ``pinvh``).
        chunk: rows per matrix product.

    Attributes (after fit): ``rank`` (directions kept), ``dim`` (D).
    """

    def __init__(self, class_conditional: bool = False, shrinkage: float = 0.0, normalize: bool = False,
                 rtol: float | None = None, chunk: int = 8192) -> None:
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"Mahalanobis: shrinkage must lie in [0, 1], got {shrinkage}")
        self.class_conditional, self.shrinkage, self.normalize = class_conditional, shrinkage, normalize
        self.rtol, self.chunk = rtol, chunk

    def _prep(self, x: Array) -> Array:
        return F.normalize(x, dim=1) if self.normalize else x

    def fit(self, features: Array, labels: Array | None = None) -> "Mahalanobis":
        x = self._prep(_as_features(features, "Mahalanobis.fit"))
        labels = _as_labels(labels, len(x), "Mahalanobis.fit")
        if self.class_conditional:
            if labels is None:
                raise ValueError("class-conditional Mahalanobis needs labels: fit(features, labels)")
            _, index = torch.unique(labels.to(x.device), return_inverse=True)
        else:
            index = torch.zeros(len(x), dtype=torch.long, device=x.device)
        n, k, d = len(x), int(index.max()) + 1, x.shape[1]
        if n <= k:
            raise ValueError(f"Mahalanobis.fit: {n} sample(s) for {k} mean(s) leave no spread to estimate a "
                             f"covariance from; fit on (many) more ID training features")
        shift = x[:4096].double().mean(0)
        # Fewer samples than dimensions: the N x N Gram matrix of the within-class residuals has the
        # covariance's nonzero spectrum, at O(N^2 D) instead of O(D^3) (a ViT-S/4's 18,816 token
        # features on one class's 6,000 images: seconds, not many minutes).
        counts = torch.bincount(index, minlength=k).double()[:, None]  # [K, 1]
        spectrum = _dual_spectrum if n < d and not self.shrinkage else self._spectrum
        sums, evals, evecs = spectrum(x, index, counts, shift)  # ascending eigenvalues
        means = sums / counts  # [K, D], shifted
        center = sums.sum(0) / n  # the global mean, shifted
        top = float(evals[-1])
        # Variance below float64 resolution of the features' own magnitude is no variance at all.
        if not top > d * EPS64 * max(float((shift * shift).mean()), 1e-300):
            raise ValueError(f"Mahalanobis.fit: the {n} features have no variance (every feature is constant "
                             f"across the fit set); the backbone's output is degenerate or the fit set repeats one image")
        keep = evals > (self.rtol if self.rtol is not None else d * EPS64) * top
        self.rank, self.dim = int(keep.sum()), d
        if n - k < d and not self.shrinkage:
            warnings.warn(f"Mahalanobis: {n} samples around {k} mean(s) for D={d} dimensions: the covariance has "
                          f"rank {self.rank} < {d}, so distances are measured only inside the span of the training "
                          f"features (pseudo-inverse). Fit on more than {d + k} samples, or pass shrinkage > 0 for "
                          f"a full-rank estimate", RuntimeWarning, stacklevel=2)
        self.whiten = evecs[:, keep] / evals[keep].sqrt()  # [D, r]: x -> whitened coordinates
        self.center = center + shift
        self.means_w = (means - center) @ self.whiten  # [K, r] whitened, centred means
        self.fitted = True
        return self

    def _spectrum(self, x: Array, index: Array, counts: Array, shift: Array) -> tuple[Array, Array, Array]:
        """The class sums ``[K, D]`` of ``x - shift`` (``counts``: ``[K, 1]`` images per class) and the
        eigenvalues ``[D]`` (ascending) and eigenvectors ``[D, D]`` of the shared within-class
        covariance (shrunk when asked)."""
        d = x.shape[1]
        # One pass over the data in float64 chunks: the Gram matrix and the class sums, both of the
        # features minus a fixed shift. The within-class scatter is shift-invariant; a shift near the
        # mean keeps the subtraction ``Gram - sum_k n_k mu_k mu_k^T`` free of float64 cancellation.
        gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        sums = torch.zeros(len(counts), d, dtype=torch.float64, device=x.device)
        for part, idx in zip(x.split(self.chunk), index.split(self.chunk)):
            part = part.to(torch.float64, copy=True).sub_(shift)  # never the caller's tensor in place
            _add_lower_gram(gram, part)
            sums.index_add_(0, idx, part)
        gram = gram.tril() + gram.tril(-1).T
        cov = (gram - sums.T @ (sums / counts)) / len(x)
        if self.shrinkage:
            cov = (1 - self.shrinkage) * cov + self.shrinkage * cov.trace() / d * torch.eye(d, dtype=cov.dtype,
                                                                                            device=cov.device)
        evals, evecs = torch.linalg.eigh(cov)
        return sums, evals, evecs

    def score(self, features: Array) -> Array:
        """Squared distances ``[N]`` in float32. They are computed in float64: with well-separated
        classes the whitened features and means are huge next to the distances between them
        (``|z|^2 ~ 1e8`` for distances ~1e3 is common), and float32 cancellation in
        ``|z|^2 - 2 z.mu + |mu|^2`` then costs percents."""
        self._require_fit()
        x = self._prep(_as_features(features, "Mahalanobis.score", self.dim))
        w, mu, c = self.whiten.to(x.device), self.means_w.to(x.device), self.center.to(x.device)
        mu2 = (mu * mu).sum(1)[None]
        out = []
        for part in x.split(self.chunk):
            z = (part.double() - c) @ w  # [n, r]
            d2 = (z * z).sum(1, keepdim=True) - 2 * z @ mu.T + mu2  # [n, K]
            out.append(d2.min(1).values.clamp_min(0))
        return torch.cat(out).float()


class KNN(Detector):
    """Distance to the k-th nearest ID training feature: negative cosine similarity of L2-normalised
    features (Sun et al. 2022), or the Euclidean distance (``metric="l2"``; with ``k=1`` on raw pixels,
    the classic nearest-neighbour baseline).

    Args:
        k: which neighbour (Sun et al. use k=50 for CIFAR-10 / 1000 for ImageNet).
        metric: ``"cosine"`` or ``"l2"``.
        chunk: test rows per similarity block.
    """

    def __init__(self, k: int = 50, metric: str = "cosine", chunk: int = 2048) -> None:
        if metric not in ("cosine", "l2"):
            raise ValueError(f"KNN: metric must be 'cosine' or 'l2', got {metric!r}")
        self.k, self.metric, self.chunk = k, metric, chunk

    def _prep(self, x: Array) -> Array:
        return F.normalize(x.float(), dim=1) if self.metric == "cosine" else x.float()

    def fit(self, features: Array, labels: Array | None = None) -> "KNN":
        self.bank = self._prep(_as_features(features, "KNN.fit"))
        self.dim = self.bank.shape[1]
        if self.k < 1:
            raise ValueError(f"KNN: k must be >= 1, got {self.k}")
        if self.k > len(self.bank):
            raise ValueError(f"KNN: k={self.k} but only {len(self.bank)} training features")
        self.fitted = True
        return self

    def score(self, features: Array) -> Array:
        self._require_fit()
        x = self._prep(_as_features(features, "KNN.score", self.dim))
        bank = self.bank.to(x.device)
        if self.metric == "cosine":
            return torch.cat([-(part @ bank.T).topk(self.k, dim=1).values[:, -1] for part in x.split(self.chunk)])
        b2 = (bank.double() ** 2).sum(1)[None]
        out = []
        for part in x.split(self.chunk):  # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, the k smallest per row
            d2 = (part.double() ** 2).sum(1, keepdim=True) - 2 * (part @ bank.T).double() + b2
            out.append(d2.topk(self.k, dim=1, largest=False).values[:, -1].clamp_min(0).sqrt().float())
        return torch.cat(out)


class ViM(Detector):
    """Virtual-logit matching. Needs the linear head ``W [C, D]``, ``b [C]`` and the logits.

    Args:
        weight: head weight ``[C, D]``.
        bias: head bias ``[C]``.
        dim: dimension of the principal subspace (ViM: 512 for D >= 1500, else D/2).
    """

    def __init__(self, weight: Array, bias: Array, dim: int | None = None) -> None:
        self.weight, self.bias, self.subspace = weight.detach().double().cpu(), bias.detach().double().cpu(), dim

    def fit(self, features: Array, labels: Array | None = None) -> "ViM":
        x = _as_features(features, "ViM.fit", self.weight.shape[1]).double().cpu()
        d = x.shape[1]
        self.dim = d
        dim = self.subspace or (512 if d >= 1500 else d // 2)
        self.origin = -torch.linalg.pinv(self.weight) @ self.bias  # u = -W^+ b
        centred = x - self.origin
        _, eigvec = torch.linalg.eigh(centred.T @ centred / len(x))  # ascending eigenvalues
        self.null_space = eigvec[:, : d - dim]  # [D, D - dim]: the least-variance directions
        residual = (centred @ self.null_space).norm(dim=1)
        logits = x @ self.weight.T + self.bias
        self.alpha = float(logits.max(1).values.mean() / residual.mean())
        self.fitted = True
        return self

    def score(self, features: Array) -> Array:
        self._require_fit()
        x = _as_features(features, "ViM.score", self.dim).double().cpu()
        vlogit = (x - self.origin) @ self.null_space
        vlogit = vlogit.norm(dim=1) * self.alpha
        energy = torch.logsumexp(x @ self.weight.T + self.bias, dim=1)
        return (vlogit - energy).float()


Needs = Literal["features", "logits", "model"]


@dataclass(frozen=True)
class ScoreSpec:
    """One OOD score of the registry.

    Attributes:
        name: the name used everywhere (CLI ``--detector``, configs, ablation variants).
        needs: ``"features"`` (a :class:`Detector` fitted on ID training features), ``"logits"``
            (a function of the head's outputs) or ``"model"`` (re-runs the model on the images).
        summary: one line for help texts.
        build: features: ``(**params) -> Detector`` (ViM also takes the head's ``weight``, ``bias``);
            logits: ``(logits [N, C], **params) -> [N]``; model: ``(model, x [N, C, H, W], **params) -> [N]``.
        params: the hyperparameters it accepts, with their defaults.
        needs_head: the detector is built from the backbone's linear head (ViM).
    """

    name: str
    needs: Needs
    summary: str
    build: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    needs_head: bool = False

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` if every key is a hyperparameter of this score, else a ``ValueError`` naming them."""
        bad = sorted(set(params) - set(self.params))
        if bad:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.params.items()) or "none"
            raise ValueError(f"score {self.name!r} has no hyperparameter(s) {bad}; valid: {valid}")
        return dict(params)


_MAHALANOBIS_PARAMS = {"normalize": False, "shrinkage": 0.0, "rtol": None}

SCORES: dict[str, ScoreSpec] = {s.name: s for s in (
    ScoreSpec("mahalanobis", "features", "squared distance to the ID mean, shared covariance (MOOD)",
              Mahalanobis, _MAHALANOBIS_PARAMS),
    ScoreSpec("mahalanobis_cc", "features", "min distance over class means, shared covariance (Lee et al. 2018)",
              lambda **kw: Mahalanobis(class_conditional=True, **kw), _MAHALANOBIS_PARAMS),
    ScoreSpec("knn", "features", "negative cosine similarity to the k-th nearest ID feature (Sun et al. 2022)",
              KNN, {"k": 50, "metric": "cosine"}),
    ScoreSpec("vim", "features", "virtual-logit matching (Wang et al. 2022); uses the linear head",
              ViM, {"dim": None}, needs_head=True),
    ScoreSpec("msp", "logits", "negative max softmax probability (Hendrycks & Gimpel 2017)", msp,
              {"temperature": 1.0}),
    ScoreSpec("maxlogit", "logits", "negative max logit (Hendrycks et al. 2022)", max_logit),
    ScoreSpec("energy", "logits", "negative free energy (Liu et al. 2020)", energy, {"temperature": 1.0}),
    ScoreSpec("entropy", "logits", "softmax entropy", entropy),
    ScoreSpec("outlier_class", "logits", "probability of the extra outlier class (outlier-exposure models)",
              outlier_class),
    ScoreSpec("odin", "model", "MSP at temperature T after an input step that raises it (Liang et al. 2018)",
              odin, {"temperature": 1000.0, "epsilon": 0.0014}),
)}


def get_score(name: str) -> ScoreSpec:
    """The registry entry of score ``name``; a ``ValueError`` listing every valid name otherwise."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; valid: {', '.join(SCORES)}")
    return SCORES[name]
