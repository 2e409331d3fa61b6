"""Every score against an independent, straightforward implementation (numpy / scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors

from mood.core import logit_scores, scores
from mood.core.metrics import auroc


def _features(n: int = 400, d: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    means = rng.normal(0, 3, (classes, d))
    a = rng.normal(0, 1, (d, d))
    x = means[y] + rng.normal(0, 1, (n, d)) @ a + 10.0  # correlated, offset
    return x, y


def test_mahalanobis_matches_sklearn() -> None:
    x, _ = _features()
    q = _features(seed=1)[0]
    det = scores.Mahalanobis().fit(torch.from_numpy(x))
    ref = EmpiricalCovariance().fit(x).mahalanobis(q)
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=2e-3, atol=1e-3)


def test_class_conditional_matches_loop() -> None:
    x, y = _features()
    q = _features(seed=2)[0]
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    centred = x - means[y]
    prec = np.linalg.inv(centred.T @ centred / len(x))
    ref = np.min([np.einsum("nd,de,ne->n", q - m, prec, q - m) for m in means], axis=0)
    det = scores.Mahalanobis(class_conditional=True).fit(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=2e-3, atol=1e-3)


def test_class_conditional_is_exact_when_classes_are_far_apart() -> None:
    """Classes ~100 within-class standard deviations apart (as fine-tuned features often are): the
    whitened features are huge next to the distances, which float32 scoring could not resolve."""
    rng = np.random.default_rng(3)
    d, k = 64, 10
    y = rng.integers(0, k, 3000)
    means = rng.normal(0, 30, (k, d))
    mix = rng.normal(0, 1, (d, d)) / np.sqrt(d)
    x = (means[y] + rng.normal(0, 1, (3000, d)) @ mix).astype(np.float32)
    q = (means[rng.integers(0, k, 300)] + rng.normal(0, 1.5, (300, d)) @ mix).astype(np.float32)
    x64 = x.astype(np.float64)
    mu = np.stack([x64[y == c].mean(0) for c in range(k)])
    prec = np.linalg.inv((x64 - mu[y]).T @ (x64 - mu[y]) / len(x))
    ref = np.min([np.einsum("nd,de,ne->n", q - m, prec, q - m) for m in mu], axis=0)
    det = scores.Mahalanobis(class_conditional=True).fit(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=1e-5)


def test_chunked_fit_is_exact_under_a_large_offset_and_leaves_its_input_alone() -> None:
    """Features far from the origin (mean 1e3 x their spread), fitted in uneven chunks from a float64
    tensor: the one-pass Gram/class-sum accumulation must agree with the two-pass reference and must
    not shift the caller's tensor in place."""
    rng = np.random.default_rng(4)
    d, k, n = 48, 7, 2500
    y = rng.integers(0, k, n)
    x = 1e3 + rng.normal(0, 3, (k, d))[y] + rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d)) / np.sqrt(d)
    q = x[:200] + rng.normal(0, 1, (200, d))
    mu = np.stack([x[y == c].mean(0) for c in range(k)])
    prec = np.linalg.inv((x - mu[y]).T @ (x - mu[y]) / n)
    ref = np.min([np.einsum("nd,de,ne->n", q - m, prec, q - m) for m in mu], axis=0)
    tx = torch.from_numpy(x.copy())
    det = scores.Mahalanobis(class_conditional=True, chunk=700).fit(tx, torch.from_numpy(y))
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=1e-5)
    assert torch.equal(tx, torch.from_numpy(x))
    single = scores.Mahalanobis(chunk=700).fit(tx).score(torch.from_numpy(q)).numpy()
    c = x - x.mean(0)
    np.testing.assert_allclose(single, np.einsum("nd,de,ne->n", q - x.mean(0), np.linalg.inv(c.T @ c / n), q - x.mean(0)),
                               rtol=1e-5)


def _layernorm_features(n: int, d: int = 48, seed: int = 0) -> np.ndarray:
    """Real-looking ViT features: mean-pooled tokens of a final LayerNorm (with its affine), float32.
    Each token sums (after removing the bias, weighted by 1/gamma) to zero, so the pooled features
    span D - 1 directions: their covariance is singular up to float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    norm = torch.nn.LayerNorm(d)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(d, generator=g))
        norm.bias.copy_(0.1 * torch.randn(d, generator=g))
        mix = torch.randn(d, d, generator=g) / d ** 0.5
        tokens = torch.randn(n, 16, d, generator=g) @ mix + torch.randn(n, 1, d, generator=g)
        return norm(tokens).mean(1).numpy()


def test_rank_deficient_layernorm_features_match_the_pseudo_inverse() -> None:
    x, q = _layernorm_features(3000), _layernorm_features(500, seed=1)
    evals = np.linalg.eigvalsh(np.cov(x.astype(np.float64).T))
    assert evals[0] / evals[-1] < 1e-12  # singular: the case Cholesky "solved" by inverting rounding noise
    det = scores.Mahalanobis().fit(torch.from_numpy(x))
    assert det.rank == x.shape[1] - 1
    ref = EmpiricalCovariance().fit(x.astype(np.float64)).mahalanobis(q.astype(np.float64))  # pinvh
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=1e-4)
    # class-conditional: shared within-class covariance, pseudo-inverted the same way
    y = np.random.default_rng(0).integers(0, 5, len(x))
    cc = scores.Mahalanobis(class_conditional=True).fit(torch.from_numpy(x), torch.from_numpy(y))
    xd = x.astype(np.float64)
    means = np.stack([xd[y == c].mean(0) for c in range(5)])
    prec = np.linalg.pinv(np.cov((xd - means[y]).T, bias=True), rcond=x.shape[1] * np.finfo(np.float64).eps,
                          hermitian=True)
    qd = q.astype(np.float64)
    want = np.min([np.einsum("nd,de,ne->n", qd - m, prec, qd - m) for m in means], axis=0)
    np.testing.assert_allclose(cc.score(torch.from_numpy(q)).numpy(), want, rtol=1e-4)


def test_fewer_samples_than_dimensions_warns_and_stays_in_the_span() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(50, 128)))
    with pytest.warns(RuntimeWarning, match="50 samples .* D=128 .* rank 49"):
        det = scores.Mahalanobis().fit(x)
    unseen = det.score(torch.from_numpy(rng.normal(size=(200, 128))))
    seen = det.score(x)
    assert torch.isfinite(unseen).all() and det.rank == 49
    # well defined: the distance inside the span of the centred training features, where an unseen point of
    # the same distribution lands as far out as a training point does (no 1e10 blow-up along unresolved directions)
    assert float(unseen.median()) < 10 * float(seen.median())
    centred = x - x.mean(0)
    pinv = torch.linalg.pinv(centred.T @ centred / len(x), hermitian=True)
    q = torch.from_numpy(rng.normal(size=(5, 128))) - x.mean(0)
    torch.testing.assert_close(det.score(q + x.mean(0)), torch.einsum("nd,de,ne->n", q, pinv, q).float(), rtol=1e-4, atol=1e-4)
    shrunk = scores.Mahalanobis(shrinkage=0.5).fit(x)  # shrinkage: full rank, no warning
    assert shrunk.rank == 128


def test_fewer_samples_than_dimensions_decomposes_the_sample_gram_and_matches_the_pseudo_inverse(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    n, d, k = 60, 300, 4
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.1 + 5.0  # correlated, off-centre
    y = rng.integers(0, k, n)
    q = rng.normal(size=(7, d)) + 5.0
    sizes = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda m: sizes.append(m.shape) or eigh(m))
    with pytest.warns(RuntimeWarning, match="rank 56"):
        det = scores.Mahalanobis(class_conditional=True).fit(torch.from_numpy(x), torch.from_numpy(y))
    assert sizes == [(n, n)]  # the N x N problem, never the D x D covariance
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    prec = np.linalg.pinv(np.cov((x - means[y]).T, bias=True), rcond=d * np.finfo(np.float64).eps, hermitian=True)
    want = np.min([np.einsum("nd,de,ne->n", q - m, prec, q - m) for m in means], axis=0)
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), want, rtol=1e-4)
    assert det.rank == n - k
    # shrinkage is a full-rank estimate: the D x D path
    scores.Mahalanobis(shrinkage=0.1).fit(torch.from_numpy(x))
    assert sizes[-1] == (d, d)


def test_degenerate_fits_are_errors() -> None:
    with pytest.raises(ValueError, match=r"1 sample\(s\) for 1 mean"):
        scores.Mahalanobis().fit(torch.randn(1, 8))
    with pytest.raises(ValueError, match="no variance"):
        scores.Mahalanobis().fit(torch.full((100, 8), 3.0))
    with pytest.raises(ValueError, match="no features"):
        scores.Mahalanobis().fit(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="no features"):
        scores.KNN().fit(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="100 features but 99 labels"):
        scores.Mahalanobis(class_conditional=True).fit(torch.randn(100, 8), torch.zeros(99))
    det = scores.Mahalanobis().fit(torch.randn(200, 128))
    with pytest.raises(ValueError, match="fitted on D=128 features, got D=64"):
        det.score(torch.randn(5, 64))
    knn = scores.KNN(k=3).fit(torch.randn(20, 16))
    with pytest.raises(ValueError, match="fitted on D=16 features, got D=8"):
        knn.score(torch.randn(5, 8))


def test_knn_matches_sklearn() -> None:
    x, _ = _features()
    q = _features(seed=3)[0]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dist, _ = NearestNeighbors(n_neighbors=7).fit(xn).kneighbors(qn)
    ref = -(1 - dist[:, -1] ** 2 / 2)  # euclidean on the sphere -> cosine similarity
    got = scores.KNN(k=7).fit(torch.from_numpy(x)).score(torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_vim_matches_numpy() -> None:
    x, _ = _features(d=12)
    q = _features(d=12, seed=4)[0]
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(4, 12)), rng.normal(size=4)
    u = -np.linalg.pinv(w) @ b
    evals, evecs = np.linalg.eigh((x - u).T @ (x - u) / len(x))  # centred at u, as ViM's code
    ns = evecs[:, np.argsort(evals)[:6]]  # D - dim smallest, dim = 6
    alpha = (x @ w.T + b).max(1).mean() / np.linalg.norm((x - u) @ ns, axis=1).mean()
    ref = alpha * np.linalg.norm((q - u) @ ns, axis=1) - logsumexp(q @ w.T + b, axis=1)
    det = scores.ViM(torch.from_numpy(w), torch.from_numpy(b), dim=6).fit(torch.from_numpy(x))
    np.testing.assert_allclose(det.score(torch.from_numpy(q)).numpy(), ref, rtol=1e-3, atol=1e-3)


def test_logit_scores_match_scipy() -> None:
    logits = np.random.default_rng(0).normal(0, 3, (50, 10))
    t = torch.from_numpy(logits)
    p = softmax(logits, axis=1)
    np.testing.assert_allclose(logit_scores.msp(t).numpy(), -p.max(1), rtol=1e-5)
    np.testing.assert_allclose(logit_scores.msp(t, 2.0).numpy(), -softmax(logits / 2, axis=1).max(1), rtol=1e-5)
    np.testing.assert_allclose(logit_scores.max_logit(t).numpy(), -logits.max(1), rtol=1e-5)
    np.testing.assert_allclose(logit_scores.energy(t).numpy(), -logsumexp(logits, axis=1), rtol=1e-5)
    np.testing.assert_allclose(logit_scores.entropy(t).numpy(), -(p * np.log(p)).sum(1), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        logit_scores.msp(torch.zeros(5))


def test_odin_zero_step_is_tempered_msp_and_step_raises_confidence() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.randn(20, 1, 4, 4)
    with torch.no_grad():
        ref = logit_scores.msp(model(x), 10.0)
    torch.testing.assert_close(logit_scores.odin(model, x, temperature=10.0, epsilon=0.0), ref)
    assert (logit_scores.odin(model, x, temperature=10.0, epsilon=0.05) <= ref + 1e-7).all()


def test_toy_separable_problem() -> None:
    rng = np.random.default_rng(0)
    centre_id, centre_ood = np.r_[np.full(16, 2.0), np.zeros(16)], np.r_[np.zeros(16), np.full(16, 2.0)]
    train = torch.from_numpy(rng.normal(0, 1, (2000, 32)) + centre_id)
    id_test = torch.from_numpy(rng.normal(0, 1, (500, 32)) + centre_id)
    ood = torch.from_numpy(rng.normal(0, 1, (500, 32)) + centre_ood)
    for det in (scores.Mahalanobis(), scores.KNN(k=10)):
        det.fit(train)
        assert auroc(det.score(id_test).numpy(), det.score(ood).numpy()) > 0.95


def test_bad_features_and_unfitted() -> None:
    with pytest.raises(ValueError, match="NaN/inf"):
        scores.Mahalanobis().fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        scores.KNN().fit(torch.zeros(10))
    with pytest.raises(RuntimeError, match="not fitted"):
        scores.Mahalanobis().score(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="needs labels"):
        scores.Mahalanobis(class_conditional=True).fit(torch.randn(10, 2))
    with pytest.raises(ValueError, match="valid: mahalanobis, mahalanobis_cc, knn"):
        scores.get_score("lof")
    with pytest.raises(ValueError, match=r"no hyperparameter\(s\) \['kk'\]; valid: k=50"):
        scores.get_score("knn").check_params({"kk": 3})


def test_registry_knows_what_each_score_needs() -> None:
    assert {s.needs for s in scores.SCORES.values()} == {"features", "logits", "model"}
    logits = torch.randn(6, 4)
    for name, spec in scores.SCORES.items():
        assert spec.name == name and set(spec.check_params(spec.params)) == set(spec.params)
        if spec.needs == "logits":
            assert spec.build(logits, **spec.params).shape == (6,)
        elif spec.needs == "features" and not spec.needs_head:
            assert isinstance(spec.build(**spec.params), scores.Detector)


def test_knn_l2_is_the_euclidean_distance_to_the_kth_neighbour() -> None:
    x, _ = _features()
    q = _features(seed=4)[0]
    dist, _ = NearestNeighbors(n_neighbors=3).fit(x).kneighbors(q)
    got = scores.KNN(k=3, metric="l2").fit(torch.from_numpy(x)).score(torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(got, dist[:, -1], rtol=1e-4)
    with pytest.raises(ValueError, match="metric must be"):
        scores.KNN(metric="manhattan")
