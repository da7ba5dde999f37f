"""The designs' predicted variances, the surrogate's calibration and its helpers, case by hand:
the tests that kill the mutants of the code the estimation issue added (``make mutation``; see
tests/test_mutation_selection.py).

The references below are written out row by row in plain numpy (no blocks, no row state), from
the formulas in the docstrings, not read back from the code.

Surviving mutants (mutmut 3.8) of the code the estimation issue added, by kind; all are
equivalent (no input a caller can give tells them apart) or, where marked, not proved so:

- dtypes: ``np.asarray(x, dtype=...)``, ``.astype(...)``, ``np.ones/np.empty(..., dtype=...)``
  with the dtype None or dropped where the value is of that dtype already or meets a float
  before it is stored (``calibrate_surrogate``'s ``g``, ``losses``, ``weights``;
  ``SurrogateFit.predict``/``spread``; ``expected_cross_entropy``/``expected_zero_one``'s
  ``astype(None)``, which is float64; ``sample_selection``'s losses, indices, exclude and
  surrogate, validated by the caller; ``draw_in_strata``'s and ``draw_members``' ``out`` and
  ``alloc``; ``neyman_allocation``'s sizes and spreads; ``_excluded``; ``_sq_block``'s
  labels; ``_moment_block``'s ``np.finfo(None)``, float64's; ``_stratified_draw``'s and
  ``_sensitivity_draw``'s ``sizes.astype(None)``; ``_predicted_variances``' ``keep`` (float
  1/0 reads as True/False) and ``big_n``). ``keep[out_s] = None``, ``cover[...] = None``,
  ``eligible[out] = None``: None is stored as False in a bool array.
  ``calibrate_surrogate``'s ``reshape(-2)`` (numpy reads any negative size as "the rest");
  ``reshape(None)`` of a 1-D input.
- sort kinds: ``kind="STABLE"`` (numpy reads it as "stable"); ``kind=None`` or dropped in
  ``draw_in_strata``'s and ``_sensitivity_draw``'s ``argsort(block_of)`` and
  ``argsort(idx)`` and ``argsort(query_indices)``: any order that groups the draws by block
  writes each block's draws back where they were read, and the distinct row numbers have no
  ties. ``zip(..., strict=None/False/dropped)``: the two arrays have the same length.
- bounds never reached by a valid input: ``_wls``'s ``vx < 0``, ``cov < 0``, ``alpha <= 0``
  (see the tests above); ``neyman_allocation``'s loop guards (``range(n - 1)``,
  ``range(n + 2)``: the caps settle in fewer rounds than strata; ``left <= 1``,
  ``left < 0``, ``share >= 0``, ``c * share > sizes`` for ``>=``, ``capped = over``: the
  rounds differ only when a quota equals a stratum size exactly or nothing is left, where
  the caps give the same quota); its trim and leftover loops' ``room`` filters (``>= 0``,
  ``> 1``) and ``+=`` spelt ``=``: the rows they would add or take are capped by
  ``np.minimum(..., sizes)`` and the sum check (not proved for every input; no input found
  that tells them apart); ``draw_in_strata``'s ``np.arange(n_blocks + 2)`` (a last cut never
  read) and ``rng.choice(..., replace=None)`` (None is falsy: without replacement, as False).
- ``_all_block``'s ``len(arg) > 6`` tests spelt ``>= 6`` or joined by ``and`` (every caller
  passes the row masses as a seventh item), ``_all_block_counted``'s ``start`` as None
  (``_all_block`` does not read it).
- ``sample_selection``'s fallback to ``"sensitivity"`` spelt ``"XXsensitivityXX"`` or
  upper case: any name but ``"stratified"`` takes Algorithm 1's branch, which records
  ``design="sensitivity"`` itself; the default ``design="sensitivity"`` spelt so (every
  caller passes it).
- ``_stratified_draw``: ``known_rows`` / ``hat_total`` / ``cost`` branches forced where
  both sides agree (an empty ``user_out`` or ``gone`` sums to 0); ``two = min(N, 3)`` and
  ``total_draws > sum(two)`` for ``>=`` with the pools tested (a minimum of 3 does not fit
  there, and at equality the rounding gives two each anyway; not proved in general).

- ``_stratified_draw``'s report: ``mix=0.0`` dropped (the default), ``replace=None`` or
  ``True`` (they change only the warnings, which the stratified report replaces by its own),
  the ``n_draws == 0`` branches (a draw has at least one row) and
  ``np.count_nonzero(None)`` for the strata without a draw (0: every stratum gets one).
- ``_sensitivity_draw``: branches forced where both sides agree (``user_out`` empty is
  ``None`` for ``_excluded``; ``known_rows`` empty sums to 0; ``hat_total`` passed to
  ``resolve_lam`` where the rule is already given); the ``n == 0`` / ``n_blocks == 0``
  branches (an empty pool is refused before); ``/ (np.diff(starts) > 0)`` for ``*`` and
  ``>= 0`` for ``> 0`` (blocks are never empty); ``st[:4]`` for ``st[:3]`` (only the first
  three are read); ``p[None]`` for ``p`` when nothing is excluded; ``inclusion_probabilities(
  p, size, None)`` (the rows left out have ``p = 0`` already).

- ``_sensitivity_draw``'s zero-mass fallback constants (``d_lam``, ``total``, ``masses``):
  multiplied by ``1 - d_mix = 0`` there (as tests/test_mutation_sensitivity.py says).

No survivor of this code is left live: the ones found live in review (a block of one row,
the uniform mix with exclusions, the coincidence count on a small pool, a stratified cost
below 1, the Neyman spreads with the queried rows, auto's predicted variances with
exclusions and replacement, the size-weighted smoothness check) have tests below.
"""

from __future__ import annotations

import numpy as np
import pytest

from coreselect.pools.state import memory_rows
from coreselect.sensitivity import _predicted_variances, neyman_allocation
from coreselect.surrogates import (
    SPREAD_FLOOR,
    SurrogateFit,
    _wls,
    calibrate_surrogate,
    expected_cross_entropy,
    expected_zero_one,
)


# --------------------------------------------------------------- expected losses
def test_expected_cross_entropy_by_hand():
    p = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    want = [np.log(2.0), -(0.5 * np.log(0.25) + 0.5 * np.log(0.5)), 0.0]
    got = expected_cross_entropy(p)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert not np.isnan(got).any()


def test_expected_losses_within_the_tolerance_of_0_and_1():
    # entries a little outside [0, 1] (allowed by the validation's 1e-4): the entropy of a
    # near-certain row is 0, not negative and not nan; its 0-1 error is 0, not negative
    p = np.array([[1.00005, -0.00005, 0.0], [0.7, 0.3, 0.0], [0.50005, 0.5, -0.00005]])
    ce = expected_cross_entropy(p)
    assert ce[0] == 0.0
    assert ce[1] == pytest.approx(-(0.7 * np.log(0.7) + 0.3 * np.log(0.3)), rel=1e-12)
    # the entry below 0 adds nothing (not -0.00005 log of anything)
    assert ce[2] == pytest.approx(-(0.50005 * np.log(0.50005) + 0.5 * np.log(0.5)), rel=1e-12)
    err = expected_zero_one(p)
    assert err[0] == 0.0 and err[1] == pytest.approx(0.3, rel=1e-12)


def test_expected_losses_are_float64_for_float32_probabilities():
    p = np.array([[0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    assert expected_cross_entropy(p).dtype == np.float64
    assert expected_zero_one(p).dtype == np.float64
    # 1 - max in float64: 1 - float32(0.9) exactly, not rounded to float32 again
    assert expected_zero_one(p)[0] == 1.0 - float(np.float32(0.9))


@pytest.mark.parametrize("fn", [expected_cross_entropy, expected_zero_one])
def test_expected_losses_name_probs_in_their_errors(fn):
    with pytest.raises(ValueError, match=r"^probs rows must sum to 1"):
        fn(np.array([[0.5, 0.6]]))


# ------------------------------------------------------------------ calibration
def _wls_by_hand(x, y, w):
    """Weighted least squares with both coefficients >= 0, written out."""
    sw = w.sum()
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * (x - mx) ** 2).sum()
    slope = (w * (x - mx) * (y - my)).sum() / sxx
    return my - slope * mx, slope


def test_wls_with_a_positive_intercept():
    x = np.array([0.0, 1.0, 2.0, 4.0])
    y = np.array([1.0, 2.5, 2.0, 5.0])
    w = np.array([1.0, 2.0, 1.0, 3.0])
    a, b = _wls(x, y, w)
    want_a, want_b = _wls_by_hand(x, y, w)
    assert want_a > 0 and want_b > 0
    assert a == pytest.approx(want_a, rel=1e-12) and b == pytest.approx(want_b, rel=1e-12)


def test_wls_through_the_origin_when_the_intercept_would_be_negative():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([0.5, 2.0, 4.0])   # slope 1.75, intercept -1.25: refit through 0
    w = np.array([1.0, 1.0, 2.0])
    a, b = _wls(x, y, w)
    assert _wls_by_hand(x, y, w)[0] < 0
    assert a == 0.0
    assert b == pytest.approx((w * x * y).sum() / (w * x * x).sum(), rel=1e-12)


def test_wls_without_an_increasing_relation_is_the_mean():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([3.0, 2.0, 1.0])
    w = np.array([1.0, 1.0, 2.0])
    assert _wls(x, y, w) == (pytest.approx(7.0 / 4.0, rel=1e-12), 0.0)
    # no spread in x: the mean too, whatever the losses
    assert _wls(np.full(3, 2.0), y, w) == (pytest.approx(7.0 / 4.0, rel=1e-12), 0.0)
    # a zero slope exactly: the mean
    assert _wls(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 1.0]), np.ones(3)) == (
        pytest.approx(5.0 / 3.0, rel=1e-12), 0.0)


def test_calibration_with_many_rows_uses_the_fit_for_the_shape_and_the_floor():
    rng = np.random.default_rng(3)
    g = rng.uniform(0.1, 1.0, 40)
    y = 0.5 + 2.0 * g + rng.normal(0, 0.01, 40)
    w = rng.integers(1, 5, 40).astype(float)
    fit = calibrate_surrogate(g, y, weights=w)
    a, b = _wls_by_hand(g, y, w)
    assert (fit.a, fit.b, fit.shape_a, fit.shape_b) == pytest.approx((a, b, a, b), rel=1e-12)
    assert fit.c0 == pytest.approx(SPREAD_FLOOR * (w * (a + b * g)).sum() / w.sum(), rel=1e-12)
    assert fit.rows == 40


def test_calibration_that_finds_no_relation_gives_a_uniform_shape():
    g = np.linspace(0.1, 1.0, 30)
    y = 1.0 - 0.5 * g
    fit = calibrate_surrogate(g, y)
    assert (fit.b, fit.shape_a, fit.shape_b) == (0.0, 1.0, 0.0)
    assert fit.a == pytest.approx(y.mean(), rel=1e-12)
    assert fit.c0 == pytest.approx(SPREAD_FLOOR * 1.0, rel=1e-12)
    np.testing.assert_allclose(fit.spread(g), np.sqrt(1.0 + SPREAD_FLOOR), rtol=1e-12)


def test_calibration_with_few_rows_fits_the_scale_only():
    g = np.array([0.2, 0.4, 1.0])
    y = np.array([1.0, 0.0, 3.0])
    w = np.array([2.0, 1.0, 1.0])
    fit = calibrate_surrogate(g, y, weights=w)
    assert fit.a == 0.0 and fit.b == pytest.approx(5.0 / 1.8, rel=1e-12)
    assert (fit.shape_a, fit.shape_b) == (0.0, 1.0)
    assert fit.c0 == pytest.approx(SPREAD_FLOOR * 1.8 / 4.0, rel=1e-12)
    # a surrogate that is 0 on every queried row: the losses' mean, floor 1
    fit0 = calibrate_surrogate(np.zeros(3), y, weights=w)
    assert (fit0.a, fit0.b, fit0.c0) == (pytest.approx(5.0 / 4.0, rel=1e-12), 0.0, 1.0)


def test_calibration_leaves_out_rows_of_weight_0_and_checks_lengths():
    g = np.array([0.2, 0.4, 1.0, 9.0])
    y = np.array([1.0, 0.0, 3.0, 100.0])
    w = np.array([2.0, 1.0, 1.0, 0.0])
    fit = calibrate_surrogate(g, y, weights=w)
    assert fit.rows == 3 and fit.b == pytest.approx(5.0 / 1.8, rel=1e-12)
    empty = calibrate_surrogate(g[:1], y[:1], weights=np.zeros(1))
    assert (empty.a, empty.b, empty.shape_a, empty.shape_b, empty.c0, empty.rows) == (
        0.0, 1.0, 0.0, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="same length"):
        calibrate_surrogate(g, y[:3])


def test_surrogate_fit_predicts_and_spreads_by_its_formulas():
    fit = SurrogateFit(a=-0.5, b=2.0, shape_a=-1.0, shape_b=4.0, c0=0.25, rows=5)
    g = np.array([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(fit.predict(g), [0.0, 0.5, 1.5])
    np.testing.assert_array_equal(fit.spread(g), [0.5, np.sqrt(1.25), np.sqrt(3.25)])
    assert fit.to_dict() == {"a": -0.5, "b": 2.0, "shape_a": -1.0, "shape_b": 4.0,
                             "c0": 0.25, "rows": 5}


# ----------------------------------------------------------- predicted variances
def _pool():
    """12 rows in 3 clusters, two blocks; the queried rows are 0, 5 and 9."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    v = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 3.0, 1.0, 0.0, 0.2, 0.4, 0.6, 0.8])
    spread = np.array([1.0, 2.0, 1.5, 0.5, 3.0, 1.0, 2.0, 0.5, 0.5, 1.0, 2.5, 1.0])
    rows = memory_rows(labels, v, 3, starts=np.array([0, 5, 12]))
    return rows, labels, v, spread, np.array([0, 5, 9])


def _predicted_by_hand(labels, v, spread, *, size, lam, mix, exclude, q, replace, members,
                       ghat=None, losses=None, min_rows=30):
    n, k = labels.shape[0], int(labels.max()) + 1

    def skip(no_replacement):
        user = set() if exclude is None else set(int(i) for i in exclude)
        both = user | set(int(i) for i in q)
        return both if no_replacement and n - len(both) >= size else user

    out = skip(not (replace and not members))
    free = np.array([i not in out for i in range(n)])
    avail = np.array([np.sum(free & (labels == h)) for h in range(k)])
    s_h = np.array([np.sqrt(np.sum(spread[free & (labels == h)] ** 2) / max(avail[h], 1))
                    for h in range(k)])
    result = {}
    if size >= np.count_nonzero(avail):
        alloc = neyman_allocation(avail, s_h, size)
        result["stratified"] = sum(avail[h] ** 2 * s_h[h] ** 2 * (1 - alloc[h] / avail[h])
                                   / alloc[h] for h in range(k) if alloc[h] > 0)
    keep = np.array([i not in skip(not replace) for i in range(n)])
    lam_value = 0.0 if lam == "auto" else lam
    sp = np.where(keep, spread, 0.0)
    total = sp.sum() + lam_value * v[keep].sum()
    p = (1 - mix) * (sp + lam_value * v) / total + mix / keep.sum()
    result["sensitivity"] = sum(sp[i] ** 2 / p[i] for i in range(n) if keep[i]) / size
    if members and losses is not None and len(q) >= min_rows:
        big_n = np.bincount(labels, minlength=k).astype(float)
        r = losses - ghat[q]
        mean = (big_n * r).sum() / big_n.sum()
        var_r = (big_n * (r - mean) ** 2).sum() / big_n.sum()
        if "stratified" in result:
            result["stratified"] = sum(avail[h] ** 2 * var_r * (1 - alloc[h] / avail[h])
                                       / alloc[h] for h in range(k) if alloc[h] > 0)
        p_q = (1 - mix) * (spread[q] + lam_value * v[q]) / total + mix / keep.sum()
        terms = big_n * r ** 2 / p_q
        se = np.sqrt(len(q) / (len(q) - 1) * ((terms - terms.mean()) ** 2).sum())
        result["sensitivity"] = (terms.sum() + 2.0 * se) / size
    return result


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("members", [True, False])
@pytest.mark.parametrize("lam, mix, exclude", [("auto", 0.0, None), (0.5, 0.2, [3, 7]),
                                               (2.0, 0.0, [1])])
def test_predicted_variances_by_hand(replace, members, lam, mix, exclude):
    rows, labels, v, spread, q = _pool()
    ex = None if exclude is None else np.array(exclude)
    got = _predicted_variances(rows, spread, size=5, lam=lam, mix=mix, exclude=ex,
                               query_indices=q, replace=replace, members=members)
    want = _predicted_by_hand(labels, v, spread, size=5, lam=lam, mix=mix, exclude=ex, q=q,
                              replace=replace, members=members)
    assert set(got) == set(want) == {"stratified", "sensitivity"}
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


def _on_pool(**kw):
    """``_predicted_variances`` on ``_pool()`` and the reference, with the same arguments."""
    rows, labels, v, spread, q = _pool()
    return (_predicted_variances(rows, spread, query_indices=q, **kw),
            _predicted_by_hand(labels, v, spread, q=q, **kw))


def test_predicted_variances_without_room_for_the_queried_rows():
    # size 10 of 12 rows, 3 queried: without replacement the queried rows stay drawable
    got, want = _on_pool(size=10, lam=1.0, mix=0.0, exclude=None, replace=False, members=False)
    assert got == pytest.approx(want, rel=1e-12)


def test_predicted_variances_with_fewer_draws_than_strata():
    got, want = _on_pool(size=2, lam=0.5, mix=0.0, exclude=None, replace=True, members=False)
    assert set(got) == {"sensitivity"} and "stratified" not in want
    assert got["sensitivity"] == pytest.approx(want["sensitivity"], rel=1e-12)


def test_predicted_variances_with_no_mass_and_no_strata():
    rows, labels, v, _, q = _pool()
    zero = np.zeros(12)
    got = _predicted_variances(rows, zero, size=2, lam=0.0, mix=0.0, exclude=None,
                               query_indices=q, replace=True, members=False)
    assert got == {"stratified": 0.0}


def _big_pool(k=40):
    """k clusters of 3 rows (blocks of 50 rows), one random member of each queried."""
    labels = np.repeat(np.arange(k), 3)
    rng = np.random.default_rng(7)
    v = rng.uniform(0, 2, labels.shape[0])
    spread = rng.uniform(0.2, 2, labels.shape[0])
    q = np.arange(k) * 3 + rng.integers(0, 3, k)
    return (memory_rows(labels, v, k, block_rows=50), labels, v, spread, q,
            rng.uniform(0, 3, k), rng.uniform(0, 3, labels.shape[0]))


@pytest.mark.parametrize("lam, mix", [("auto", 0.0), (0.7, 0.1)])
def test_predicted_variances_from_the_random_queried_rows_residuals(lam, mix):
    rows, labels, v, spread, q, losses, ghat = _big_pool()
    got = _predicted_variances(rows, spread, size=50, lam=lam, mix=mix, exclude=np.array([4]),
                               query_indices=q, replace=False, members=True, ghat=ghat,
                               losses=losses)
    want = _predicted_by_hand(labels, v, spread, size=50, lam=lam, mix=mix,
                              exclude=np.array([4]), q=q, replace=False, members=True,
                              ghat=ghat, losses=losses)
    model = _predicted_by_hand(labels, v, spread, size=50, lam=lam, mix=mix,
                               exclude=np.array([4]), q=q, replace=False, members=True)
    assert got == pytest.approx(want, rel=1e-12)
    assert got["sensitivity"] != pytest.approx(model["sensitivity"], rel=1e-3)
    # the residuals are used from 30 queried rows on (one per cluster), not below
    for k, used in ((29, False), (30, True)):
        rows_k, labels_k, v_k, spread_k, q_k, losses_k, ghat_k = _big_pool(k)
        got_k = _predicted_variances(rows_k, spread_k, size=50, lam=lam, mix=mix,
                                     exclude=None, query_indices=q_k, replace=False,
                                     members=True, ghat=ghat_k, losses=losses_k)
        with_r = _predicted_by_hand(labels_k, v_k, spread_k, size=50, lam=lam, mix=mix,
                                    exclude=None, q=q_k, replace=False, members=True,
                                    ghat=ghat_k, losses=losses_k, min_rows=0)
        without = _predicted_by_hand(labels_k, v_k, spread_k, size=50, lam=lam, mix=mix,
                                     exclude=None, q=q_k, replace=False, members=True)
        assert got_k == pytest.approx(with_r if used else without, rel=1e-12)
        assert with_r["sensitivity"] != pytest.approx(without["sensitivity"], rel=1e-3)
    centers = _predicted_variances(rows, spread, size=50, lam=lam, mix=mix, exclude=None,
                                   query_indices=q, replace=False, members=False, ghat=ghat,
                                   losses=losses)
    assert centers == pytest.approx(_predicted_by_hand(
        labels, v, spread, size=50, lam=lam, mix=mix, exclude=None, q=q, replace=False,
        members=False), rel=1e-12)
    for missing in ({"ghat": ghat}, {"losses": losses}):
        alone = _predicted_variances(rows, spread, size=50, lam=lam, mix=mix, exclude=None,
                                     query_indices=q, replace=False, members=True, **missing)
        assert alone == pytest.approx(_predicted_by_hand(
            labels, v, spread, size=50, lam=lam, mix=mix, exclude=None, q=q, replace=False,
            members=True), rel=1e-12)


def test_wls_with_little_spread_in_x_and_a_slope_below_1():
    # sum w (x - mx)^2 = 0.02 < 1 (a fit, not the mean), slope 0.5, intercept > 0
    x = np.array([0.1, 0.2, 0.3])
    y = np.array([0.1, 0.13, 0.2])
    w = np.ones(3)
    a, b = _wls(x, y, w)
    want_a, want_b = _wls_by_hand(x, y, w)
    assert want_a > 0 and 0 < want_b < 1
    assert (a, b) == (pytest.approx(want_a, rel=1e-12), pytest.approx(want_b, rel=1e-12))
    y0 = np.array([0.03, 0.1, 0.16])  # intercept < 0: through the origin, slope < 1
    a, b = _wls(x, y0, w)
    assert _wls_by_hand(x, y0, w)[0] < 0
    assert a == 0.0 and b == pytest.approx((x * y0).sum() / (x * x).sum(), rel=1e-12)
    assert b < 1
    # no increasing relation, mean below 1: the mean itself
    assert _wls(x, y0[::-1], w) == (pytest.approx(y0.mean(), rel=1e-12), 0.0)


# ---------------------------------------------------------------- choose_design
def test_choose_design_with_a_surrogate_needs_a_clear_win_for_the_proposal():
    from coreselect.sensitivity import AUTO_PROPOSAL_MARGIN, choose_design

    assert AUTO_PROPOSAL_MARGIN == 0.75
    got = choose_design(None, None, None, surrogate_var={"stratified": 1.0, "sensitivity": 0.7})
    assert got == ("sensitivity", "auto: predicted variances under the calibrated surrogate "
                                  "(stratified 1, sensitivity 0.7); the per-row proposal below "
                                  "0.75 x the stratified design's")
    # exactly the margin, or more: stratified
    for sens in (0.75, 0.9, 2.0):
        assert choose_design(None, None, None, surrogate_var={
            "stratified": 1.0, "sensitivity": sens})[0] == "stratified"
    # no stratified prediction (fewer draws than strata): the proposal
    assert choose_design(None, None, None, surrogate_var={"sensitivity": 5.0}) == (
        "sensitivity", "auto: predicted variances under the calibrated surrogate "
                       "(sensitivity 5); the per-row proposal below 0.75 x the stratified "
                       "design's")
    assert choose_design(None, None, None, surrogate_var={"stratified": 0.0})[0] == "stratified"


def _pairs(deviations, d=1.0):
    """Pairs of points far apart, each pair's two losses c +- d: the nearest other row of
    each is its partner, so ss_res = 4 d^2 per row."""
    c = 10.0 + np.asarray(deviations, dtype=np.float64)
    points = np.repeat(np.arange(c.shape[0]) * 100.0, 2)[:, None] + np.tile([0.0, 1.0], c.shape[0])[:, None]
    losses = np.column_stack([c + d, c - d]).ravel()
    return points, losses


def test_choose_design_at_the_r2_threshold_and_the_query_count():
    from coreselect.sensitivity import AUTO_MIN_QUERIES, AUTO_MIN_R2, choose_design

    assert (AUTO_MIN_QUERIES, AUTO_MIN_R2) == (10, 0.5)
    # 12 rows: ss_res = 12 * 4 = 48, ss_tot = 2 * 42 + 12 = 96: R^2 = 0.5 exactly
    points, losses = _pairs([5.0, -4.0, -1.0, 0.0, 0.0, 0.0])
    assert choose_design(points, losses, np.ones(12)) == (
        "sensitivity", "auto: nearest-neighbour R^2 of the queried losses 0.500 >= 0.5: the "
                       "loss follows the embedding")
    # weights: the pairs with a spread count 3 times, the rest once -> R^2 > 0.5 ... and
    # weight on the flat pairs -> R^2 < 0.5 (ss_tot = 2 * 42 * 1 + 12, ss_res weighted)
    w = np.repeat([1.0, 1.0, 1.0, 3.0, 3.0, 3.0], 2)
    mean = np.dot(w, losses) / w.sum()
    r2 = 1 - np.dot(w, np.full(12, 4.0)) / np.dot(w, (losses - mean) ** 2)
    assert r2 < 0.5
    assert choose_design(points, losses, w) == (
        "stratified", f"auto: nearest-neighbour R^2 of the queried losses {r2:.3f} < 0.5: "
                      "the loss does not follow the embedding")
    # 10 queried rows are enough, 9 are not
    p10, l10 = _pairs([8.0, -8.0, 0.0, 4.0, -4.0])
    assert choose_design(p10, l10, np.ones(10))[0] == "sensitivity"
    assert choose_design(p10[:9], l10[:9], np.ones(9)) == (
        "stratified", "auto: 9 queried rows, too few to check that the loss is smooth")
    assert choose_design(None, None, None) == (
        "stratified", "auto: 0 queried rows, too few to check that the loss is smooth")
    # all losses equal: R^2 = 1, smooth
    assert choose_design(p10, np.ones(10), np.ones(10))[0] == "sensitivity"
    # no weight anywhere (every cluster empty): R^2 undefined
    assert choose_design(p10, l10, np.zeros(10)) == (
        "stratified", "auto: nearest-neighbour R^2 of the queried losses undefined < 0.5: the "
                      "loss does not follow the embedding")


# ------------------------------------------------------------- control variate
def _control_selection():
    from coreselect.selection import Selection

    p = np.array([0.1, 0.2, 0.25, 0.05, 0.4])
    s = p.shape[0]
    return Selection(indices=[0, 4, 7, 9, 2], weights=1.0 / (s * p), probabilities=p, n=20,
                     replace=True, surrogate=[1.0, 3.0, 2.0, 0.5, 4.0],
                     params={"surrogate_total": 40.0, "known_total": 2.5})


def test_control_estimate_by_hand():
    sel = _control_selection()
    y = np.array([1.2, 2.5, 1.0, 0.6, 4.5])
    g = sel.surrogate
    w = sel.weights
    s = 5

    def hh(z):  # Hansen-Hurwitz variance of sum(w z)
        x = w * z
        return s / (s - 1) * np.sum((x - x.mean()) ** 2)

    xy, xg = w * y, w * g
    beta = np.sum((xy - xy.mean()) * (xg - xg.mean())) / np.sum((xg - xg.mean()) ** 2)
    assert 0 < beta < 2 and beta != pytest.approx(1.0, abs=0.05)
    want = 2.5 + beta * 40.0 + np.sum(w * (y - beta * g))
    est = sel.estimate_total(y, method="control")
    assert est.value == pytest.approx(want, rel=1e-12)
    assert est.stderr == pytest.approx(np.sqrt(hh(y - beta * g)), rel=1e-12)
    # "auto" is the control estimate when the selection has a surrogate
    auto = sel.estimate_total(y)
    assert (auto.value, auto.stderr) == (est.value, est.stderr)
    weighted = sel.estimate_total(y, method="weighted")
    assert weighted.value == pytest.approx(2.5 + np.sum(w * y), rel=1e-12)
    assert weighted.value != pytest.approx(est.value, rel=1e-3)


def test_control_estimate_with_a_constant_surrogate_is_the_weighted_one():
    from coreselect.selection import Selection

    # w g constant: no variance to borrow, beta = 0 (the surrogate's total is not added)
    sel = Selection(indices=[0, 1, 2], weights=[2.0, 2.0, 2.0], probabilities=[0.5] * 3, n=6,
                    replace=True, surrogate=[1.0, 1.0, 1.0], params={"surrogate_total": 99.0})
    y = np.array([1.0, 2.0, 4.0])
    est = sel.estimate_total(y, method="control")
    assert est.value == pytest.approx(14.0) and est.stderr == pytest.approx(
        np.sqrt(3 / 2 * np.sum((2 * y - 2 * y.mean()) ** 2)))


def test_control_estimate_without_a_surrogate_total_recorded():
    from coreselect.selection import Selection

    sel = Selection(indices=[0, 1], weights=[1.0, 1.0], probabilities=[0.5, 0.5], n=2,
                    replace=True, surrogate=[1.0, 3.0])
    y = np.array([2.0, 4.0])
    # beta = 1 here (y - g constant); G missing counts as 0: sum(w (y - g)) = 2
    assert sel.estimate_total(y, method="control").value == pytest.approx(2.0)


# ---------------------------------------------------- predicted variances, edges
def test_predicted_variances_with_as_many_draws_as_strata_and_a_stratum_excluded():
    rows, labels, v, spread, q = _pool()
    for size, exclude in ((3, None), (2, np.array([4, 5, 6]))):   # cluster 1 all excluded
        got = _predicted_variances(rows, spread, size=size, lam=0.5, mix=0.0, exclude=exclude,
                                   query_indices=q, replace=True, members=False)
        want = _predicted_by_hand(labels, v, spread, size=size, lam=0.5, mix=0.0,
                                  exclude=exclude, q=q, replace=True, members=False)
        assert set(got) == set(want) == {"stratified", "sensitivity"}
        assert got == pytest.approx(want, rel=1e-12)
        assert np.isfinite(got["stratified"])


@pytest.mark.parametrize("members", [True, False])
def test_predicted_variances_at_a_small_scale(members):
    # distances and spreads below 1 (Phi < 1, total mass < 1)
    rows, labels, v, spread, q = _pool()
    small = memory_rows(labels, v * 0.01, 3, starts=np.array([0, 5, 12]))
    got = _predicted_variances(small, spread * 0.01, size=5, lam=0.5, mix=0.0, exclude=None,
                               query_indices=q, replace=False, members=members)
    want = _predicted_by_hand(labels, v * 0.01, spread * 0.01, size=5, lam=0.5, mix=0.0,
                              exclude=None, q=q, replace=False, members=members)
    assert got == pytest.approx(want, rel=1e-12)


def test_predicted_variances_from_residuals_with_clusters_of_different_sizes():
    rng = np.random.default_rng(11)
    k = 32
    sizes = rng.integers(3, 8, k)
    labels = np.repeat(np.arange(k), sizes)
    v = rng.uniform(0, 2, labels.shape[0])
    spread = rng.uniform(0.2, 2, labels.shape[0])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    q = starts + rng.integers(0, 3, k)
    losses, ghat = rng.uniform(0, 3, k), rng.uniform(0, 3, labels.shape[0])
    rows = memory_rows(labels, v, k, block_rows=40)
    got = _predicted_variances(rows, spread, size=60, lam=0.3, mix=0.0, exclude=None,
                               query_indices=q, replace=False, members=True, ghat=ghat,
                               losses=losses)
    want = _predicted_by_hand(labels, v, spread, size=60, lam=0.3, mix=0.0, exclude=None,
                              q=q, replace=False, members=True, ghat=ghat, losses=losses)
    assert got == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------ neyman_allocation
@pytest.mark.parametrize("sizes, spreads, size, minimum, want", [
    # caps: strata 0 and 1 want more than they hold (c = 20/550), the other two share the
    # 15 left at c = 15/200 (7.5 each); the one leftover draw goes to the first tie
    ([2, 3, 100, 100], [100.0, 50.0, 1.0, 1.0], 20, 1, [2, 3, 8, 7]),
    # caps in two rounds: stratum 0 first (c = 12/1250), then stratum 1 (c = 11/250 gives
    # it 6.6 > 5), then stratum 2 takes the 6 left
    ([1, 5, 100], [1000.0, 30.0, 1.0], 12, 1, [1, 5, 6]),
    # a minimum of 2 everywhere takes 6 of 8 draws: the big stratum is trimmed to its minimum
    ([10, 10, 10, 10], [100.0, 1.0, 1.0, 1.0], 8, 2, [2, 2, 2, 2]),
    # the trim takes from the strata whose quota is exceeded most, in order, within their room
    ([10, 10, 10, 10], [3.0, 3.0, 0.01, 0.01], 9, 2, [2, 3, 2, 2]),
    # no spread anywhere: proportional to the sizes; an empty stratum gets nothing
    ([0, 4, 6], [1.0, 0.0, 0.0], 5, 1, [0, 2, 3]),
    # a negative spread counts as 0 (the minimum draw only), the trim takes the extra one
    ([10, 10], [-5.0, 1.0], 4, 1, [1, 3]),
    # equal quotas of 7/3: one leftover draw, to the first; two leftovers, to the first two
    ([10, 10, 10], [1.0, 1.0, 1.0], 7, 1, [3, 2, 2]),
    ([10, 10, 10], [1.0, 1.0, 1.0], 8, 1, [3, 3, 2]),
    # quota exactly the stratum size: capped, no leftover
    ([3, 3], [1.0, 1.0], 6, 1, [3, 3]),
    # per-stratum minima, clipped to the stratum sizes
    ([5, 5, 1], [1.0, 1.0, 1.0], 5, [2, 2, 2], [2, 2, 1]),
    # a minimum of 0: a stratum with no spread may get no draw
    ([10, 10], [1.0, 0.0], 3, 0, [3, 0]),
])
def test_neyman_allocation_by_hand(sizes, spreads, size, minimum, want):
    got = neyman_allocation(np.array(sizes), np.array(spreads), size, minimum)
    assert got.tolist() == want
    assert got.dtype == np.int64 and int(got.sum()) == size


def test_neyman_allocation_leftovers_skip_full_strata():
    # quotas 0.9, 0.9 and 9.2 (c = 11/12 ... capped): floors 0, 0, 9 raised to the minimum 1;
    # a full stratum never takes a leftover draw
    got = neyman_allocation(np.array([1, 1, 10]), np.array([1.0, 1.0, 1.0]), 11)
    assert got.tolist() == [1, 1, 9]
    got = neyman_allocation(np.array([2, 9]), np.array([50.0, 1.0]), 10)
    assert got.tolist() == [2, 8]


# ------------------------------------------- the sample step, every field by hand
def _step_pool():
    """12 rows, clusters 0 (rows 0-3), 1 (rows 4-6) and 2 (rows 7-11), two blocks."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    v = np.array([0.0, 1.0, 2.0, 0.5, 0.3, 0.0, 1.0, 0.2, 0.4, 0.0, 0.6, 0.8])
    return memory_rows(labels, v, 3, starts=np.array([0, 5, 12])), labels, v


def _check_draw_in_strata(sel, labels, strata_rows, alloc):
    """The drawn rows: distinct, each in its stratum's drawable rows, alloc[h] of stratum h."""
    idx = sel.indices
    assert np.unique(idx).shape[0] == idx.shape[0]
    for h, allowed in enumerate(strata_rows):
        mine = idx[labels[idx] == h]
        assert mine.shape[0] == alloc[h]
        assert set(mine.tolist()) <= set(allowed)


def test_stratified_step_with_the_centers_queried_by_hand():
    from coreselect.sensitivity import sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    sel = sample_selection(rows, query_indices=q, query_losses=np.array([1.0, 2.0, 3.0]),
                           query_points=None, size=5, lam="auto", replace=True,
                           rng=np.random.default_rng(0), design="stratified",
                           exclude=np.array([11]), n_clusters=4, path="in-memory")
    # drawable: cluster 0 rows 1-3 (3), cluster 1 rows 4, 6 (2), cluster 2 rows 7, 8, 10 (3);
    # proportional 5 * (3, 2, 3) / 8 = (1.875, 1.25, 1.875): (2, 1, 2)
    _check_draw_in_strata(sel, labels, [[1, 2, 3], [4, 6], [7, 8, 10]], [2, 1, 2])
    want_p = {0: 2 / 3, 1: 1 / 2, 2: 2 / 3}
    np.testing.assert_allclose(sel.probabilities, [want_p[h] for h in labels[sel.indices]])
    np.testing.assert_allclose(sel.weights, 1.0 / sel.probabilities)
    assert sel.replace is False and sel.surrogate.shape == (0,)
    np.testing.assert_array_equal(sel.centers, q[labels[sel.indices]])
    pr = sel.params
    # sum N_h l_h = 4 + 6 + 15 = 25, less the excluded row's 3 and the known 6
    assert pr["hat_total"] == pytest.approx(16.0) and pr["known_total"] == pytest.approx(6.0)
    assert pr["hat_covered"] == pytest.approx(22.0)
    assert pr["cost"] == pytest.approx(v.sum() - v[[0, 5, 9, 11]].sum())
    assert (pr["excluded"], pr["n_covered"], pr["strata"], pr["queried_in_sample"]) == (1, 11, 3, 0)
    assert (pr["allocation"], pr["design"], pr["lam"]) == ("proportional", "stratified", 0.0)
    assert pr["lam_rule"] == "not used by design='stratified'"
    assert (pr["n_clusters"], pr["size"], pr["design_rule"], pr["queries"]) == (4, 5, "given", "centers")
    d = sel.diagnostics
    assert d["design"] == "stratified" and d["warnings"] == []
    assert d["estimation_verdict"] == d["verdict"] == (
        "For estimating the total loss: stratified by the clusters (proportional allocation, "
        "the queried centers known exactly): unbiased, with a variance at most a uniform "
        "sample's of the same size up to the rounding of the allocation.")


def test_stratified_step_with_random_queried_rows_and_a_surrogate_by_hand():
    from coreselect.sensitivity import _stratum_spreads, sample_selection

    rows, labels, v = _step_pool()
    q = np.array([1, 4, 8])                 # one row of each cluster, counted in the sample
    losses = np.array([1.0, 2.0, 3.0])
    g = np.array([0.5, 1.0, 0.2, 0.4, 2.0, 0.1, 0.3, 0.6, 1.5, 0.2, 0.9, 0.7])
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=None,
                           size=4, lam="auto", replace=True, rng=np.random.default_rng(1),
                           design="stratified", surrogate=g, queries="random",
                           exclude=np.array([11]))
    fit = calibrate_surrogate(g[q], losses, weights=np.array([4, 3, 5]))
    assert fit.rows == 3 and fit.a == 0.0   # scale only, below CALIBRATION_MIN_ROWS
    ghat, spread = fit.predict(g), fit.spread(g)
    # strata sizes 4, 3, 4 (row 11 excluded); 4 + 3 draws, two at least in each
    strata_sizes = np.array([4, 3, 4])
    s_h = _stratum_spreads(rows, spread, np.array([11]), strata_sizes)
    np.testing.assert_allclose(s_h, [np.sqrt(np.sum(spread[labels == 0] ** 2) / 4),
                                     np.sqrt(np.sum(spread[4:7] ** 2) / 3),
                                     np.sqrt(np.sum(spread[7:11] ** 2) / 4)])
    alloc = neyman_allocation(strata_sizes, s_h, 7, np.array([2, 2, 2]))
    assert alloc.sum() == 7 and alloc.min() >= 2
    np.testing.assert_array_equal(sel.indices[:3], q)
    sel_rest = sel.indices[3:]
    for h, allowed in enumerate([[0, 2, 3], [5, 6], [7, 9, 10]]):
        mine = sel_rest[labels[sel_rest] == h]
        assert mine.shape[0] == alloc[h] - 1 and set(mine.tolist()) <= set(allowed)
    np.testing.assert_allclose(sel.probabilities,
                               (alloc / strata_sizes)[labels[sel.indices]], rtol=1e-12)
    np.testing.assert_allclose(sel.surrogate, ghat[sel.indices], rtol=1e-12)
    pr = sel.params
    assert pr["surrogate"] == fit.to_dict()
    assert pr["surrogate_total"] == pytest.approx(ghat[:11].sum(), rel=1e-12)
    assert pr["hat_total"] == pytest.approx(4 * 1 + 3 * 2 + 5 * 3 - 3.0)
    assert pr["known_total"] == 0.0 and pr["queried_in_sample"] == 3
    assert pr["cost"] == pytest.approx(v.sum() - v[11])
    assert (pr["allocation"], pr["queries"]) == ("neyman (surrogate spreads)", "random")
    assert sel.diagnostics["estimation_verdict"] == (
        "For estimating the total loss: stratified by the clusters (neyman (surrogate spreads) "
        "allocation, the queried rows counted as the first draw of their cluster): unbiased, "
        "with a variance at most a uniform sample's of the same size up to the rounding of "
        "the allocation.")
    # the control estimate uses the recorded surrogate total and the selected rows' values
    y = np.arange(1.0, 8.0)
    assert sel.estimate_total(y).value != pytest.approx(
        sel.estimate_total(y, method="weighted").value, rel=1e-6)


def _random_rows_stratified(rows, size):
    """The stratified step on ``_step_pool`` with rows 1, 4 and 8 queried (random rows)."""
    from coreselect.sensitivity import sample_selection

    return sample_selection(rows, query_indices=np.array([1, 4, 8]),
                            query_losses=np.array([1.0, 2.0, 3.0]), query_points=None,
                            size=size, lam="auto", replace=True, rng=np.random.default_rng(2),
                            design="stratified", queries="random")


def test_stratified_step_with_random_rows_and_no_surrogate_is_proportional_with_two_each():
    rows, labels, v = _step_pool()
    sel = _random_rows_stratified(rows, 5)
    # strata of 4, 3, 5 rows, 8 draws, two at least: 8 * (4, 3, 5) / 12 = (2.67, 2, 3.33)
    alloc = np.array([3, 2, 3])
    counts = np.bincount(labels[sel.indices], minlength=3)
    np.testing.assert_array_equal(counts, alloc)
    np.testing.assert_allclose(sel.probabilities, (alloc / np.array([4, 3, 5]))[labels[sel.indices]])
    assert sel.params["allocation"] == "proportional" and sel.params["strata"] == 3
    assert sel.params["cost"] == pytest.approx(v.sum())
    # with only 4 draws more (7 in all, 6 forced by the minimum of 2): still 2 at least
    small = _random_rows_stratified(rows, 3)
    assert np.bincount(labels[small.indices], minlength=3).min() == 2


def test_sample_step_auto_rules_by_hand():
    from coreselect.sensitivity import sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    common = dict(query_indices=q, query_losses=np.array([1.0, 2.0, 3.0]), query_points=None,
                  lam="auto", replace=False, rng=np.random.default_rng(0), design="auto")
    # too few queried rows for the smoothness check: stratified
    sel = sample_selection(rows, size=4, **common)
    assert sel.params["design"] == "stratified"
    assert sel.params["design_rule"] == "auto: 0 queried rows, too few to check that the loss is smooth"
    # more draws than the rows not queried: Algorithm 1 (9 rows left)
    sel = sample_selection(rows, size=10, **common)
    assert sel.params["design"] == "sensitivity"
    assert sel.params["design_rule"] == ("auto: size=10 is more than the 9 rows a draw without "
                                         "replacement can take")
    # exactly as many as there are: stratified (the draw takes them all)
    assert sample_selection(rows, size=9, **common).params["design"] == "stratified"
    # fewer draws than clusters with the centers queried: Algorithm 1
    sel = sample_selection(rows, size=2, **common)
    assert sel.params["design_rule"] == "auto: size=2 is less than one draw per cluster"
    assert sample_selection(rows, size=3, **common).params["design"] == "stratified"
    # random queried rows count as the first draw: 2 more draws are enough
    sel = sample_selection(rows, size=2, queries="random", **common)
    assert sel.params["design"] == "stratified"


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("lam", ["auto", 0.5])
def test_sensitivity_step_with_a_surrogate_by_hand(replace, lam):
    from coreselect.sensitivity import inclusion_probabilities, sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    losses = np.array([1.0, 2.0, 3.0])
    g = np.array([0.5, 1.0, 0.2, 0.4, 2.0, 0.1, 0.3, 0.6, 1.5, 0.2, 0.9, 0.7])
    mix = 0.1
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=None,
                           size=4, lam=lam, replace=replace, rng=np.random.default_rng(3),
                           design="sensitivity", surrogate=g, mix=mix, exclude=np.array([11]))
    fit = calibrate_surrogate(g[q], losses, weights=np.array([4, 3, 5]))
    ghat, spread = fit.predict(g), fit.spread(g)
    out = [11] if replace else [0, 5, 9, 11]
    keep = np.ones(12, dtype=bool)
    keep[out] = False
    lam_value = 0.0 if lam == "auto" else 0.5
    mass = np.where(keep, spread + lam_value * v, 0.0)
    p = np.where(keep, (1 - mix) * mass / mass.sum() + mix / keep.sum(), 0.0)
    assert p.sum() == pytest.approx(1.0)
    assert set(sel.indices.tolist()) <= set(np.flatnonzero(keep).tolist())
    if replace:
        np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-12)
        np.testing.assert_allclose(sel.weights, 1 / (4 * p[sel.indices]), rtol=1e-12)
    else:
        pi = inclusion_probabilities(p, 4, keep)
        np.testing.assert_allclose(sel.probabilities, pi[sel.indices], rtol=1e-12)
        assert np.unique(sel.indices).shape[0] == 4
    np.testing.assert_allclose(sel.surrogate, ghat[sel.indices], rtol=1e-12)
    pr = sel.params
    assert pr["proposal"] == "surrogate spread per row + lam v"
    assert pr["lam"] == lam_value
    if lam == "auto":
        assert pr["lam_rule"] == ("auto with a surrogate: 0, each row has its own predicted "
                                  "spread (with a floor)")
    known = [] if replace else [0, 5, 9]
    cover = np.ones(12, dtype=bool)
    cover[[11] + known] = False
    assert pr["surrogate_total"] == pytest.approx(ghat[cover].sum(), rel=1e-12)
    assert pr["known_total"] == pytest.approx(losses.sum() if not replace else 0.0)
    assert pr["cost"] == pytest.approx(v[keep].sum())


def test_sample_step_auto_with_a_surrogate_reports_the_predicted_variances():
    from coreselect.sensitivity import choose_design, sample_selection

    rows, labels, v, spread_unused, q, losses, _ = _big_pool(k=40)
    g = np.random.default_rng(9).uniform(0.1, 2.0, labels.shape[0])
    ex = np.array([4, 50])
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=None,
                           size=50, lam=0.7, replace=False, rng=np.random.default_rng(0),
                           design="auto", surrogate=g, queries="random", mix=0.1, exclude=ex)
    fit = calibrate_surrogate(g[q], losses, weights=rows.sizes)
    predicted = _predicted_variances(rows, fit.spread(g), size=50, lam=0.7, mix=0.1,
                                     exclude=ex, query_indices=q, replace=False, members=True,
                                     ghat=fit.predict(g), losses=losses)
    assert (sel.params["design"], sel.params["design_rule"]) == choose_design(
        None, None, None, surrogate_var=predicted)


# ------------------------------------------------------- draws in strata, edges
def test_draw_in_strata_refuses_more_than_a_stratum_holds():
    from coreselect.sensitivity import draw_in_strata

    rows, labels, v = _step_pool()
    rng = np.random.default_rng(0)
    # cluster 1 holds rows 4, 5, 6; with row 5 out, two are left
    idx, strata = draw_in_strata(rows, np.array([0, 2, 0]), rng, np.array([5]))
    assert sorted(idx.tolist()) == [4, 6] and strata.tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"^draw_in_strata: an allocation exceeds its "
                                         r"stratum's available rows\.$"):
        draw_in_strata(rows, np.array([0, 3, 0]), rng, np.array([5]))
    idx, strata = draw_in_strata(rows, np.zeros(3, dtype=np.int64), rng)
    assert idx.shape == (0,) and idx.dtype == np.int64 and strata.dtype == np.int64
    # no rows out: any row may come, one of each cluster here
    for seed in range(20):
        idx, strata = draw_in_strata(rows, np.ones(3, dtype=np.int64), np.random.default_rng(seed))
        assert labels[idx].tolist() == [0, 1, 2] and strata.tolist() == [0, 1, 2]


def test_draw_members_needs_a_row_in_every_cluster():
    from coreselect.sensitivity import draw_members

    rows, labels, v = _step_pool()
    rng = np.random.default_rng(0)
    # one row left in cluster 1 (rows 4 and 5 out): that row is its member
    got = draw_members(rows, rng, np.array([4, 5]))
    assert got[1] == 6 and labels[got].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"^draw_members: a cluster has no row to draw\.$"):
        draw_members(rows, rng, np.array([4, 5, 6]))


def test_stratum_spreads_of_a_stratum_with_one_row():
    from coreselect.sensitivity import _stratum_spreads

    rows, labels, v = _step_pool()
    spread = np.arange(1.0, 13.0)
    # cluster 1 with rows 4 and 5 out: only row 6 (spread 7) is left
    got = _stratum_spreads(rows, spread, np.array([4, 5]), np.array([4, 1, 5]))
    np.testing.assert_allclose(got, [np.sqrt((1 + 4 + 9 + 16) / 4), 7.0,
                                     np.sqrt((64 + 81 + 100 + 121 + 144) / 5)])


def test_stratified_step_minimum_draws_with_the_centers_and_a_surrogate():
    from coreselect.sensitivity import sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    g = np.array([0.5, 9.0, 9.0, 9.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    sel = sample_selection(rows, query_indices=q, query_losses=np.array([1.0, 2.0, 3.0]),
                           query_points=None, size=5, lam="auto", replace=True,
                           rng=np.random.default_rng(0), design="stratified", surrogate=g)
    # cluster 0's rows have the large spreads: Neyman gives it 3 (all it has left), and one
    # draw each (not two) to the others
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), [3, 1, 1])


def test_stratified_step_with_random_rows_below_two_draws_each():
    rows, labels, v = _step_pool()
    sel = _random_rows_stratified(rows, 2)
    # 5 draws in strata of 4, 3 and 5 rows: too few for two each; 5 (4, 3, 5) / 12 =
    # (1.67, 1.25, 2.08): (2, 1, 2)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), [2, 1, 2])


def test_stratified_step_diagnostics_are_the_report_of_its_own_draw():
    from coreselect.diagnostics import selection_diagnostics
    from coreselect.sensitivity import sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    points = np.array([[0.0, 0.0], [5.0, 1.0], [9.0, 3.0]])
    losses = np.array([1.0, 2.0, 3.0])
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=points,
                           size=5, lam="auto", replace=True, rng=np.random.default_rng(0),
                           design="stratified", exclude=np.array([11]), z=1.5,
                           holder_quantile=0.8, theorem="Theorem 4")
    gone = np.array([0, 5, 9, 11])
    prob = sel.probabilities
    want = selection_diagnostics(
        p_summary=(12 - 4, 0, prob.min() / 5, prob.max() / 5), indices=sel.indices,
        weights=sel.weights, query_points=points, query_losses=losses,
        cluster_sizes=np.array([4, 3, 5]), cost=v.sum() - v[gone].sum(), hat_total=16.0,
        lam=0.0, lam_rule="not used", z=1.5, size=5, replace=False, mix=0.0,
        holder_quantile=0.8, theorem="Theorem 4")
    got = dict(sel.diagnostics)
    for key in ("design", "warnings", "estimation_verdict", "verdict"):
        got.pop(key)
        want.pop(key, None)
    assert got == want
    assert sel.diagnostics["warnings"] == []


@pytest.mark.parametrize("replace", [True, False])
def test_sensitivity_step_counts_the_rows_that_coincide_with_their_center(replace):
    from coreselect.sensitivity import sample_selection

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    # the queried centers 0, 5 and 9 have v = 0, and so do rows 2 and 7 (copies of them)
    v = np.array([0.0, 1.0, 0.0, 0.5, 0.3, 0.0, 1.0, 0.0, 0.4, 0.0, 0.6, 0.8])
    rows = memory_rows(labels, v, 3, starts=np.array([0, 5, 12]))
    sel = sample_selection(rows, query_indices=np.array([0, 5, 9]),
                           query_losses=np.array([1.0, 2.0, 3.0]), query_points=None, size=4,
                           lam=1.0, replace=replace, rng=np.random.default_rng(0),
                           design="sensitivity")
    said = [w for w in sel.diagnostics["warnings"] if "coincide with their center" in w]
    # of the rows that can be drawn: 12, or 9 without the queried ones
    share = "17%" if replace else "22%"
    assert said and said[0].startswith(f"2 rows ({share}) coincide with their center")


def test_calibration_with_a_slope_below_1_and_a_small_surrogate():
    g = np.linspace(0.1, 1.0, 30)
    fit = calibrate_surrogate(g, 0.2 + 0.5 * g)
    assert (fit.a, fit.b) == (pytest.approx(0.2, rel=1e-9), pytest.approx(0.5, rel=1e-9))
    assert (fit.shape_a, fit.shape_b) == (pytest.approx(0.2, rel=1e-9), pytest.approx(0.5, rel=1e-9))
    # scale only, with sum w g = 0.4 < 1: b = sum w l / sum w g
    few = calibrate_surrogate(np.array([0.1, 0.2, 0.1]), np.array([0.3, 0.5, 0.0]))
    assert few.a == 0.0 and few.b == pytest.approx(0.8 / 0.4, rel=1e-12)


# ------------------------------------------------------------ edges of the draws
def test_sensitivity_step_draws_a_block_of_one_row_with_a_surrogate():
    from coreselect.sensitivity import sample_selection

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    v = np.array([0.0, 1.0, 2.0, 0.5, 0.3, 0.0, 1.0, 0.2, 0.4, 0.0, 0.6, 0.8])
    rows = memory_rows(labels, v, 3, starts=np.array([0, 1, 12]))   # block 0: row 0 alone
    g = np.full(12, 1.0)
    sel = sample_selection(rows, query_indices=np.array([0, 5, 9]),
                           query_losses=np.array([1.0, 2.0, 3.0]), query_points=None,
                           size=3000, lam=0.0, replace=True, rng=np.random.default_rng(4),
                           design="sensitivity", surrogate=g)
    # equal spreads, lam = 0: every row 1/12; row 0 (its own block) about 250 times
    np.testing.assert_allclose(sel.probabilities, 1 / 12, rtol=1e-12)
    assert 180 < np.count_nonzero(sel.indices == 0) < 320


def test_sensitivity_step_uniform_mix_over_the_rows_not_excluded():
    from coreselect.sensitivity import sample_selection

    rows, labels, v = _step_pool()           # blocks: rows 0-4 and 5-11
    sel = sample_selection(rows, query_indices=np.array([0, 5, 9]),
                           query_losses=np.array([1.0, 2.0, 3.0]), query_points=None,
                           size=4000, lam=1.0, mix=1.0, replace=True,
                           rng=np.random.default_rng(5), design="sensitivity",
                           exclude=np.array([1, 2, 3]))
    # mix = 1: uniform over the 9 rows left; the first block keeps 2 of them (rows 0, 4)
    np.testing.assert_allclose(sel.probabilities, 1 / 9, rtol=1e-12)
    first = np.count_nonzero(sel.indices < 5)
    assert abs(first / 4000 - 2 / 9) < 0.03


def test_no_coincidence_warning_on_a_small_pool_without_copies():
    from coreselect.sensitivity import sample_selection

    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    v = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 1.0, 0.3, 0.2, 0.0, 0.6])   # only the centers
    rows = memory_rows(labels, v, 3)
    sel = sample_selection(rows, query_indices=np.array([0, 4, 8]),
                           query_losses=np.array([1.0, 2.0, 3.0]), query_points=None, size=3,
                           lam=1.0, replace=True, rng=np.random.default_rng(0),
                           design="sensitivity")
    assert not [w for w in sel.diagnostics["warnings"] if "coincide" in w]


def test_stratified_step_cost_below_1_and_spreads_with_the_queried_rows():
    from coreselect.sensitivity import _stratum_spreads, sample_selection

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    v = 0.01 * np.array([0.0, 1.0, 2.0, 0.5, 0.3, 0.0, 1.0, 0.2, 0.4, 0.0, 0.6, 0.8])
    rows = memory_rows(labels, v, 3, starts=np.array([0, 5, 12]))
    q = np.array([1, 4, 8])
    # the queried row of cluster 0 has by far the largest predicted loss
    g = np.array([0.1, 50.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    losses = np.array([1.0, 2.0, 3.0])
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=None,
                           size=6, lam="auto", replace=True, rng=np.random.default_rng(1),
                           design="stratified", surrogate=g, queries="random")
    assert sel.params["cost"] == pytest.approx(v.sum(), rel=1e-12) and v.sum() < 1
    fit = calibrate_surrogate(g[q], losses, weights=np.array([4, 3, 5]))
    sizes = np.array([4, 3, 5])
    # the spreads include the queried rows (they belong to their strata's samples)
    s_h = _stratum_spreads(rows, fit.spread(g), np.empty(0, dtype=np.int64), sizes)
    alloc = neyman_allocation(sizes, s_h, 9, np.minimum(sizes, 2))
    without = _stratum_spreads(rows, fit.spread(g), q, sizes)
    assert neyman_allocation(sizes, without, 9, np.minimum(sizes, 2)).tolist() != alloc.tolist()
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), alloc)


@pytest.mark.parametrize("replace", [True, False])
def test_sample_step_auto_with_a_surrogate_and_many_rows_excluded(replace):
    from coreselect.sensitivity import choose_design, sample_selection

    rows, labels, v, _, q, losses, _ = _big_pool(k=40)
    g = np.random.default_rng(9).uniform(0.1, 2.0, labels.shape[0])
    ex = np.setdiff1d(np.arange(0, 120, 2), q)      # half the rows, none of the queried
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=None,
                           size=30, lam=0.7, replace=replace, rng=np.random.default_rng(0),
                           design="auto", surrogate=g, queries="random", mix=0.1, exclude=ex)
    fit = calibrate_surrogate(g[q], losses, weights=rows.sizes)
    predicted = _predicted_variances(rows, fit.spread(g), size=30, lam=0.7, mix=0.1,
                                     exclude=ex, query_indices=q, replace=replace,
                                     members=True, ghat=fit.predict(g), losses=losses)
    assert sel.params["design_rule"] == choose_design(None, None, None,
                                                      surrogate_var=predicted)[1]
    ignored = _predicted_variances(rows, fit.spread(g), size=30, lam=0.7, mix=0.1,
                                   exclude=None, query_indices=q, replace=replace,
                                   members=True, ghat=fit.predict(g), losses=losses)
    assert choose_design(None, None, None, surrogate_var=ignored)[1] != sel.params["design_rule"]


def test_sample_step_auto_weighs_the_smoothness_check_by_cluster_size():
    from coreselect.sensitivity import sample_selection

    # 12 clusters, one queried row each, at the points and losses of the R^2 = 0.5 case:
    # unweighted the check passes (0.5), weighted by the sizes it fails
    points, losses = _pairs([5.0, -4.0, -1.0, 0.0, 0.0, 0.0])
    sizes = np.repeat([1, 1, 1, 3, 3, 3], 2)
    labels = np.repeat(np.arange(12), sizes)
    rows = memory_rows(labels, np.ones(labels.shape[0]), 12)
    q = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sel = sample_selection(rows, query_indices=q, query_losses=losses, query_points=points,
                           size=12, lam="auto", replace=False, rng=np.random.default_rng(0),
                           design="auto")
    assert sel.params["design"] == "stratified"
    assert "R^2 of the queried losses" in sel.params["design_rule"]


def test_stratified_step_with_the_centers_leaves_their_spreads_out_of_the_allocation():
    from coreselect.sensitivity import _stratum_spreads, sample_selection

    rows, labels, v = _step_pool()
    q = np.array([0, 5, 9])
    g = np.full(12, 0.1)
    g[5] = 50.0                       # the center of cluster 1: known, never drawn
    sel = sample_selection(rows, query_indices=q, query_losses=np.array([1.0, 2.0, 3.0]),
                           query_points=None, size=5, lam="auto", replace=True,
                           rng=np.random.default_rng(0), design="stratified", surrogate=g)
    fit = calibrate_surrogate(g[q], np.array([1.0, 2.0, 3.0]), weights=np.array([4, 3, 5]))
    avail = np.array([3, 2, 4])
    s_h = _stratum_spreads(rows, fit.spread(g), q, avail)
    alloc = neyman_allocation(avail, s_h, 5, 1)
    with_centers = _stratum_spreads(rows, fit.spread(g), np.empty(0, dtype=np.int64), avail)
    assert neyman_allocation(avail, with_centers, 5, 1).tolist() != alloc.tolist()
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), alloc)
