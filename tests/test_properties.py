"""Property-based tests (hypothesis) of the public API's input checks and invariances.

For any input, ``sensitivity_sample``, ``SensitivitySampler``, ``Selection.estimate_total``
and the baselines either raise a ``ValueError``/``TypeError`` whose message starts with the
argument's name, or return a valid Selection: indices in range, weights finite and > 0,
probabilities in (0, 1] that follow the documented formula (and sum to 1 over the pool),
the same result for the same seed, and the same result whatever the dtype, memory layout
or power-of-two scale of the same numbers.

The examples per test come from the hypothesis profile (tests/conftest.py): "ci" (few,
derandomized) by default, "thorough" in ``make test-all``. The bugs these tests found are
kept below as examples (all fixed on main now; an open one would be an
``xfail(strict=True)``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import coreselect as cs
from coreselect.baselines import (
    entropy,
    k_center_greedy,
    least_confidence,
    leverage_sample,
    leverage_scores,
    margin,
    uniform,
)

FLOATS = (np.float64, np.float32, np.float16)
INTS = (np.int8, np.int32, np.int64, np.uint8)
DTYPES = (*FLOATS, *INTS, np.bool_)


# --------------------------------------------------------------------------- strategies
@st.composite
def base_rows(draw, max_n=24, max_d=4, repeats=True):
    """A float64 (n, d) matrix with repeated rows (n rows drawn from m <= n distinct ones)."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    m = draw(st.integers(1, n)) if repeats else n
    distinct = draw(hnp.arrays(np.float64, (m, d), elements=st.floats(-100, 100, width=32),
                               unique=not repeats))  # (all entries distinct: rows too)
    rows = draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    return distinct[rows]


def cast(X, dtype):
    """The numbers of X in dtype (rounded and clipped for integers, sign for bool)."""
    if dtype is np.bool_:
        return X > 0
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(X), info.min, info.max).astype(dtype)
    return X.astype(dtype)


def layout(X, kind):
    """The same logical array in another memory layout."""
    if kind == "C":
        return np.ascontiguousarray(X)
    if kind == "F":
        return np.asfortranarray(X)
    if kind == "strided":  # every other column of a wider array: neither C nor F contiguous
        wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
        wide[:, ::2] = X
        return wide[:, ::2]
    if kind == "reversed":  # negative row stride
        return np.ascontiguousarray(X[::-1])[::-1]
    if kind == "readonly":
        out = X.copy()
        out.flags.writeable = False
        return out
    raise AssertionError(kind)


LAYOUTS = ("C", "F", "strided", "reversed", "readonly")


@st.composite
def embeddings(draw):
    """(X, reference): X in some dtype and layout, and the C-contiguous array of the dtype
    coreselect computes in (float64 for bool and integers, float32 for float16)."""
    X = draw(base_rows())
    dtype = draw(st.sampled_from(DTYPES))
    if dtype in (np.float64, np.float32):
        X = np.ldexp(X, draw(st.integers(-60, 60)))  # tiny to huge, exact powers of two
    X = cast(X, dtype)
    ref_dtype = {np.float16: np.float32, np.float32: np.float32}.get(dtype, np.float64)
    return layout(X, draw(st.sampled_from(LAYOUTS))), np.ascontiguousarray(X, dtype=ref_dtype)


def losses_for(n):
    """Losses >= 0 for n rows: zeros, ties, tiny and large values."""
    return hnp.arrays(np.float64, n, elements=st.one_of(
        st.just(0.0), st.floats(0, 1e6), st.floats(1e-300, 1e-290)))


# ---------------------------------------------------------------------------- checks
ALLOWED_WARNINGS = (
    (UserWarning, r"distinct centers could be placed"),  # fewer distinct rows than k
    (RuntimeWarning, r"falling back to uniform sampling"),  # total mass 0 (documented)
)


def call(fn, *args, **kwargs):
    """Call fn; fail on any warning but the documented ones; return (result, messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    messages = []
    for w in caught:
        ok = any(issubclass(w.category, cat) and re.search(pat, str(w.message))
                 for cat, pat in ALLOWED_WARNINGS)
        assert ok, f"unexpected {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        messages.append(str(w.message))
    return out, messages


def check_selection(sel, n, size, replace):
    """The invariants every Selection of a pool of n rows satisfies."""
    assert isinstance(sel, cs.Selection)
    # the stratified design (design="auto" may pick it) draws without replacement and lists
    # the queried rows (one per cluster) before the size new rows
    if sel.params.get("design") == "stratified":
        replace = False
    size += int(sel.params.get("queried_in_sample", 0))
    assert sel.n == n and sel.size == size and sel.replace == replace
    assert sel.indices.dtype == np.int64 and sel.weights.dtype == np.float64
    assert np.all((sel.indices >= 0) & (sel.indices < n))
    assert np.all(np.isfinite(sel.weights)) and np.all(sel.weights > 0)
    assert np.all(np.isfinite(sel.probabilities))
    assert np.all((sel.probabilities > 0) & (sel.probabilities <= 1 + 1e-12))
    if not replace:
        assert np.unique(sel.indices).shape[0] == size


def same_selection(a, b):
    for name in ("indices", "weights", "probabilities", "centers", "query_indices",
                 "query_losses", "cluster_sizes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def check_clear_error(exc, *names):
    """A ValueError or TypeError whose message starts with one of ``names``."""
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)
    assert str(exc).startswith(names), str(exc)


def n_distinct(X):
    return np.unique(np.asarray(X, dtype=np.float64), axis=0).shape[0]


# ----------------------------------------------------------------- sensitivity_sample
@st.composite
def sampling_problems(draw):
    X, ref = draw(embeddings())
    n = X.shape[0]
    replace = draw(st.booleans())
    return dict(
        X=X, ref=ref, loss=draw(losses_for(n)), n_clusters=draw(st.integers(1, n)),
        size=draw(st.integers(1, 3 * n if replace else n)), replace=replace,
        z=draw(st.sampled_from([1.0, 1.5, 2.0])),
        lam=draw(st.one_of(st.just("auto"), st.floats(0, 1e3))),
        mix=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])), seed=draw(st.integers(0, 2**32)),
    )


def run_sample(prob, X=None, seed=None):
    loss = prob["loss"]
    kw = {k: prob[k] for k in ("n_clusters", "replace", "z", "lam", "mix")}
    return call(cs.sensitivity_sample, prob["X"] if X is None else X, loss.__getitem__,
                prob["size"], seed=prob["seed"] if seed is None else seed, **kw)


@given(sampling_problems())
def test_sensitivity_sample_returns_a_valid_selection(prob):
    X, loss, n, k = prob["X"], prob["loss"], prob["X"].shape[0], prob["n_clusters"]
    note(f"X {X.dtype} {X.shape} C={X.flags.c_contiguous} F={X.flags.f_contiguous}")
    sel, messages = run_sample(prob)
    check_selection(sel, n, prob["size"], prob["replace"])
    # the queried rows (centers, sorted, or one random row per cluster): distinct rows, at
    # most k (fewer only for fewer distinct rows)
    q = sel.query_indices
    if sel.params["queries"] == "centers":
        assert np.all(np.diff(q) > 0)
    assert np.all(np.diff(np.sort(q)) > 0) and 1 <= q.shape[0] <= k and q.max() < n
    distinct = n_distinct(prob["ref"])
    assert q.shape[0] == min(k, distinct)  # never two equal vectors; no distinct one lost
    assert np.unique(prob["ref"][q], axis=0).shape[0] == q.shape[0]
    assert any("distinct centers" in m for m in messages) == (q.shape[0] < k)
    np.testing.assert_array_equal(sel.query_losses, loss[q])
    assert set(sel.centers.tolist()) <= set(q.tolist())
    assert sel.cluster_sizes.sum() == n and np.all(sel.cluster_sizes >= 1)
    if sel.replace:
        np.testing.assert_allclose(sel.weights, 1 / (prob["size"] * sel.probabilities),
                                   rtol=1e-12)
    else:
        np.testing.assert_allclose(sel.weights, 1 / sel.probabilities, rtol=1e-12)
    # the same seed, the same selection
    again, _ = run_sample(prob)
    same_selection(sel, again)


@given(sampling_problems())
def test_dtype_and_memory_layout_do_not_change_the_selection(prob):
    sel, _ = run_sample(prob)
    ref, _ = run_sample(prob, X=prob["ref"])
    same_selection(sel, ref)


@given(sampling_problems(), st.data())
def test_sampler_probabilities_follow_the_formula_and_sum_to_one(prob, data):
    X, loss = prob["X"], prob["loss"]
    sampler, _ = call(cs.SensitivitySampler(prob["n_clusters"], z=prob["z"],
                                            seed=prob["seed"], design="sensitivity").fit, X)
    n = X.shape[0]
    assert sampler.labels_.shape == (n,) and sampler.distances_.shape == (n,)
    assert np.all(sampler.distances_ >= 0) and np.all(np.isfinite(sampler.distances_))
    assert sampler.cost_ == pytest.approx(sampler.distances_.sum(), rel=1e-9, abs=0)
    np.testing.assert_array_equal(np.bincount(sampler.labels_), sampler.cluster_sizes_)
    q = sampler.query_indices_
    np.testing.assert_array_equal(sampler.distances_[q], 0.0)  # a center is its own center
    ql = loss[q]
    sel, messages = call(sampler.sample, ql, prob["size"], lam=prob["lam"], replace=True,
                         seed=data.draw(st.integers(0, 2**32)), mix=prob["mix"])
    check_selection(sel, n, prob["size"], True)
    # rebuild p over the whole pool from the fitted state and the documented formula
    lam = sel.params["lam"]
    mass = ql[sampler.labels_] + lam * sampler.distances_
    if mass.sum() > 0:
        p = mass / mass.sum()
        p = prob["mix"] / n + (1 - prob["mix"]) * p
        assert not messages or all("distinct" in m for m in messages)
    else:
        p = np.full(n, 1 / n)
        assert any("uniform" in m for m in messages)
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-9)
    if prob["lam"] == "auto" and sampler.cost_ > 0 and ql @ sampler.cluster_sizes_ > 0:
        assert lam == pytest.approx(ql @ sampler.cluster_sizes_ / sampler.cost_, rel=1e-12)


@given(base_rows(), st.integers(-400, 400), st.sampled_from([1.0, 2.0]),
       st.integers(0, 1000))
def test_a_power_of_two_scale_changes_nothing(X, e, z, seed):
    # rescaling by 2**e is exact in floating point: the clustering, lam="auto" * v and so the
    # whole selection must be bit for bit the same, far beyond float32's range (the seeding
    # and the assignment rescale by powers of two themselves)
    check_scale_invariance(X, e, z, seed)


def check_scale_invariance(X, e, z, seed):
    loss = np.abs(X[:, 0]) + 1.0
    k = min(3, X.shape[0])
    ref, _ = call(cs.sensitivity_sample, X, loss.__getitem__, 7, n_clusters=k, z=z, seed=seed)
    got, _ = call(cs.sensitivity_sample, np.ldexp(X, e), loss.__getitem__, 7, n_clusters=k,
                  z=z, seed=seed)
    same_selection(got, ref)


@given(base_rows(), st.sampled_from(FLOATS), st.sampled_from(LAYOUTS), st.data())
def test_nan_and_inf_are_refused_naming_the_first_position(X, dtype, kind, data):
    X = X.astype(dtype)
    cells = data.draw(st.lists(st.tuples(st.integers(0, X.shape[0] - 1),
                                         st.integers(0, X.shape[1] - 1)), min_size=1,
                               max_size=4))
    values = data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=len(cells),
                                max_size=len(cells)))
    for (r, c), v in zip(cells, values, strict=True):
        X[r, c] = v
    X = layout(X, kind)
    row, col = np.argwhere(~np.isfinite(X))[0]
    what = "NaN" if np.isnan(X[row, col]) else "inf"
    with pytest.raises(ValueError) as info:
        cs.sensitivity_sample(X, lambda i: np.ones(len(i)), 3, n_clusters=1, seed=0)
    assert str(info.value).startswith(f"X contains {what} at row {row}, column {col};")
    with pytest.raises(ValueError, match=rf"^X contains {what} at row {row}, column {col};"):
        cs.SensitivitySampler(1, seed=0).fit(X)


BAD_ARGUMENTS = {
    "n_clusters": [0, -1, 10**6, 2.5, "3", None, float("nan"), float("inf"), True],
    "size": [0, -3, 2.5, "10", None, float("inf"), True],
    "z": [0.5, 0.0, -1.0, float("nan"), float("inf"), "2", None, np.bool_(True)],
    "lam": [-1.0, float("nan"), float("inf"), "big", None, [1.0], True],
    "seed": [-1, 2.5, "x", [1, 2], True],
    "mix": [-0.1, 1.5, float("nan"), "0.1", None, True],
    "batch_size": [0, -2, 1.5, "4"],
}


@given(base_rows(max_n=12), st.data())
def test_bad_arguments_get_an_error_naming_them(X, data):
    name = data.draw(st.sampled_from(sorted(BAD_ARGUMENTS)))
    value = data.draw(st.sampled_from(BAD_ARGUMENTS[name]))
    kw = dict(n_clusters=1, seed=0, replace=data.draw(st.booleans()))
    kw[name] = value
    size = kw.pop("size", 1)
    with pytest.raises((ValueError, TypeError)) as info:
        cs.sensitivity_sample(X, lambda i: np.ones(len(i)), size, **kw)
    check_clear_error(info.value, name)


@given(st.sampled_from([
    np.zeros(5), np.zeros((2, 3, 1)), np.zeros((0, 3)), np.zeros((4, 0)),
    np.array([["a", "b"], ["c", "d"]]), np.ones((3, 2), dtype=complex),
    np.array([[1, None]], dtype=object), None, 3.0,
]))
def test_bad_embeddings_get_an_error_naming_x(X):
    with pytest.raises((ValueError, TypeError)) as info:
        cs.sensitivity_sample(X, lambda i: np.ones(len(i)), 2, n_clusters=1, seed=0)
    check_clear_error(info.value, "X")


@given(base_rows(max_n=12), st.integers(1, 12))
def test_size_above_n_without_replacement(X, extra):
    n = X.shape[0]
    with pytest.raises(ValueError, match=rf"^size must be at most n={n} when replace=False"):
        cs.sensitivity_sample(X, lambda i: np.ones(len(i)), n + extra, n_clusters=1,
                              replace=False, seed=0)
    sel, _ = call(cs.sensitivity_sample, X, lambda i: np.ones(len(i)), n + extra,
                  n_clusters=1, replace=True, seed=0)
    check_selection(sel, n, n + extra, True)


# -------------------------------------------------------------------- estimate_total
@st.composite
def selections_with_losses(draw):
    X = draw(base_rows())
    n = X.shape[0]
    replace = draw(st.booleans())
    size = draw(st.integers(1, 2 * n if replace else n))
    loss = draw(losses_for(n))
    kind = draw(st.sampled_from(["sensitivity", "uniform", "leverage"]))
    if kind == "sensitivity":
        sel, _ = call(cs.sensitivity_sample, X, loss.__getitem__, size,
                      n_clusters=draw(st.integers(1, n)), replace=replace, seed=0)
    elif kind == "uniform":
        sel = uniform(n, size, replace=replace, seed=0)
    else:
        assume(np.any(X != 0))
        sel = leverage_sample(X, size, replace=replace, seed=0)
    return sel, loss


def _lone_single_stratum(sel):
    """A stratified selection whose variance cannot be estimated: one stratum holds one draw
    out of several rows and no other stratum with one draw can be paired with it."""
    if sel.params.get("design") != "stratified":
        return False
    strata, counts = np.unique(sel.centers, return_counts=True)
    sizes = np.array([sel.weights[sel.centers == h].sum() for h in strata])
    return int(np.sum((counts == 1) & (sizes > 1 + 1e-9))) == 1


@given(selections_with_losses(), st.floats(1e-3, 1e3), st.floats(0.01, 0.99))
def test_estimate_total_is_linear_and_its_interval_holds_the_value(case, factor, confidence):
    sel, loss = case
    est = sel.estimate_total(loss[sel.indices], confidence=confidence)
    assert np.isfinite(est.value) and est.value >= 0 and est.confidence == confidence
    if sel.size == 1 or _lone_single_stratum(sel):
        assert np.isnan(est.stderr)
    else:
        assert est.stderr >= 0
        assert est.ci_low <= est.value <= est.ci_high
    # the queried rows' known losses (drawn without replacement, they are not drawn again)
    known = sel.params.get("known_total", 0.0)
    scaled = sel.estimate_total(factor * loss[sel.indices], confidence=confidence)
    assert scaled.value - known == pytest.approx(factor * (est.value - known), rel=1e-9,
                                                 abs=1e-300)
    # the pool's losses give the same estimate as the sample's (when they can be told apart)
    if sel.size != sel.n:
        assert sel.estimate_total(loss).value == est.value
    mean = sel.estimate_mean(loss[sel.indices], confidence=confidence)
    covered = sel.params.get("n_covered", sel.n)
    assert mean.value == pytest.approx(est.value / covered, rel=1e-12, abs=1e-300)
    # unit losses estimate sum(weights), the (estimated) pool size
    ones = sel.estimate_total(np.ones(sel.size))
    assert ones.value == pytest.approx(known + sel.weights.sum(), rel=1e-12)
    if sel.query_indices.shape[0] and sel.cluster_sizes.sum() > 0:
        diff = sel.estimate_total(loss[sel.indices], method="difference")
        assert np.isfinite(diff.value)
        # the difference estimator is exact for a loss that is constant per cluster
        center_loss = np.zeros(sel.n)
        center_loss[sel.query_indices] = sel.query_losses
        exact = sel.estimate_total(center_loss[sel.centers], method="difference")
        assert exact.value == pytest.approx(sel.query_losses @ sel.cluster_sizes, rel=1e-9)


@given(selections_with_losses(), st.data())
def test_estimate_total_refuses_bad_losses_naming_the_index(case, data):
    sel, loss = case
    y = loss[sel.indices].copy()
    pos = data.draw(st.integers(0, sel.size - 1))
    bad = data.draw(st.sampled_from([np.nan, np.inf, -1.0, -1e-300]))
    y[pos] = bad
    first = int(np.flatnonzero(~np.isfinite(y) | (y < 0))[0])
    with pytest.raises(ValueError) as info:
        sel.estimate_total(y)
    assert str(info.value).startswith(f"losses: {y[first]} for index {sel.indices[first]};")
    known = int(sel.params.get("queried_in_sample", 0))
    ok = (sel.size, sel.n, sel.size - known) if known else (sel.size, sel.n)
    wrong = data.draw(st.integers(0, 3 * sel.size).filter(lambda m: m not in ok))
    message = (rf"^losses: {wrong} values; expected {sel.size} \(one per selected row\)"
               if known else rf"^losses: {wrong} values for {sel.size} indices")
    with pytest.raises(ValueError, match=message):
        sel.estimate_total(np.ones(wrong))
    conf = data.draw(st.sampled_from([0.0, 1.0, -0.1, 2.0, float("nan")]))
    with pytest.raises(ValueError, match=r"^confidence must lie in \(0, 1\)"):
        sel.estimate_total(loss[sel.indices], confidence=conf)


# --------------------------------------------------------------------------- baselines
@given(st.integers(1, 60), st.data())
def test_uniform_is_valid_and_exact(n, data):
    replace = data.draw(st.booleans())
    size = data.draw(st.integers(1, 3 * n if replace else n))
    seed = data.draw(st.integers(0, 2**32))
    sel = uniform(n, size, replace=replace, seed=seed)
    check_selection(sel, n, size, replace)
    np.testing.assert_allclose(sel.weights, n / size)
    np.testing.assert_allclose(sel.probabilities, 1 / n if replace else size / n)
    same_selection(sel, uniform(n, size, replace=replace, seed=seed))
    with pytest.raises(ValueError) as info:
        uniform(n, n + data.draw(st.integers(1, 5)), replace=False)
    check_clear_error(info.value, "size")
    bad_n = data.draw(st.sampled_from([0, -1, 2.5, "3", None]))
    with pytest.raises((ValueError, TypeError)) as info:
        uniform(bad_n, 1)
    check_clear_error(info.value, "n")


@given(embeddings(), st.data())
def test_k_center_greedy_is_valid_and_layout_free(case, data):
    X, ref = case
    n = X.shape[0]
    size = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 1000))
    sel, _ = call(k_center_greedy, X, size, seed=seed)
    check_selection(sel, n, size, False)
    same_selection(sel, call(k_center_greedy, ref, size, seed=seed)[0])
    with pytest.raises(ValueError) as info:
        k_center_greedy(X, n + 1)
    check_clear_error(info.value, "size")


@st.composite
def class_probabilities(draw):
    n = draw(st.integers(1, 30))
    c = draw(st.integers(2, 5))
    logits = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-30, 30)))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return layout(p.astype(dtype), draw(st.sampled_from(LAYOUTS)))


@given(class_probabilities(), st.sampled_from([margin, least_confidence, entropy]), st.data())
def test_uncertainty_baselines_are_valid(probs, strategy, data):
    n = probs.shape[0]
    size = data.draw(st.integers(1, n))
    sel = strategy(probs, size, seed=0)
    check_selection(sel, n, size, False)
    same_selection(sel, strategy(np.ascontiguousarray(probs), size, seed=0))
    bad = probs.astype(np.float64)
    r = data.draw(st.integers(0, n - 1))
    bad[r, 0] = data.draw(st.sampled_from([np.nan, 2.0, -0.5]))
    with pytest.raises(ValueError) as info:
        strategy(bad, size)
    check_clear_error(info.value, "probs")
    assert f"row {r}" in str(info.value)


@given(base_rows(), st.booleans(), st.data())
def test_leverage_sample_is_valid(A, replace, data):
    assume(np.any(A != 0))
    n = A.shape[0]
    size = data.draw(st.integers(1, 2 * n if replace else n))
    seed = data.draw(st.integers(0, 2**32))
    sel, _ = call(leverage_sample, A, size, replace=replace, seed=seed)
    check_selection(sel, n, size, replace)
    if replace:
        h = leverage_scores(A)
        np.testing.assert_allclose(sel.probabilities, h[sel.indices] / h.sum(), rtol=1e-9)
    same_selection(sel, leverage_sample(A, size, replace=replace, seed=seed))


# ------------------------------------------------------------- found by the tests above
# Each failed before main's fed3163 (and 3867b51 for the equal rows); kept as examples.
@pytest.mark.parametrize("e", [200, -200, -160, 500, -480])
def test_power_of_two_scale_beyond_float32(e):
    # was: the seeding's rescale factor came from the float32 copy of X (inf or 0), one
    # center was placed and 'overflow encountered in cast' was raised
    X = np.random.default_rng(0).normal(size=(30, 3))
    check_scale_invariance(X, e, 2.0, 0)


def test_power_of_two_scale_beyond_2_40():
    # was: the seeding rescaled by max|X| itself, not a power of two, so X * 2**34 was seeded
    # otherwise than X (found by hypothesis)
    X = np.array([[0.0, 26.0, 0.0, 0.0]] * 7 + [[0.0, 0.0, 0.0, 0.0], [-85.0, 0.0, 0.0, 0.0],
                                                [26.0, 0.0, 0.0, 0.0], [-59.5, 0.0, 0.0, 0.0]])
    check_scale_invariance(X, 34, 1.0, 0)


@pytest.mark.parametrize("fn", ["sample", "fit"])
def test_overflowing_distances_are_a_value_error_naming_x(fn):
    # was: "TypeError: Value after * must be an iterable, not NoneType" from the fit
    X = np.ldexp(np.random.default_rng(0).normal(size=(30, 3)), 510)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError) as info:
            if fn == "fit":
                cs.SensitivitySampler(4, seed=0).fit(X)
            else:
                cs.sensitivity_sample(X, np.ones(30).__getitem__, 10, n_clusters=4, seed=0)
    check_clear_error(info.value, "X")


def test_tiny_embeddings_give_a_valid_selection():
    # was: Phi underflowed, lam='auto' overflowed, and "the sampling mass is not finite; are
    # the losses or distances huge?" (fixed in fed3163); then the diagnostics' Hoelder ratios
    # overflowed with a RuntimeWarning (fixed in f949a44)
    X = np.ldexp(np.random.default_rng(0).normal(size=(30, 3)), -520)
    loss = np.random.default_rng(1).random(30) + 0.5
    sel, _ = call(cs.sensitivity_sample, X, loss.__getitem__, 10, n_clusters=4, seed=0,
                  design="sensitivity")
    check_selection(sel, 30, 10, True)
    assert sel.params["lam"] == 0.0 and "negligible" in sel.params["lam_rule"]


@pytest.mark.parametrize("call_", [
    pytest.param(lambda X: cs.sensitivity_sample(X, np.ones(12).__getitem__, True,
                                                 n_clusters=2, seed=0), id="size=True"),
    pytest.param(lambda X: cs.sensitivity_sample(X, np.ones(12).__getitem__, 3,
                                                 n_clusters=True, seed=0), id="n_clusters=True"),
    pytest.param(lambda X: uniform(True, 1, seed=0), id="uniform-n=True"),
])
def test_python_bool_is_not_an_int(call_):
    # was: check_positive_int took True for 1 (bool is a numbers.Real with an integral float)
    X = np.random.default_rng(0).normal(size=(12, 2))
    with pytest.raises(TypeError, match=r"^(size|n_clusters|n) must be an int .*got bool True"):
        call_(X)


def test_numpy_bool_is_not_an_int():
    X = np.random.default_rng(0).normal(size=(12, 2))
    with pytest.raises(TypeError, match=r"^size must be an int"):
        cs.sensitivity_sample(X, np.ones(12).__getitem__, np.True_, n_clusters=2, seed=0)
    with pytest.raises(TypeError, match=r"^n_clusters must be an int"):
        cs.sensitivity_sample(X, np.ones(12).__getitem__, 3, n_clusters=np.True_, seed=0)


def test_fit_warning_points_at_the_caller():
    # pointed at coreselect/sampler.py before main's 8e9a2ac
    with pytest.warns(UserWarning, match="distinct centers") as rec:
        cs.SensitivitySampler(3, seed=0).fit(np.ones((10, 2)))
    assert rec[0].filename == __file__, rec[0].filename
