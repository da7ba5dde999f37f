"""BADGE: factored gradient distances against explicit gradient embeddings, the seeding
against a textbook k-means++ on the explicit embeddings, exclusion, memory and errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from coreselect.baselines import badge
from coreselect.baselines.badge import _GradientDistances


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def explicit_embeddings(probs, H):
    a = probs.copy()
    a[np.arange(len(a)), probs.argmax(axis=1)] -= 1.0
    return np.stack([np.kron(a[i], H[i]) for i in range(len(a))])


def make(n=60, C=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=(n, C)) * 2), rng.normal(size=(n, d))


def test_factored_distances_equal_explicit_ones():
    probs, H = make()
    G = explicit_embeddings(probs, H)
    grad = _GradientDistances(probs, H, chunk=7)
    np.testing.assert_allclose(grad.gnorm2, (G ** 2).sum(axis=1), rtol=1e-12)
    for j in (0, 13, 59):
        want = ((G - G[j]) ** 2).sum(axis=1)
        got = grad.to(j)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13)
        assert got[j] == 0.0


def test_hand_case_two_classes():
    # p = (0.8, 0.2) -> a = (-0.2, 0.2); p = (0.3, 0.7) -> a = (0.3, -0.3)
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    H = np.array([[1.0, 0.0], [0.0, 2.0]])
    g0 = np.array([-0.2, 0.0, 0.2, 0.0])
    g1 = np.array([0.0, 0.6, 0.0, -0.6])
    d = _GradientDistances(probs, H).to(0)
    assert d[1] == pytest.approx(((g0 - g1) ** 2).sum())


def reference_badge(probs, H, size, rng, exclude=()):
    """k-means++ on the explicit gradient embeddings, with the same random stream."""
    G = explicit_embeddings(probs, H)
    n = len(G)
    free = np.ones(n, dtype=bool)
    free[list(exclude)] = False
    j = int(np.argmax(np.where(free, (G ** 2).sum(axis=1), -1.0)))
    picks = [j]
    mind = ((G - G[j]) ** 2).sum(axis=1)
    mind[~free] = 0.0
    mind[j] = 0.0
    for _ in range(size - 1):
        cdf = np.cumsum(mind)
        j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        picks.append(j)
        mind = np.minimum(mind, ((G - G[j]) ** 2).sum(axis=1))
        mind[j] = 0.0
    return picks


@pytest.mark.parametrize("seed", range(4))
def test_matches_kmeanspp_on_explicit_embeddings(seed):
    probs, H = make(n=80, C=3, d=4, seed=seed)
    sel = badge(probs, H, 12, seed=seed)
    assert sel.indices.tolist() == reference_badge(probs, H, 12, np.random.default_rng(seed))
    ex = [int(sel.indices[0]), 5]
    sel = badge(probs, H, 12, seed=seed, exclude=ex)
    assert sel.indices.tolist() == reference_badge(probs, H, 12, np.random.default_rng(seed),
                                                   exclude=ex)
    assert not set(ex) & set(sel.indices.tolist())


def test_first_row_has_the_largest_gradient_norm():
    probs, H = make(n=50)
    G = explicit_embeddings(probs, H)
    sel = badge(probs, H, 1, seed=0)
    assert sel.indices[0] == np.argmax((G ** 2).sum(axis=1))
    firsts = {int(badge(probs, H, 1, seed=s, first="random").indices[0]) for s in range(20)}
    assert len(firsts) > 5


def test_selection_fields_and_determinism():
    probs, H = make(n=100)
    sel = badge(probs, H.astype(np.float32), 20, seed=3)
    assert sel.method == "badge" and sel.n == 100 and not sel.replace
    assert len(set(sel.indices.tolist())) == 20
    np.testing.assert_allclose(sel.weights, 5.0)
    np.testing.assert_allclose(sel.probabilities, 0.2)
    assert sel.indices.tolist() == badge(probs, H.astype(np.float32), 20, seed=3).indices.tolist()


def test_confident_duplicates_fall_back_to_uniform_and_never_repeat():
    # one-hot probabilities: every gradient embedding is zero
    probs = np.eye(3)[np.arange(12) % 3]
    H = np.ones((12, 2))
    sel = badge(probs, H, 12, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(12))
    assert sel.diagnostics["uniform_fallbacks"] == 11


def test_memory_never_forms_gradient_embeddings():
    n, C, d = 4000, 20, 64
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(n, C))).astype(np.float32)
    H = rng.normal(size=(n, d)).astype(np.float32)
    tracemalloc.start()
    badge(probs, H, 30, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * C * d * 4 / 5  # the explicit float32 embeddings: 20.5 MB
    assert peak < 80 * n + 6 * 2**20


def test_errors():
    probs, H = make(n=10)
    with pytest.raises(ValueError, match="embeddings must have one row per row of probs"):
        badge(probs, H[:9], 2)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        badge(probs * 0.9, H, 2)
    with pytest.raises(ValueError, match="embeddings contains NaN at row 0"):
        badge(probs, np.full_like(H, np.nan), 2)
    with pytest.raises(ValueError, match="size must be at most n=8"):
        badge(probs, H, 9, exclude=[0, 1])
    with pytest.raises(ValueError, match="first must be one of"):
        badge(probs, H, 2, first="max")
