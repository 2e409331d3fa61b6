"""OOD scores with one sign convention: **higher = more likely OOD**.

Feature-based detectors follow scikit-learn's shape: ``fit`` on ID training features (and labels),
then ``score`` any features. They work on saved features, so a backbone's features are extracted
once (:mod:`mood.features`) and scored many ways.

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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Array = torch.Tensor


def _as_features(x: Array, what: str) -> Array:
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected features [N, D], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN/inf; the backbone diverged or the input is broken")
    return x.double() if x.dtype == torch.float64 else x.float()


def _blocks(d: int, n: int = 4) -> list[tuple[int, int]]:
    """``n`` contiguous column blocks ``(start, end)`` covering ``range(d)``."""
    edges = [round(i * d / n) for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _add_lower_gram(gram: Array, x: Array) -> None:
    """``gram += x^T x`` on and below the diagonal blocks only (~5/8 of the full product's flops for
    4 blocks; the symmetric rest is mirrored once at the end). ``x``: ``[n, D]``, ``gram``: ``[D, D]``."""
    for a, b in _blocks(x.shape[1]):
        gram[a:b, :b].addmm_(x[:, a:b].T, x[:, :b])


def _mul_upper(x: Array, upper: Array) -> Array:
    """``x @ upper`` for an upper-triangular ``upper`` ``[D, D]``, skipping its zero blocks: ``[n, D]``."""
    return torch.cat([x[:, :b] @ upper[:b, a:b] for a, b in _blocks(x.shape[1])], dim=1)


class Detector:
    """Base class: ``fit(features, labels)`` then ``score(features) -> [N]`` (higher = more OOD)."""

    fitted: bool = False

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
    diagonal blocks, and the class sums), forms the shared within-class covariance ``S`` from them, then
    the Cholesky factor ``S + eps*I = L L^T`` and whitens by ``W = L^-1``; ``score`` is one triangular
    block product ``||W x - W mu||^2`` per chunk, on the features' device. When ``S`` is singular (fewer samples than
    dimensions, dead features) ``eps`` is raised step by step; ``shrinkage`` blends in a scaled
    identity explicitly (Ledoit-Wolf style) when asked.

    Args:
        class_conditional: min over class means (needs labels) instead of one global mean.
        shrinkage: ``S <- (1 - a) S + a * tr(S)/D * I`` with ``a = shrinkage``.
        normalize: L2-normalise features first.
        chunk: rows scored per matrix product.
    """

    def __init__(self, class_conditional: bool = False, shrinkage: float = 0.0, normalize: bool = False,
                 chunk: int = 8192) -> None:
        self.class_conditional, self.shrinkage, self.normalize, self.chunk = class_conditional, shrinkage, normalize, chunk

    def _prep(self, x: Array) -> Array:
        return F.normalize(x, dim=1) if self.normalize else x

    def fit(self, features: Array, labels: Array | None = None) -> "Mahalanobis":
        x = self._prep(_as_features(features, "Mahalanobis.fit"))
        if self.class_conditional:
            if labels is None:
                raise ValueError("class-conditional Mahalanobis needs labels: fit(features, labels)")
            _, index = torch.unique(torch.as_tensor(labels, device=x.device), return_inverse=True)
        else:
            index = torch.zeros(len(x), dtype=torch.long, device=x.device)
        k, d = int(index.max()) + 1, x.shape[1]
        # One pass over the data in float64 chunks: the Gram matrix and the class sums, both of the
        # features minus a fixed shift. The within-class scatter is shift-invariant; a shift near the
        # mean keeps the subtraction ``Gram - sum_k n_k mu_k mu_k^T`` free of float64 cancellation.
        shift = x[:4096].double().mean(0)
        gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        sums = torch.zeros(k, d, dtype=torch.float64, device=x.device)
        for part, idx in zip(x.split(self.chunk), index.split(self.chunk)):
            part = part.to(torch.float64, copy=True).sub_(shift)  # never the caller's tensor in place
            _add_lower_gram(gram, part)
            sums.index_add_(0, idx, part)
        gram = gram.tril() + gram.tril(-1).T
        counts = torch.bincount(index, minlength=k).double()[:, None]  # [K, 1]
        means = sums / counts  # [K, D], shifted
        cov = (gram - sums.T @ means) / len(x)
        center = sums.sum(0) / len(x)  # the global mean, shifted
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        if self.shrinkage:
            cov = (1 - self.shrinkage) * cov + self.shrinkage * cov.trace() / d * eye
        eps, scale = 0.0, float(cov.diagonal().mean().clamp_min(1e-12))
        while True:
            chol, info = torch.linalg.cholesky_ex(cov + eps * scale * eye)
            if int(info) == 0:
                break
            eps = 1e-9 if eps == 0 else eps * 10
            if eps > 1.0:
                raise ValueError("Mahalanobis: covariance is not positive definite even with heavy regularisation")
        self.ridge = eps * scale
        whiten = torch.linalg.solve_triangular(chol, eye, upper=False).T  # x @ whiten = (L^-1 x^T)^T
        self.center = center + shift
        self.whiten = whiten
        self.means_w = (means - center) @ whiten  # [K, D] whitened, centred means
        self.fitted = True
        return self

    def score(self, features: Array) -> Array:
        """Squared distances ``[N]`` in float32. They are computed in float64: with well-separated
        classes the whitened features and means are huge next to the distances between them
        (``|z|^2 ~ 1e8`` for distances ~1e3 is common), and float32 cancellation in
        ``|z|^2 - 2 z.mu + |mu|^2`` then costs percents."""
        self._require_fit()
        x = self._prep(_as_features(features, "Mahalanobis.score"))
        w, mu, c = self.whiten.to(x.device), self.means_w.to(x.device), self.center.to(x.device)
        out = []
        for part in x.split(self.chunk):
            part = part.double()
            z = _mul_upper(part - c, w)  # [n, D]; w = L^-T is upper triangular
            d2 = (z * z).sum(1, keepdim=True) - 2 * z @ mu.T + (mu * mu).sum(1)[None]  # [n, K]
            out.append(d2.min(1).values.clamp_min(0))
        return torch.cat(out).float()


class KNN(Detector):
    """Negative cosine similarity to the k-th nearest ID training feature.

    Args:
        k: which neighbour (Sun et al. use k=50 for CIFAR-10 / 1000 for ImageNet).
        chunk: test rows per similarity block.
    """

    def __init__(self, k: int = 50, chunk: int = 2048) -> None:
        self.k, self.chunk = k, chunk

    def fit(self, features: Array, labels: Array | None = None) -> "KNN":
        self.bank = F.normalize(_as_features(features, "KNN.fit").float(), dim=1)
        if self.k > len(self.bank):
            raise ValueError(f"KNN: k={self.k} but only {len(self.bank)} training features")
        self.fitted = True
        return self

    def score(self, features: Array) -> Array:
        self._require_fit()
        x = F.normalize(_as_features(features, "KNN.score").float(), dim=1)
        bank = self.bank.to(x.device)
        return torch.cat([-(part @ bank.T).topk(self.k, dim=1).values[:, -1] for part in x.split(self.chunk)])


class ViM(Detector):
    """Virtual-logit matching. Needs the linear head ``W [C, D]``, ``b [C]`` and the logits.

    Args:
        weight: head weight ``[C, D]``.
        bias: head bias ``[C]``.
        dim: dimension of the principal subspace (ViM: 512 for D >= 1500, else D/2).
    """

    def __init__(self, weight: Array, bias: Array, dim: int | None = None) -> None:
        self.weight, self.bias, self.dim = weight.detach().double().cpu(), bias.detach().double().cpu(), dim

    def fit(self, features: Array, labels: Array | None = None) -> "ViM":
        x = _as_features(features, "ViM.fit").double().cpu()
        d = x.shape[1]
        dim = self.dim or (512 if d >= 1500 else d // 2)
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
        x = _as_features(features, "ViM.score").double().cpu()
        vlogit = (x - self.origin) @ self.null_space
        vlogit = vlogit.norm(dim=1) * self.alpha
        energy = torch.logsumexp(x @ self.weight.T + self.bias, dim=1)
        return (vlogit - energy).float()


# --------------------------------------------------------------------------------------------
# Logit scores: [N, C] -> [N]

def _as_logits(logits: Array) -> Array:
    logits = torch.as_tensor(logits).float()
    if logits.ndim != 2:
        raise ValueError(f"expected logits [N, C], got shape {tuple(logits.shape)}")
    return logits


def msp(logits: Array, temperature: float = 1.0) -> Array:
    """Negative maximum softmax probability (Hendrycks & Gimpel 2017)."""
    return -F.softmax(_as_logits(logits) / temperature, dim=1).max(1).values


def max_logit(logits: Array) -> Array:
    """Negative maximum logit (Hendrycks et al. 2022)."""
    return -_as_logits(logits).max(1).values


def energy(logits: Array, temperature: float = 1.0) -> Array:
    """Free energy ``-T logsumexp(l / T)`` (Liu et al. 2020): low for ID, so it is an OOD score as is."""
    return -temperature * torch.logsumexp(_as_logits(logits) / temperature, dim=1)


def entropy(logits: Array) -> Array:
    """Entropy of the softmax."""
    logp = F.log_softmax(_as_logits(logits), dim=1)
    return -(logp.exp() * logp).sum(1)


def outlier_class(logits: Array) -> Array:
    """Softmax probability of the last class, for models trained with an extra "outlier" class
    (outlier exposure); higher = more OOD as is."""
    return F.softmax(_as_logits(logits), dim=1)[:, -1]


LOGIT_SCORES = {"msp": msp, "maxlogit": max_logit, "energy": energy, "entropy": entropy}


def odin(model: nn.Module, x: Array, temperature: float = 1000.0, epsilon: float = 0.0014,
         batch_size: int = 256) -> Array:
    """ODIN (Liang et al. 2018): each input takes a step of size ``epsilon`` against the gradient of
    the temperature-scaled cross-entropy of its own prediction (raising its max softmax), then the
    negative temperature-scaled MSP is the score.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``.
        x: ``[N, C, H, W]`` images, in the model's input space.
    Returns:
        ``[N]`` OOD scores.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for part in x.split(batch_size):
        part = part.to(device).clone().requires_grad_(True)
        logits = model(part) / temperature
        loss = F.cross_entropy(logits, logits.argmax(1))
        grad, = torch.autograd.grad(loss, part)
        with torch.no_grad():
            perturbed = part - epsilon * grad.sign()
            out.append(msp(model(perturbed), temperature).cpu())
    return torch.cat(out)


DETECTORS = ("mahalanobis", "mahalanobis_cc", "knn", "vim", *LOGIT_SCORES, "odin")


def make_detector(name: str, **kwargs) -> Detector:
    """A feature detector by name: ``mahalanobis``, ``mahalanobis_cc`` (class-conditional), ``knn``,
    ``vim`` (needs ``weight=``, ``bias=``)."""
    if name == "mahalanobis":
        return Mahalanobis(**kwargs)
    if name == "mahalanobis_cc":
        return Mahalanobis(class_conditional=True, **kwargs)
    if name == "knn":
        return KNN(**kwargs)
    if name == "vim":
        return ViM(**kwargs)
    raise ValueError(f"unknown feature detector {name!r}; valid: mahalanobis, mahalanobis_cc, knn, vim "
                     f"(logit scores: {', '.join(LOGIT_SCORES)}, odin)")
