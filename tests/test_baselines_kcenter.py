"""k-center greedy: exactness against a brute-force reference, the 2-approximation, chunking,
labelled rows, the robust variant, memory and errors."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from coreselect import Selection
from coreselect.baselines import k_center_greedy
from coreselect.baselines.kcenter import _MinDistance, _pick


def reference(X, size, *, initial=(), first=None, outliers=0):
    """Textbook greedy with a full distance vector per step (float64, exact)."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    mind = np.full(n, np.inf)
    chosen = list(initial)
    for j in chosen:
        mind = np.minimum(mind, ((X - X[j]) ** 2).sum(axis=1))
    picks = []
    for t in range(size):
        mind[chosen + picks] = -1.0
        if t == 0 and not chosen:
            j = first
        else:
            order = np.lexsort((np.arange(n), -mind))  # by distance, then smallest index
            j = int(order[outliers])
        picks.append(j)
        mind = np.minimum(mind, ((X - X[j]) ** 2).sum(axis=1))
    return picks


def radius(X, centers):
    X = np.asarray(X, dtype=np.float64)
    d = ((X[:, None, :] - X[None, list(centers), :]) ** 2).sum(axis=2)
    return float(np.sqrt(d.min(axis=1).max()))


def test_hand_case_with_initial():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    sel = k_center_greedy(X, 3, initial=[0])
    # 11 is farthest from 0; then 2 (distance 2 to 0); then 1 or 10 (both at 1): smallest index
    assert sel.indices.tolist() == [4, 2, 1]
    assert sel.diagnostics["pick_distances"] == [11.0, 2.0, 1.0]
    assert sel.diagnostics["initial_radius"] == 11.0
    assert sel.diagnostics["radius"] == 1.0
    assert isinstance(sel, Selection) and sel.method == "kcenter" and sel.n == 5
    np.testing.assert_allclose(sel.weights, 4 / 3)
    np.testing.assert_allclose(sel.probabilities, 3 / 4)


def test_initial_counts_as_centers_and_is_never_selected():
    # without the labelled row at 100, the greedy would go there first
    X = np.array([[0.0], [1.0], [50.0], [100.0], [99.0]])
    sel = k_center_greedy(X, 2, initial=[3, 4])
    assert sel.indices.tolist() == [0, 2]  # 0 is farthest from {100, 99}; then 50
    sel = k_center_greedy(X, 3, initial=[3, 4])
    assert set(sel.indices.tolist()) == {0, 1, 2}
    # with every other row labelled the last free row is selected
    assert k_center_greedy(X, 1, initial=[0, 1, 2, 3]).indices.tolist() == [4]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_initial", [0, 1, 3, 40, 270])
def test_matches_brute_force_reference(dtype, n_initial):
    rng = np.random.default_rng(n_initial)
    X = rng.normal(size=(300, 6)).astype(dtype)
    initial = rng.choice(300, size=n_initial, replace=False).tolist()
    sel = k_center_greedy(X, 25, initial=initial or None, seed=5)
    ref = reference(X, 25, initial=sorted(initial), first=int(sel.indices[0]))
    assert sel.indices.tolist() == ref
    all_centers = sorted(initial) + ref
    assert sel.diagnostics["radius"] == pytest.approx(radius(X, all_centers), rel=1e-12)
    if n_initial == 0:
        assert sel.indices[0] == k_center_greedy(X, 1, seed=5).indices[0]


def test_large_offset_float32_stays_exact():
    # norms far larger than the distances: the GEMV bound must not drop a row that moves
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(400, 16)) + 3e3).astype(np.float32)
    sel = k_center_greedy(X, 30, seed=2)
    assert sel.indices.tolist() == reference(X, 30, first=int(sel.indices[0]))


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunk_size_does_not_change_the_sequence(chunk_size):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 5))
    base = k_center_greedy(X, 40, initial=[1, 2], seed=0)
    got = k_center_greedy(X, 40, initial=[1, 2], seed=0, chunk_size=chunk_size)
    assert got.indices.tolist() == base.indices.tolist()
    assert got.diagnostics == base.diagnostics


def test_min_distance_state_is_exact_float64():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 7)).astype(np.float32)
    state = _MinDistance(X, 16)
    for j in (3, 50, 199):
        state.add(j)
    x64 = X.astype(np.float64)
    want = np.min([((x64 - x64[j]) ** 2).sum(axis=1) for j in (3, 50, 199)], axis=0)
    np.testing.assert_allclose(state.mind, want, rtol=1e-13, atol=0)
    block = _MinDistance(X, 16)
    block.add_many(np.array([3, 50, 199]))
    np.testing.assert_array_equal(block.mind, state.mind)


def test_many_labelled_rows_with_near_ties_are_exact():
    # rows on a grid: many exact ties between labelled centers, where a float32 argmin
    # alone could pick a center that is not the nearest
    g = np.arange(30, dtype=np.float32)
    X = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2) + np.float32(1e3)
    initial = np.arange(0, X.shape[0], 3)
    state = _MinDistance(X, 50)
    state.add_many(initial)
    x64 = X.astype(np.float64)
    want = np.min([((x64 - x64[j]) ** 2).sum(axis=1) for j in initial], axis=0)
    np.testing.assert_array_equal(state.mind, want)


@pytest.mark.parametrize("seed", range(12))
def test_radius_at_most_twice_optimal(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(10, 2)) * rng.uniform(0.1, 5, size=(10, 1))
    k = 3
    sel = k_center_greedy(X, k, seed=seed)
    opt = min(radius(X, c) for c in itertools.combinations(range(10), k))
    assert sel.diagnostics["radius"] <= 2 * opt + 1e-12
    assert sel.diagnostics["radius"] == pytest.approx(radius(X, sel.indices.tolist()))
    # with labelled rows: at most twice the best radius over the labelled rows + k free ones
    initial = [int(seed % 10)]
    sel = k_center_greedy(X, 2, initial=initial)
    opt = min(radius(X, initial + list(c)) for c in itertools.combinations(range(10), 2))
    assert sel.diagnostics["radius"] <= 2 * opt + 1e-12


def test_pick_distances_do_not_increase_and_bound_the_radius():
    X = np.random.default_rng(7).normal(size=(400, 3))
    sel = k_center_greedy(X, 60, seed=1)
    dist = np.array(sel.diagnostics["pick_distances"])
    assert np.isinf(dist[0])  # the random first row had no center before it
    assert np.all(np.diff(dist[1:]) <= 0)
    assert sel.diagnostics["radius"] <= dist[-1]
    assert len(set(sel.indices.tolist())) == 60


def test_duplicates_and_selecting_everything():
    X = np.zeros((6, 2))
    X[5] = 1.0
    sel = k_center_greedy(X, 6, seed=0)
    assert sorted(sel.indices.tolist()) == list(range(6))
    sel = k_center_greedy(X, 3, initial=[0])
    assert sel.indices.tolist() == [5, 1, 2]  # then ties at distance 0: smallest index
    assert sel.diagnostics["radius"] == 0.0


def test_robust_variant_skips_outliers():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(100, 2)), [[1000.0, 1000.0]], [[-900.0, 0.0]]])
    plain = k_center_greedy(X, 5, initial=[0])
    assert {100, 101} <= set(plain.indices[:2].tolist())
    robust = k_center_greedy(X, 5, initial=[0], outliers=2)
    assert not {100, 101} & set(robust.indices.tolist())
    assert robust.indices.tolist() == reference(X, 5, initial=[0], outliers=2)
    assert robust.diagnostics["radius"] > 800
    assert robust.diagnostics["radius_excluding_outliers"] < 10


def test_pick_ties_go_to_the_smallest_index():
    mind = np.array([1.0, 3.0, 2.0, 3.0, 3.0, -1.0])
    assert _pick(mind, 0) == 1
    assert _pick(mind, 1) == 3
    assert _pick(mind, 2) == 4
    assert _pick(mind, 3) == 2


def test_memmap_input(tmp_path):
    X = np.random.default_rng(2).normal(size=(300, 4))
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    assert (k_center_greedy(mm, 10, seed=3).indices == k_center_greedy(X, 10, seed=3).indices).all()


@pytest.mark.parametrize("n_initial", [0, 300])
def test_memory_is_linear_in_n(n_initial):
    n, d, size, chunk = 50_000, 8, 200, 2_000
    X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    initial = np.arange(n_initial) * 7
    tracemalloc.start()
    k_center_greedy(X, size, initial=initial, seed=0, chunk_size=chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a (size x n) float64 distance matrix would be 80 MB; we hold O(n + chunk d)
    assert peak < 40 * n + 64 * chunk * d + 2**20


def test_seed_only_changes_the_first_row():
    X = np.random.default_rng(0).normal(size=(200, 3))
    a = k_center_greedy(X, 10, seed=1)
    b = k_center_greedy(X, 10, seed=1)
    assert a.indices.tolist() == b.indices.tolist()
    c = k_center_greedy(X, 10, initial=[5], seed=1)
    d = k_center_greedy(X, 10, initial=[5], seed=2)
    assert c.indices.tolist() == d.indices.tolist()


def test_errors():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"size must be at most n - len\(initial\) = 8; got 9"):
        k_center_greedy(X, 9, initial=[0, 1])
    with pytest.raises(ValueError, match="size must be an int"):
        k_center_greedy(X, 0)
    with pytest.raises(ValueError, match=r"initial must lie in \[0, 10\); got 10"):
        k_center_greedy(X, 2, initial=[10])
    with pytest.raises(ValueError, match="initial covers all n=10 rows"):
        k_center_greedy(X, 1, initial=range(10))
    with pytest.raises(ValueError, match="outliers must be an int in"):
        k_center_greedy(X, 5, outliers=6)
    with pytest.raises(ValueError, match="chunk_size must be an int"):
        k_center_greedy(X, 5, chunk_size=0)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN at row 3"):
        k_center_greedy(bad, 2)
    with pytest.raises(TypeError, match="seed must be"):
        k_center_greedy(X, 2, seed="a")
    with pytest.raises(ValueError, match="squared distances would overflow float64"):
        k_center_greedy(X * 1e160, 2)


def test_float32_overflow_in_the_bound_still_gives_exact_distances():
    # products overflow float32 (the bound becomes inf/NaN): those rows are recomputed
    X = np.array([[3e19, 0.0], [-3e19, 0.0], [0.0, 1.0], [2.9e19, 1.0]], dtype=np.float32)
    sel = k_center_greedy(X, 3, initial=[0])
    assert sel.indices.tolist() == reference(X, 3, initial=[0])
