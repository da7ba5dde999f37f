"""Selection and Estimate, case by hand: the tests that kill the mutants of selection.py.

Every number below is computed by hand (or by scipy for the t quantile), not read back from
the code. ``make mutation`` runs mutmut on ``src/coreselect/selection.py`` against this file
and the other fast tests (``[tool.mutmut]`` in pyproject.toml).

Surviving mutants that are equivalent (mutmut 3.8; no input a caller can give tells them
apart), by function:

- ``_frozen``: ``copy=True`` dropped (``np.array`` copies by default), ``reshape(-2)``
  (numpy reads any negative size as "the rest"), ``writeable = None`` (falsy, as False).
- ``__post_init__``: the default cluster sizes' ``np.zeros(k, dtype=np.int64)`` with the dtype
  None or dropped: ``_frozen(sizes, np.int64)`` casts them right after.
- ``estimate_total``: ``astype(np.float64)`` spelt ``astype(None)`` (None means float64).
- ``load``: ``allow_pickle=False`` spelt None or dropped (False is numpy's default and None is
  falsy); ``allow_pickle=True`` is killed by ``test_load_refuses_pickled_arrays``.
- ``_stratified_estimate``: ``census = big_n < counts * (1 + 1e-12)`` for ``<=``: a stratum
  drawn whole has ``big_n == counts`` up to rounding, below ``counts * (1 + 1e-12)`` either
  way; ``kind="STABLE"`` (numpy reads it as "stable"; ``kind=None`` and no kind are killed by
  ``test_stratified_estimate_pairs_ties_in_stratum_order``); ``if t.size % 2`` spelt
  ``if t.size / 2``: for an even number of single-draw strata it appends the last ``t`` to
  its own pair, and the group ``(a, b, b)`` gives ``3/2 * (2/3) (b - a)^2 = (b - a)^2``, what
  the pair ``(a, b)`` gives (up to rounding).

(Before this version's review the code also had redundant clips, ``minlength`` arguments and
``float("nan")`` spellings whose mutants were equivalent; they were removed rather than
explained.)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from coreselect.selection import (
    Estimate,
    Selection,
    _estimate,
    _interval,
    _stratified_estimate,
)


def t_quantile(s, confidence=0.95):
    return stats.t.ppf(0.5 + confidence / 2, s - 1)


# ---------------------------------------------------------------------------- Estimate
def test_estimate_str_and_default_confidence():
    e = Estimate(10.0, 1.0, 8.04, 11.96)
    assert e.confidence == 0.95
    assert str(e) == "10 +/- 1 (95% CI [8.04, 11.96])"
    assert str(Estimate(1234567.0, 0.12345, -1.5, 2.5, 0.9)) == \
        "1.23457e+06 +/- 0.123 (90% CI [-1.5, 2.5])"
    assert str(Estimate(1.0, 0.5, 0.0, 2.0, 0.995)).startswith("1 +/- 0.5 (100% CI")


def test_estimate_scaled_by_positive_and_negative_factors():
    e = Estimate(10.0, 2.0, 6.0, 14.0, 0.8)
    half = e.scaled(0.5)
    assert (half.value, half.stderr, half.ci_low, half.ci_high, half.confidence) == \
        (5.0, 1.0, 3.0, 7.0, 0.8)
    neg = e.scaled(-2.0)  # a negative factor flips the interval and keeps the stderr >= 0
    assert (neg.value, neg.stderr, neg.ci_low, neg.ci_high, neg.confidence) == \
        (-20.0, 4.0, -28.0, -12.0, 0.8)


# ------------------------------------------------------------------------ construction
def test_defaults_of_a_bare_selection():
    sel = Selection(indices=[3, 1], weights=[2.0, 2.5], probabilities=[0.25, 0.2], n=4)
    assert sel.indices.dtype == np.int64 and sel.weights.dtype == np.float64
    assert sel.probabilities.dtype == np.float64 and sel.centers.dtype == np.int64
    assert sel.centers.tolist() == [-1, -1]
    assert sel.query_indices.tolist() == [] and sel.query_indices.dtype == np.int64
    assert sel.query_losses.tolist() == [] and sel.query_losses.dtype == np.float64
    assert sel.cluster_sizes.tolist() == [] and sel.cluster_sizes.dtype == np.int64
    assert sel.replace is False and sel.method == "unknown"
    assert sel.params == {} and sel.diagnostics == {}
    assert sel.size == 2 and len(sel) == 2 and sel.n_queries == 0
    assert repr(sel) == "Selection(method='unknown', size=2, n=4, replace=False, queries=0)"


def test_fields_are_cast_flattened_and_frozen():
    idx = np.array([[4], [0]], dtype=np.int32)
    w = np.array([1.5, 2.5])
    sel = Selection(indices=idx, weights=w, probabilities=[0.5, 0.5], n=np.int32(6),
                    query_indices=[4], query_losses=[2], cluster_sizes=[6], replace=1,
                    method="m")
    assert sel.indices.tolist() == [4, 0] and sel.indices.shape == (2,)
    assert sel.indices.dtype == np.int64
    assert type(sel.n) is int and sel.n == 6 and sel.replace is True
    assert sel.cluster_sizes.tolist() == [6] and sel.query_losses.tolist() == [2.0]
    assert sel.n_queries == 1 and repr(sel).endswith("replace=True, queries=1)")
    # copies: the caller's arrays stay writeable and changing them changes nothing
    assert w.flags.writeable
    w[0] = 99.0
    assert sel.weights.tolist() == [1.5, 2.5]
    for name in ("indices", "weights", "probabilities", "centers", "query_indices",
                 "query_losses", "cluster_sizes"):
        arr = getattr(sel, name)
        assert not arr.flags.writeable, name
        with pytest.raises(ValueError):
            arr[...] = 0


def test_every_field_gets_its_dtype_whatever_comes():
    i32 = np.array([1, 0], dtype=np.int32)
    sel = Selection(indices=i32, weights=[2, 3], probabilities=[1, 1], n=3, centers=i32,
                    query_indices=np.array([1, 0], dtype=np.int32), query_losses=[1, 2],
                    cluster_sizes=np.array([2, 1], dtype=np.int32))
    for name, dtype in [("indices", np.int64), ("weights", np.float64),
                        ("probabilities", np.float64), ("centers", np.int64),
                        ("query_indices", np.int64), ("query_losses", np.float64),
                        ("cluster_sizes", np.int64)]:
        assert getattr(sel, name).dtype == dtype, name
    sel = Selection(indices=[0], weights=[1.0], probabilities=[1.0], n=3, query_indices=[2])
    assert sel.cluster_sizes.dtype == np.int64


def test_params_are_copied():
    params, diag = {"lam": 1.0}, {"verdict": "ok"}
    sel = Selection(indices=[0], weights=[1.0], probabilities=[1.0], n=1, params=params,
                    diagnostics=diag)
    params["lam"] = 2.0
    diag["verdict"] = "bad"
    assert sel.params == {"lam": 1.0} and sel.diagnostics == {"verdict": "ok"}
    assert type(sel.params) is dict and type(sel.diagnostics) is dict


def test_cluster_sizes_default_to_zeros_per_query():
    sel = Selection(indices=[0], weights=[1.0], probabilities=[1.0], n=3,
                    query_indices=[2, 0], query_losses=[1.0, 2.0])
    assert sel.cluster_sizes.tolist() == [0, 0]


@pytest.mark.parametrize("name, value, expected", [
    ("weights", [1.0], 2), ("probabilities", [0.1, 0.2, 0.3], 2), ("centers", [1], 2),
])
def test_per_draw_fields_must_match_the_indices(name, value, expected):
    kw = dict(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2)
    kw[name] = value
    with pytest.raises(ValueError, match=rf"^Selection\.{name} has {len(value)} entries; "
                                         rf"expected {expected}, one per selected index\.$"):
        Selection(**kw)


@pytest.mark.parametrize("name", ["query_losses", "cluster_sizes"])
def test_per_query_fields_are_empty_or_one_per_query(name):
    base = dict(indices=[0], weights=[1.0], probabilities=[1.0], n=5, query_indices=[1, 3])
    Selection(**base, **{name: []})  # empty is allowed
    Selection(**base, **{name: [1, 2]})
    for bad in ([1], [1, 2, 3]):
        with pytest.raises(ValueError, match=rf"^Selection\.{name} has {len(bad)} entries; "
                                             r"expected 2, one per query index\.$"):
            Selection(**base, **{name: bad})
    # with no queries, only empty is allowed
    with pytest.raises(ValueError, match=rf"Selection\.{name} has 1 entries; expected 0"):
        Selection(indices=[0], weights=[1.0], probabilities=[1.0], n=5, **{name: [1]})


# ------------------------------------------------------------------ unique, all_labelled
def test_unique_merges_repeats():
    sel = Selection(indices=[5, 2, 5, 7, 2, 5], weights=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                    probabilities=[0.1] * 6, n=10, replace=True)
    idx, w = sel.unique()
    assert idx.tolist() == [2, 5, 7] and w.tolist() == [7.0, 10.0, 4.0]


def test_all_labelled_adds_the_queried_centers_with_weight_zero():
    sel = Selection(indices=[5, 2, 5], weights=[1.0, 2.0, 3.0], probabilities=[0.1] * 3,
                    n=10, query_indices=[9, 2, 0], replace=True)
    idx, w = sel.all_labelled()
    assert idx.tolist() == [0, 2, 5, 9] and w.tolist() == [0.0, 2.0, 4.0, 0.0]


# ------------------------------------------------------------------------- estimators
def test_estimate_with_replacement_by_hand():
    # x = w y = [1, 4, 9]; mean 14/3; sum of squares 294/9; var = 3/2 * 294/9 = 49
    sel = Selection(indices=[0, 1, 2], weights=[1.0, 2.0, 3.0], probabilities=[0.3] * 3,
                    n=10, replace=True)
    est = sel.estimate_total([1.0, 2.0, 3.0])
    q = t_quantile(3)
    assert est.value == pytest.approx(14.0) and est.stderr == pytest.approx(7.0)
    assert est.ci_low == pytest.approx(14 - q * 7) and est.ci_high == pytest.approx(14 + q * 7)
    assert est.confidence == 0.95


def test_estimate_without_replacement_by_hand():
    # Hajek: x = [2, 8, 3], c = 1 - pi = [0.5, 0.75, 0]; b = (1 + 6) / 1.25 = 5.6;
    # var = 3/2 * (0.5 * 3.6^2 + 0.75 * 2.4^2) = 16.2 (the certain unit adds nothing)
    sel = Selection(indices=[0, 1, 2], weights=[2.0, 4.0, 1.0],
                    probabilities=[0.5, 0.25, 1.0], n=10, replace=False)
    est = sel.estimate_total([1.0, 2.0, 3.0], confidence=0.9)
    assert est.value == pytest.approx(13.0)
    assert est.stderr == pytest.approx(math.sqrt(16.2))
    assert est.ci_high - est.value == pytest.approx(t_quantile(3, 0.9) * math.sqrt(16.2))
    assert est.confidence == 0.9


def test_every_unit_certain_has_zero_variance():
    sel = Selection(indices=[0, 1, 2], weights=[1.0, 1.0, 1.0], probabilities=[1.0] * 3, n=3)
    est = sel.estimate_total([1.0, 5.0, 2.0])
    assert est.value == 8.0 and est.stderr == 0.0 and est.ci_low == est.ci_high == 8.0
    value, var = _estimate(np.array([1.0, 2.0]), np.ones(2), np.array([1.0, 1.0]), False)
    assert (value, var) == (3.0, 0.0)


def test_variance_below_one_is_kept():
    value, var = _estimate(np.array([1.0, 1.2]), np.ones(2), np.full(2, 0.5), True)
    # x = [1, 1.2]: var = 2/1 * (0.1^2 + 0.1^2) = 0.04
    assert value == pytest.approx(2.2) and var == pytest.approx(0.04)
    value, var = _estimate(np.array([1.0, 1.2]), np.ones(2), np.full(2, 0.5), False)
    assert var == pytest.approx(2 * 0.5 * (0.01 + 0.01))


def test_two_draws_have_a_variance_one_draw_has_none():
    two = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2,
                    replace=True).estimate_total([1.0, 3.0])
    # var = 2 * ((1-2)^2 + (3-2)^2) = 4; t with 1 degree of freedom
    assert two.value == 4.0 and two.stderr == pytest.approx(2.0)
    assert two.ci_high == pytest.approx(4.0 + 2.0 * t_quantile(2))
    one = Selection(indices=[0], weights=[3.0], probabilities=[1 / 3], n=3,
                    replace=True).estimate_total([2.0])
    assert one.value == 6.0
    assert all(math.isnan(v) for v in (one.stderr, one.ci_low, one.ci_high))


@pytest.mark.parametrize("s", [2, 3, 5, 40])
@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.99])
def test_interval_is_student_t_with_s_minus_1_degrees(s, confidence):
    e = _interval(10.0, 4.0, s, confidence)
    q = t_quantile(s, confidence)
    assert e.value == 10.0 and e.stderr == 2.0 and e.confidence == confidence
    assert e.ci_low == pytest.approx(10.0 - 2 * q, rel=1e-12)
    assert e.ci_high == pytest.approx(10.0 + 2 * q, rel=1e-12)


def test_interval_of_an_unknown_variance_is_nan():
    e = _interval(3.0, float("nan"), 1, 0.95)
    assert e.value == 3.0 and math.isnan(e.stderr) and math.isnan(e.ci_low)
    e = _interval(3.0, float("inf"), 4, 0.95)
    assert math.isnan(e.stderr) and math.isnan(e.ci_high)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_confidence_outside_the_open_interval(confidence):
    sel = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2)
    with pytest.raises(ValueError, match=rf"^confidence must lie in \(0, 1\); got {confidence}\.$"):
        sel.estimate_total([1.0, 2.0], confidence=confidence)


def test_confidence_close_to_the_ends_is_accepted():
    sel = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2)
    for confidence in (1e-9, 1 - 1e-9):
        assert sel.estimate_total([1.0, 2.0], confidence=confidence).confidence == confidence


def test_unknown_method():
    sel = Selection(indices=[0], weights=[1.0], probabilities=[1.0], n=1)
    with pytest.raises(ValueError, match=r"^method must be one of \['auto', 'weighted', 'difference', 'control'\]; got 'w'\.$"):
        sel.estimate_total([1.0], method="w")


# ------------------------------------------------------------- losses of the whole pool
def test_losses_of_the_whole_pool_or_of_the_sample():
    sel = Selection(indices=[4, 1, 4], weights=[1.0, 2.0, 3.0], probabilities=[0.1] * 3,
                    n=5, replace=True)
    pool = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    assert sel.estimate_total(pool).value == 50 + 40 + 150
    assert sel.estimate_total([1.0, 2.0, 3.0]).value == 1 + 4 + 9
    # n == s: the losses are the sample's, in the order of the indices (not the pool's)
    sq = Selection(indices=[2, 0, 1], weights=[1.0, 10.0, 100.0], probabilities=[0.5] * 3,
                   n=3, replace=True)
    assert sq.estimate_total([1.0, 2.0, 3.0]).value == 1 + 20 + 300
    # a (n, 1) column is a pool's losses too only once flattened: it is the sample's here
    with pytest.raises(ValueError, match=r"^losses: 5 values for 3 indices"):
        sel.estimate_total(pool.reshape(1, 5))
    with pytest.raises(ValueError, match=r"^losses: -1.0 for index 1; losses must be >= 0"):
        sel.estimate_total([1.0, -1.0, 1.0])


# ------------------------------------------------------------------ difference estimator
def _difference_selection():
    # pool of 10; centers 7 (loss 2, 6 rows) and 3 (loss 5, 4 rows), queried in the order
    # [7, 3] so that the sorted lookup matters; draws: rows 1 (center 7), 8 (center 3), 3
    return Selection(indices=[1, 8, 3], weights=[2.0, 1.5, 4.0], probabilities=[0.1] * 3,
                     n=10, centers=[7, 3, 3], query_indices=[7, 3], query_losses=[2.0, 5.0],
                     cluster_sizes=[6, 4], replace=True, method="sensitivity")


def test_difference_estimator_by_hand():
    sel = _difference_selection()
    y = np.array([3.0, 6.0, 5.0])
    # offset = 6*2 + 4*5 = 32; residuals y - l_hat = [1, 1, 0]; x = w r = [2, 1.5, 0]
    est = sel.estimate_total(y, method="difference")
    x = np.array([2.0, 1.5, 0.0])
    var = 3 / 2 * ((x - x.mean()) ** 2).sum()
    assert est.value == pytest.approx(32 + 3.5)
    assert est.stderr == pytest.approx(math.sqrt(var))
    mean = sel.estimate_mean(y, method="difference", confidence=0.8)
    assert mean.value == pytest.approx(3.55) and mean.stderr == pytest.approx(math.sqrt(var) / 10)
    assert mean.confidence == 0.8
    assert mean.ci_high == pytest.approx(3.55 + t_quantile(3, 0.8) * math.sqrt(var) / 10)
    plain = sel.estimate_mean(y)
    assert plain.value == pytest.approx((6 + 9 + 20) / 10) and plain.confidence == 0.95


@pytest.mark.parametrize("kw", [
    dict(),  # no queries at all
    dict(query_indices=[0, 1], query_losses=[1.0, 2.0]),  # cluster sizes unknown (all 0)
])
def test_difference_needs_the_queried_losses(kw):
    sel = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2,
                    method="kcenter", **kw)
    with pytest.raises(ValueError, match=r"^method='difference' needs the queried centers' "
                                         r"losses; this selection \('kcenter'\) has none\. "
                                         r"Use method='weighted'\.$"):
        sel.estimate_total([1.0, 2.0], method="difference")


def test_difference_with_a_single_center():
    sel = Selection(indices=[0, 2], weights=[1.5, 1.5], probabilities=[1 / 3] * 2, n=3,
                    centers=[1, 1], query_indices=[1], query_losses=[2.0], cluster_sizes=[3])
    # 3 * 2 + 1.5 * (4 - 2) + 1.5 * (1 - 2)
    assert sel.estimate_total([4.0, 1.0], method="difference").value == pytest.approx(7.5)


def test_difference_with_one_cluster_size_known():
    # cluster_sizes [0, 3] sum to 3 > 0: allowed (a single zero is not "none")
    sel = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=3,
                    centers=[1, 1], query_indices=[0, 1], query_losses=[9.0, 2.0],
                    cluster_sizes=[0, 3])
    assert sel.estimate_total([3.0, 4.0], method="difference").value == 6 + 1 + 2


# ----------------------------------------------------------------------------- saving
def test_to_dict():
    sel = _difference_selection()
    d = sel.to_dict()
    assert d == {
        "indices": [1, 8, 3], "weights": [2.0, 1.5, 4.0], "probabilities": [0.1] * 3,
        "centers": [7, 3, 3], "query_indices": [7, 3], "query_losses": [2.0, 5.0],
        "cluster_sizes": [6, 4], "n": 10, "replace": True, "method": "sensitivity",
        "params": {}, "diagnostics": {}, "surrogate": [],
    }
    json.dumps(d)


def test_save_adds_the_suffix_and_load_round_trips(tmp_path):
    sel = Selection(indices=[1, 8, 3], weights=[2.0, 1.5, 4.0], probabilities=[0.1] * 3,
                    n=10, centers=[7, 3, 3], query_indices=[7, 3], query_losses=[2.0, 5.0],
                    cluster_sizes=[6, 4], replace=True, method="sensitivity",
                    params={"lam": 0.5}, diagnostics={"verdict": "ok"})
    sel.save(tmp_path / "sel")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel.npz"]  # no temporary left
    back = Selection.load(tmp_path / "sel.npz")
    assert back.to_dict() == sel.to_dict()
    sel.save(str(tmp_path / "again.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.npz", "sel.npz"]
    with np.load(tmp_path / "again.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["format"] == "coreselect.Selection/1"
    assert meta["n"] == 10 and meta["replace"] is True and meta["method"] == "sensitivity"
    assert meta["params"] == {"lam": 0.5} and meta["diagnostics"] == {"verdict": "ok"}


def test_load_refuses_a_file_that_is_not_a_selection(tmp_path):
    np.savez(tmp_path / "x.npz", meta=np.array("{}"), indices=np.arange(3))
    # (numpy's KeyError text follows the name: "missing 'weights is not a file in the archive'")
    with pytest.raises(ValueError, match=r"x\.npz is not a coreselect selection file "
                                         r"\(missing 'weights"):
        Selection.load(tmp_path / "x.npz")


def test_load_refuses_pickled_arrays(tmp_path):
    sel = Selection(indices=[1], weights=[1.0], probabilities=[1.0], n=2)
    sel.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as data:
        arrays = {name: data[name] for name in data.files}
    arrays["indices"] = np.array([1], dtype=object)  # stored as a pickle
    np.savez(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        Selection.load(tmp_path / "pickled.npz")


def test_load_accepts_a_file_without_the_format_key(tmp_path):
    meta = json.dumps({"n": 4, "replace": False, "method": "uniform", "params": {},
                       "diagnostics": {}})
    arrays = dict(indices=[3], weights=[4.0], probabilities=[0.25], centers=[-1],
                  query_indices=np.zeros(0, np.int64), query_losses=np.zeros(0),
                  cluster_sizes=np.zeros(0, np.int64))
    np.savez(tmp_path / "old.npz", meta=np.array(meta), **arrays)
    back = Selection.load(tmp_path / "old.npz")
    assert back.method == "uniform" and back.indices.tolist() == [3] and back.n == 4


# ------------------------------------------------- known rows, covered rows (params)
def test_weighted_total_adds_the_known_total():
    # Hajek: x = [2, 6], c = [0.5, 0.5], b = 4, var = 2 * (0.5 * 4 + 0.5 * 4) = 8
    sel = Selection(indices=[0, 2], weights=[2.0, 2.0], probabilities=[0.5, 0.5], n=6,
                    params={"known_total": 5.0})
    est = sel.estimate_total([1.0, 3.0])
    q = t_quantile(2)
    assert est.value == 13.0 and est.stderr == pytest.approx(math.sqrt(8.0))
    assert est.ci_low == pytest.approx(13 - q * math.sqrt(8.0))
    assert est.ci_high == pytest.approx(13 + q * math.sqrt(8.0))
    # a known total given as an int or a numpy float
    sel = Selection(indices=[0, 2], weights=[2.0, 2.0], probabilities=[0.5, 0.5], n=6,
                    params={"known_total": 1})
    assert sel.estimate_total([1.0, 3.0]).value == 9.0


def test_difference_uses_hat_covered_and_not_the_known_total():
    base = _difference_selection()
    y = np.array([3.0, 6.0, 5.0])
    # hat_covered replaces sum(sizes * l_hat) = 32; the known total is already inside it
    sel = Selection(indices=base.indices, weights=base.weights,
                    probabilities=base.probabilities, n=10, centers=base.centers,
                    query_indices=base.query_indices, query_losses=base.query_losses,
                    cluster_sizes=base.cluster_sizes, replace=True,
                    params={"hat_covered": 30.0, "known_total": 7.0})
    assert sel.estimate_total(y, method="difference").value == pytest.approx(33.5)
    assert sel.estimate_total(y).value == pytest.approx(7.0 + 6 + 9 + 20)
    zero = Selection(indices=base.indices, weights=base.weights,
                     probabilities=base.probabilities, n=10, centers=base.centers,
                     query_indices=base.query_indices, query_losses=base.query_losses,
                     cluster_sizes=base.cluster_sizes, replace=True,
                     params={"hat_covered": 0.0})
    assert zero.estimate_total(y, method="difference").value == pytest.approx(3.5)


def test_mean_divides_by_the_covered_rows():
    sel = Selection(indices=[0, 2], weights=[2.0, 2.0], probabilities=[0.5, 0.5], n=10,
                    params={"n_covered": 4, "known_total": 2.0})
    mean = sel.estimate_mean([1.0, 3.0])
    assert mean.value == pytest.approx(10.0 / 4)
    assert mean.stderr == pytest.approx(math.sqrt(8.0) / 4)
    plain = Selection(indices=[0, 2], weights=[2.0, 2.0], probabilities=[0.5, 0.5], n=10)
    assert plain.estimate_mean([1.0, 3.0]).value == pytest.approx(0.8)


# -------------------------------------------------------------------- stratified
def test_stratified_estimate_by_hand():
    # stratum 5: N = 10, n = 3, y = [1, 2, 3]: s2 = 1, fpc 0.7: 100 * 0.7 * 1 / 3 = 70 / 3
    # stratum 9: N = 4, n = 2, y = [4, 6]: s2 = 2, fpc 0.5: 16 * 0.5 * 2 / 2 = 8
    w = np.array([10 / 3, 2.0, 10 / 3, 2.0, 10 / 3])
    y = np.array([1.0, 4.0, 2.0, 6.0, 3.0])
    value, var = _stratified_estimate(y, w, np.array([5, 9, 5, 9, 5]))
    assert value == pytest.approx(40.0) and var == pytest.approx(70 / 3 + 8)


def test_stratified_estimate_every_row_of_a_stratum_has_no_variance():
    value, var = _stratified_estimate(np.array([1.0, 7.0, 2.0]), np.ones(3),
                                      np.array([0, 0, 0]))
    assert value == 10.0 and var == 0.0
    # equal values: s2 = 0 (no negative rounding)
    value, var = _stratified_estimate(np.full(3, 0.1), np.full(3, 10 / 3), np.zeros(3))
    assert var == 0.0


def test_stratified_estimate_single_draws_collapsed_in_pairs_by_size():
    # four strata with one draw each, N = [5, 2, 4, 3] (stratum order 10, 20, 30, 40);
    # t = N y = [14, 1, 10, 3]; sorted by N: t = [1, 3, 10, 14]; pairs (1, 3) and (10, 14):
    # 2 * (1 + 1) + 2 * (4 + 4) = 20. Pairs in stratum order would give 169 + 49.
    w = np.array([5.0, 2.0, 4.0, 3.0])
    y = np.array([14 / 5, 0.5, 2.5, 1.0])
    value, var = _stratified_estimate(y, w, np.array([10, 20, 30, 40]))
    assert value == pytest.approx(28.0) and var == pytest.approx(20.0)
    # plus a stratum of N = 6 with 2 draws y = [1, 3]: s2 = 2, fpc 2/3: 36 * 2/3 * 2 / 2 = 24
    value, var = _stratified_estimate(np.append(y, [1.0, 3.0]), np.append(w, [3.0, 3.0]),
                                      np.array([10, 20, 30, 40, 50, 50]))
    assert value == pytest.approx(40.0) and var == pytest.approx(44.0)


def test_stratified_estimate_odd_singles_make_a_group_of_three():
    # t = [2, 6, 8] with N = [2, 6, 4]: one group of 3, mean 16/3,
    # sum of squares (100 + 4 + 64) / 9; var = 3/2 * 168/9 = 28
    value, var = _stratified_estimate(np.array([1.0, 1.0, 2.0]), np.array([2.0, 6.0, 4.0]),
                                      np.array([1, 2, 3]))
    assert value == 16.0 and var == pytest.approx(28.0)
    # five singles: a pair and a group of three (by size). N = [2, 3, 4, 5, 6], t = N y
    t = np.array([1.0, 3.0, 2.0, 8.0, 5.0])
    value, var = _stratified_estimate(t / np.arange(2, 7), np.arange(2.0, 7.0),
                                      np.array([4, 0, 3, 1, 2]))
    g = t[2:]
    assert value == pytest.approx(19.0)
    assert var == pytest.approx(2 * 2 * 1.0 + 1.5 * np.sum((g - g.mean()) ** 2))


def test_stratified_estimate_a_stratum_drawn_whole_adds_nothing():
    # N = 1 with its one row drawn, and N = 2 with both drawn: no variance, no pairing
    value, var = _stratified_estimate(np.array([4.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0]),
                                      np.array([1, 2, 2]))
    assert value == 8.0 and var == 0.0
    # next to one single stratum of N = 3: that one cannot be paired
    value, var = _stratified_estimate(np.array([4.0, 1.0]), np.array([1.0, 3.0]),
                                      np.array([1, 2]))
    assert value == 7.0 and math.isnan(var)


def test_stratified_estimate_one_single_is_paired_with_the_nearest_multi_draw_stratum():
    # stratum 1: N = 4, y = [1, 2]: 16 * (1 - 2/4) * 0.5 / 2 = 2; the single stratum 2
    # (N = 5, t = 15) paired with stratum 1 (t = 4 * 1.5 = 6): 2 * (4.5^2 + 4.5^2) = 81
    value, var = _stratified_estimate(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]),
                                      np.array([1, 1, 2]))
    assert value == 21.0 and var == pytest.approx(83.0)
    # the nearest in size: N = 6 (t = 12) rather than N = 20 (t = 40) for a single of N = 5
    value, var = _stratified_estimate(np.array([1.0, 3.0, 2.0, 2.0, 3.0]),
                                      np.array([3.0, 3.0, 10.0, 10.0, 5.0]),
                                      np.array([1, 1, 2, 2, 3]))
    own = 36 * (1 - 2 / 6) * 2 / 2 + 0.0  # stratum 1 (s2 = 2); stratum 2 has s2 = 0
    assert var == pytest.approx(own + 2 * 2 * 1.5 ** 2)  # t = 15 paired with t = 12


def test_stratified_estimate_one_single_alone_is_unknown():
    value, var = _stratified_estimate(np.array([3.0]), np.array([5.0]), np.array([2]))
    assert value == 15.0 and math.isnan(var)


def test_estimate_total_of_a_stratified_selection():
    # strata (centers) 7 and 3: N = 4, n = 2 and N = 6, n = 3 (weights N / n)
    sel = Selection(indices=[0, 1, 4, 5, 6], weights=[2.0, 2.0, 2.0, 2.0, 2.0],
                    probabilities=[0.5] * 5, n=12, centers=[7, 7, 3, 3, 3],
                    query_indices=[7, 3], query_losses=[1.0, 2.0], cluster_sizes=[5, 7],
                    params={"design": "stratified", "known_total": 3.0, "hat_covered": 20.0})
    y = np.array([1.0, 3.0, 2.0, 2.0, 5.0])
    # stratum 7: s2 = 2, fpc 0.5: 16 * 0.5 * 2 / 2 = 8; stratum 3: y = [2, 2, 5], s2 = 3,
    # fpc 0.5: 36 * 0.5 * 3 / 3 = 18
    est = sel.estimate_total(y)
    assert est.value == pytest.approx(3.0 + 26.0) and est.stderr == pytest.approx(math.sqrt(26))
    # difference: residuals [0, 2, 0, 0, 3]: stratum 7 s2 = 2 -> 8; stratum 3 s2 = 3 -> 18
    diff = sel.estimate_total(y, method="difference")
    assert diff.value == pytest.approx(20.0 + 10.0) and diff.stderr == pytest.approx(math.sqrt(26))


def test_stratified_estimate_two_singles_make_one_pair():
    # stratum 1: N = 2, y = 1 (t = 2); stratum 2: N = 3, y = 2 (t = 6): 2 * (4 + 4) = 16
    value, var = _stratified_estimate(np.array([1.0, 2.0]), np.array([2.0, 3.0]),
                                      np.array([1, 2]))
    assert value == 8.0 and var == pytest.approx(16.0)


def test_stratified_estimate_pairs_ties_in_stratum_order():
    # 24 strata with one draw, N = 2 (even strata) or 3 (odd ones): by size and, among equal
    # sizes, in stratum order, the t = N y are 0, 1, ..., 23; the pairs (0, 1), (2, 3), ...
    # each add 2 * (1/4 + 1/4) = 1. Any other pairing has a pair farther apart.
    h = np.arange(24)
    big_n = 2.0 + h % 2
    t = np.where(h % 2 == 0, h // 2, 12 + (h - 1) // 2).astype(np.float64)
    value, var = _stratified_estimate(t / big_n, big_n, h)
    assert value == pytest.approx(276.0) and var == pytest.approx(12.0)
    # the same with t = k^2 at position k: the pair (2i, 2i + 1) adds (4i + 1)^2
    t2 = t**2
    value, var = _stratified_estimate(t2 / big_n, big_n, h)
    assert value == pytest.approx(float(np.sum(np.arange(24.0) ** 2)))
    assert var == pytest.approx(float(np.sum((4.0 * np.arange(12) + 1) ** 2)))


def test_stratified_estimate_pairs_many_ties_in_stratum_order_whatever_their_values():
    # 40 single-draw strata, sizes 3, 4 and 5 in turn, random totals: by size and then in
    # stratum order (0, 3, 6, ..., then 1, 4, ..., then 2, 5, ...), consecutive pairs, each
    # adding (t_a - t_b)^2; numpy's default (unstable) argsort orders these ties otherwise
    # and pairs other strata
    rng = np.random.default_rng(5)
    h = np.arange(40)
    big_n = 3.0 + h % 3
    t = rng.uniform(0, 10, 40)
    value, var = _stratified_estimate(t / big_n, big_n, h)
    by_hand = t[np.r_[0:40:3, 1:40:3, 2:40:3]]
    want = float(np.sum((by_hand[0::2] - by_hand[1::2]) ** 2))
    assert value == pytest.approx(t.sum()) and var == pytest.approx(want, rel=1e-12)
    other = t[np.argsort(big_n)]
    assert float(np.sum((other[0::2] - other[1::2]) ** 2)) != pytest.approx(want, rel=1e-6)


def test_stratified_estimate_a_lone_single_takes_the_nearest_size_not_the_first_stratum():
    # multi-draw strata: 1 (N = 6, y = [1, 3]) and 2 (N = 20, y = [2, 2]); the single stratum
    # 3 has N = 18 (t = 18 * 3 = 54): nearest is stratum 2 (t = 20 * 2 = 40), which is
    # neither the first nor the smallest
    value, var = _stratified_estimate(np.array([1.0, 3.0, 2.0, 2.0, 3.0]),
                                      np.array([3.0, 3.0, 10.0, 10.0, 18.0]),
                                      np.array([1, 1, 2, 2, 3]))
    own = 36 * (1 - 2 / 6) * 2 / 2   # stratum 1 (s2 = 2); stratum 2 has s2 = 0
    assert value == pytest.approx(12.0 + 40.0 + 54.0)
    assert var == pytest.approx(own + 2 * 2 * 7.0 ** 2)  # t = 54 paired with t = 40


def test_estimate_without_replacement_a_row_with_p_above_1_is_certain():
    # a hand-built selection may carry p > 1: such a row adds no variance (c = 0, not < 0)
    y = np.array([1.0, 2.0, 4.0])
    w = np.array([1.0, 2.0, 4.0])
    p = np.array([1.5, 0.5, 0.25])
    value, var = _estimate(y, w, p, replace=False)
    x = w * y
    c = np.array([0.0, 0.5, 0.75])
    b = float(np.sum(c * x) / c.sum())
    assert value == 21.0
    assert var == pytest.approx(3 / 2 * float(np.sum(c * (x - b) ** 2)))


def test_losses_after_the_queried_rows_are_checked_by_name():
    sel = Selection(indices=[3, 0, 1], weights=[1.0, 2.0, 2.0], probabilities=[1.0, 0.5, 0.5],
                    n=6, query_indices=[3], query_losses=[1.0], cluster_sizes=[6],
                    params={"queried_in_sample": 1})
    assert sel.estimate_total([2.0, 3.0]).value == pytest.approx(1.0 + 4.0 + 6.0)
    with pytest.raises(ValueError, match=r"^losses: -1.0 for index 1;"):
        sel.estimate_total([2.0, -1.0])
    with pytest.raises(ValueError, match=r"^losses"):
        sel.estimate_total([2.0, 3.0, np.nan])
