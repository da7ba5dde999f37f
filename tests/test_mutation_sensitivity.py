"""lam rules, inclusion probabilities and draws, case by hand: the tests that kill the
mutants of sensitivity.py (``make mutation``; see tests/test_mutation_selection.py).

Every expected number is computed by hand here, not read back from the code.

Surviving mutants that are equivalent (mutmut 3.8; no input a caller can give tells them
apart, or only a uniform that falls exactly on a float boundary), by kind:

- dtypes: ``np.asarray(x, dtype=np.float64)`` or ``.astype(np.float64)`` with the dtype None
  or dropped (``block_masses``, ``block_probabilities``, ``row_probabilities``,
  ``sensitivity_probabilities``, ``_sensitivity_draw`` (Algorithm 1's draw in ``_sensitivity_draw``)'s losses and ``hat_total``): the inputs
  are float64 already (``check_losses``, the row state) and each value meets a float
  (``lam * v``, ``/ total``) before it is stored; ``astype(None)`` is float64. ``_iid_block``'s
  ``labels[pos]`` as int64, dtype dropped: a row state's labels are int64. ``_sensitivity_draw``'s
  ``idx = np.empty(size, dtype=np.int64)`` as float64: it holds row numbers, exact in float64,
  and ``Selection`` casts them.
- ``searchsorted(..., side="right")`` as ``"left"`` (``_iid_block``, the block choice of
  ``_sensitivity_draw``): they differ only for a uniform equal to a cumulative sum, which has
  probability 0 (about 2**-53 a draw). ``draw_without_replacement``'s is killed: its
  ``_Stub`` hits a boundary on purpose.
- clamps that only guard against rounding: ``np.minimum(pos, p.shape[0] - 1)`` with ``+ 1``
  (``_iid_block``), ``np.minimum(..., rows.n_blocks - 1)`` with ``+ 1`` (``u < bounds[-1]``
  always), ``np.minimum(pos, n - 1)`` with ``n + 1`` (``draw_without_replacement``: after the
  rescaling the last point ``u + size - 1`` is below ``cum[-1] == size``); and the rescalings
  by a factor equal to 1 up to rounding: ``u = rng.random(size) / bounds[-1]`` for ``*``,
  ``cum /= size / cum[-1]`` for ``*=``.
- ``inclusion_probabilities``: ``c * p >= 1.0`` as ``> 1.0`` (a row with ``c p == 1`` left free
  gets ``pi = c p = 1`` all the same); ``pi[capped] = 1.0`` as ``2.0`` and the final
  ``np.minimum(pi, 1.0)`` as ``2.0`` (each alone: the other one restores 1).
- ``_sensitivity_draw``: ``np.arange(rows.n_blocks + 2)`` for ``+ 1`` (a last cut never read);
  the ``else np.empty(0)`` branch mutated or forced off (``n_blocks == 0`` is an empty pool,
  which the validation refuses); the argsort kind of ``order`` dropped, None or "STABLE" (any
  order that groups the draws by block writes each block's draws back where they were read;
  numpy reads "STABLE" as "stable"); in the zero-mass fallback ``d_lam = 1.0``,
  ``total = 2.0`` and ``masses = np.zeros_like(None)``, all multiplied by ``1 - d_mix = 0``;
  (before main's 8e9a2ac, ``_zero_mass_warning(5)`` for 4 survived: mutmut's trampolines add
  frames; the warning now names the first frame outside the package, and
  ``test_zero_mass_warning_points_at_the_caller_of_sample`` checks it).
- ``_strata_block``: ``np.array(labels, dtype=np.int64)`` with the dtype None or dropped (a
  row state's labels are int64, and ``np.array`` copies, so the excluded rows are not written
  into the pool's labels either way); ``argsort(lab, kind="STABLE")`` (numpy reads it as
  "stable"); ``np.bincount(lab, minlength=k + 1)`` with the minlength dropped, ``k - 1`` or
  ``k + 2``: only the offsets ``first[h]`` of strata the block holds are read, and those do
  not depend on the length. Under mutmut 3.8 these show as "timeout", not "survived": their
  forked worker hangs in a futex wait (the same mutant passes the same tests in a plain
  ``pytest`` run in ./mutants, ``MUTANT_UNDER_TEST`` set, in about 20 s).
- ``proportional_allocation`` (also "timeout" under mutmut, for the same reason):
  ``np.asarray(sizes, dtype=np.int64)`` with the dtype None or dropped (integer sizes are
  int64 already, and ``alloc`` is cast to int64 whatever they are); ``nonempty = sizes >= 0``
  (an empty stratum then gets ``max(1, 0) = 1``, which ``np.minimum(alloc, sizes)`` brings
  back to 0); ``max(2, sizes.sum())`` for ``max(1, ...)``: they differ only when the strata
  hold one row in all, and that row's allocation is capped at 1 either way;
  ``np.where(nonempty, ..., 1)`` for ``0`` (the same cap brings an empty stratum back to 0);
  ``while alloc.sum() >= size`` for ``>``: the extra trim adds 1 to the trimmed stratum's
  remainder, which puts it first in the order of the remainders, and the draw goes back to
  it (no input found that tells them apart; not proved).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from coreselect.pools.state import memory_rows
from coreselect.sensitivity import (
    _checked_total,
    _excluded,
    _strata_block,
    block_masses,
    block_probabilities,
    draw_sample,
    draw_with_replacement,
    draw_without_replacement,
    inclusion_probabilities,
    proportional_allocation,
    resolve_lam,
    row_probabilities,
    sample_selection,
    sensitivity_probabilities,
)


# ---------------------------------------------------------------------------- resolve_lam
def test_resolve_lam_given():
    assert resolve_lam(2.5, 3.0, 1.0) == (2.5, "given")
    assert resolve_lam(0, 3.0, 1.0) == (0.0, "given")
    lam, rule = resolve_lam(np.float32(0.5), 0.0, 0.0)  # given wins over the auto cases
    assert (lam, rule) == (0.5, "given") and type(lam) is float


def test_resolve_lam_auto_half_the_mass_each():
    rule = "auto: lam = sum(l_hat) / Phi (half the mass each)"
    assert resolve_lam("auto", 3.0, 4.0) == (0.75, rule)
    assert resolve_lam("auto", 0.5, 0.25) == (2.0, rule)
    assert resolve_lam("auto", 2.0, 0.5)[0] == 4.0  # Phi below 1 is not Phi = 0
    assert resolve_lam("auto", 0.5, 2.0)[0] == 0.25  # losses below 1 are not all 0


def test_resolve_lam_auto_when_phi_is_zero():
    assert resolve_lam("auto", 3.0, 0.0) == (0.0, "auto: Phi = 0, distances carry no mass")
    assert resolve_lam("auto", 0.0, 0.0) == (0.0, "auto: Phi = 0, distances carry no mass")
    assert resolve_lam("auto", 3.0, -1.0)[0] == 0.0


def test_resolve_lam_auto_when_all_losses_are_zero():
    assert resolve_lam("auto", 0.0, 4.0) == (
        1.0, "auto: all query losses are 0, sampling by distance only")
    assert resolve_lam("auto", -1.0, 4.0)[0] == 1.0


@pytest.mark.parametrize("lam, exc, match", [
    (-1.0, ValueError, r"^lam must be a finite float >= 0; got -1.0\.$"),
    ("big", ValueError, r"^lam must be a float >= 0 or one of \['auto'\]; got 'big'\.$"),
    (None, TypeError, r"^lam must be a float >= 0"),
])
def test_resolve_lam_checks_lam(lam, exc, match):
    with pytest.raises(exc, match=match):
        resolve_lam(lam, 1.0, 1.0)


# ---------------------------------------------------------------- inclusion_probabilities
def test_inclusion_probabilities_by_hand():
    # c = 3 / 1 = 3: 0.5 and 0.3 reach 1 -> capped; then c = 1 / 0.2 = 5: [0.5, 0.25, 0.25]
    pi = inclusion_probabilities(np.array([0.5, 0.3, 0.1, 0.05, 0.05]), 3)
    np.testing.assert_allclose(pi, [1.0, 1.0, 0.5, 0.25, 0.25], rtol=1e-12)
    # two rounds of capping: c = 2 / 1 caps 0.6 only; then c = 1 / 0.4 caps nothing
    pi = inclusion_probabilities(np.array([0.6, 0.2, 0.1, 0.1]), 2)
    np.testing.assert_allclose(pi, [1.0, 0.5, 0.25, 0.25], rtol=1e-12)
    # no capping at all: pi = size p
    pi = inclusion_probabilities(np.array([0.25, 0.25, 0.25, 0.25]), 2)
    np.testing.assert_allclose(pi, [0.5] * 4, rtol=1e-12)


def test_inclusion_probabilities_cascade():
    # c = 3 / 1.0 caps 0.7 (2.1); then c = 2 / 0.3 = 6.67 caps 0.2 (1.33); then c = 1 / 0.1
    p = np.array([0.7, 0.2, 0.05, 0.05])
    pi = inclusion_probabilities(p, 3)
    np.testing.assert_allclose(pi, [1.0, 1.0, 0.5, 0.5], rtol=1e-12)


def test_inclusion_probabilities_unnormalised_p():
    # only the ratios of p matter
    pi = inclusion_probabilities(np.array([5.0, 3.0, 1.0, 0.5, 0.5]), 3)
    np.testing.assert_allclose(pi, [1.0, 1.0, 0.5, 0.25, 0.25], rtol=1e-12)


def test_inclusion_probabilities_with_zero_rows():
    # fewer positive rows than the size: all of them, and the rest uniformly over the zeros
    np.testing.assert_allclose(inclusion_probabilities(np.array([0.5, 0.5, 0.0, 0.0]), 3),
                               [1, 1, 0.5, 0.5])
    np.testing.assert_allclose(inclusion_probabilities(np.array([0.0, 0.2, 0.0, 0.0, 0.8]), 4),
                               [2 / 3, 1, 2 / 3, 2 / 3, 1])
    # exactly as many positive rows as the size: zeros keep 0
    np.testing.assert_array_equal(inclusion_probabilities(np.array([0.5, 0.0, 0.5]), 2),
                                  [1.0, 0.0, 1.0])
    # more positive rows than the size: zeros keep 0 and the positive ones share
    np.testing.assert_allclose(inclusion_probabilities(np.array([0.5, 0.0, 0.25, 0.25]), 2),
                               [1.0, 0.0, 0.5, 0.5])


def test_inclusion_probabilities_size_n():
    np.testing.assert_array_equal(inclusion_probabilities(np.array([0.7, 0.2, 0.1]), 3), 1.0)
    np.testing.assert_array_equal(inclusion_probabilities(np.array([0.0, 0.0, 1.0]), 3), 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_inclusion_probabilities_sum_to_size_and_stay_below_one(seed):
    rng = np.random.default_rng(seed)
    p = rng.pareto(1.0, size=50) * (rng.random(50) < 0.8)
    for size in (1, 5, 20, 39, 40, 45, 50):
        pi = inclusion_probabilities(p, size)
        assert pi.sum() == pytest.approx(size, rel=1e-12)
        assert np.all((pi >= 0) & (pi <= 1))
        assert pi.dtype == np.float64 and pi.shape == (50,)
        # the order of p is kept among the rows that are not capped or zero
        free = (pi < 1) & (p > 0)
        if free.sum() > 1 and (p > 0).sum() > size:
            np.testing.assert_allclose(pi[free] / p[free], pi[free][0] / p[free][0], rtol=1e-9)


# --------------------------------------------------------------- draw_without_replacement
class _Stub:
    """A generator whose permutation is the identity and whose uniform is fixed."""

    def __init__(self, u):
        self.u = u

    def permutation(self, n):
        return np.arange(n)

    def random(self):
        return self.u


def test_systematic_draw_by_hand():
    pi = np.array([0.5, 0.5, 1.0, 0.25, 0.75])  # cum [0.5, 1, 2, 2.25, 3]; size 3
    assert draw_without_replacement(pi, _Stub(0.25)).tolist() == [0, 2, 4]  # 0.25, 1.25, 2.25
    assert draw_without_replacement(pi, _Stub(0.75)).tolist() == [1, 2, 4]  # 0.75, 1.75, 2.75
    assert draw_without_replacement(pi, _Stub(0.1)).tolist() == [0, 2, 3]  # 0.1, 1.1, 2.1
    out = draw_without_replacement(pi, _Stub(0.6))
    assert out.dtype == np.int64


def test_systematic_draw_takes_the_permuted_order_and_sorts():
    class Reverse(_Stub):
        def permutation(self, n):
            return np.arange(n)[::-1].copy()

    pi = np.array([0.5, 0.5, 1.0, 0.25, 0.75])  # reversed: [0.75, 0.25, 1, 0.5, 0.5]
    # cum [0.75, 1, 2, 2.5, 3]; u = 0.8: points 0.8, 1.8, 2.8 -> positions 1, 2, 4 -> rows 3, 2, 0
    assert draw_without_replacement(pi, Reverse(0.8)).tolist() == [0, 2, 3]


def test_systematic_draw_size_is_the_rounded_sum():
    rng = np.random.default_rng(0)
    pi = np.full(10, 0.1)  # sums to 0.9999999999999999 in floating point
    assert draw_without_replacement(pi, rng).shape == (1,)
    pi = np.full(30, 0.1)  # 3.0000000000000004
    out = draw_without_replacement(pi, rng)
    assert out.shape == (3,) and np.unique(out).shape == (3,)
    assert draw_without_replacement(np.full(7, 3 / 7), rng).shape == (3,)


def test_systematic_draw_of_every_row():
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 17):
        assert draw_without_replacement(np.ones(n), rng).tolist() == list(range(n))


def test_systematic_draw_last_row_reachable():
    # the last row in the order (and only it) has the largest point
    pi = np.array([0.5, 0.5, 1.0])
    assert draw_without_replacement(pi, _Stub(0.99)).tolist() == [1, 2]
    assert draw_without_replacement(np.array([0.2, 0.8]), _Stub(0.999)).tolist() == [1]


def test_systematic_draw_rows_with_zero_probability_never_come():
    rng = np.random.default_rng(2)
    pi = np.array([0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0])
    for _ in range(200):
        out = draw_without_replacement(pi, rng)
        assert out.shape == (3,) and not set(out.tolist()) & {0, 2, 5}
        assert {1, 6} <= set(out.tolist())


def test_systematic_draw_frequencies_match_pi():
    rng = np.random.default_rng(3)
    pi = inclusion_probabilities(np.array([0.4, 0.3, 0.1, 0.1, 0.05, 0.05]), 3)
    counts = np.zeros(6)
    reps = 3000
    for _ in range(reps):
        counts[draw_without_replacement(pi, rng)] += 1
    se = np.sqrt(pi * (1 - pi) / reps) + 1e-12
    assert np.all(np.abs(counts / reps - pi) <= 4.5 * se)


# ------------------------------------------------------------------ the one sample step
# Six rows on a line, centers 1 and 4 (labels [0,0,0,1,1,1]), v = [1,0,1,1,0,1] (Phi = 4),
# losses at the centers [2, 4]: mass = l_hat + lam v; with lam = 1 it is [3,2,3,5,4,5] / 22
# (sum l_hat = 3*2 + 3*4 = 18).
LABELS = np.array([0, 0, 0, 1, 1, 1])
V = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
QI = np.array([1, 4])
QL = np.array([2.0, 4.0])
P1 = np.array([3.0, 2.0, 3.0, 5.0, 4.0, 5.0]) / 22


def six_rows(block_rows=6, labels=LABELS, v=V):
    return memory_rows(labels, v, 2, block_rows=block_rows)


def step(rows=None, *, size=8, lam=1.0, replace=True, seed=0, mix=0.0, losses=QL,
         query_points=None, **kw):
    rows = six_rows() if rows is None else rows
    return sample_selection(rows, query_indices=QI, query_losses=losses,
                            query_points=query_points,
                            size=size, lam=lam, replace=replace,
                            rng=np.random.default_rng(seed), mix=mix, **kw)


def test_block_probabilities_by_hand():
    p = block_probabilities(LABELS, V, QL, 1.0, 22.0, 0.0, 6)
    np.testing.assert_allclose(p, P1, rtol=1e-15)
    p = block_probabilities(LABELS[3:], V[3:], QL, 2.0, 10.0, 0.0, 6)  # a block, lam = 2
    np.testing.assert_allclose(p, [0.6, 0.4, 0.6], rtol=1e-15)
    p = block_probabilities(LABELS, V, QL, 1.0, 22.0, 0.4, 6)  # mixed: 0.4 / 6 + 0.6 p
    np.testing.assert_allclose(p, 0.4 / 6 + 0.6 * P1, rtol=1e-15)
    p = block_probabilities(LABELS[:2], V[:2], QL, 1.0, 22.0, 0.4, 10)  # n is the pool's
    np.testing.assert_allclose(p, 0.04 + 0.6 * P1[:2], rtol=1e-15)
    ints = block_probabilities(LABELS, V.astype(np.int64), QL, 1.0, 22.0, 0.0, 6)
    np.testing.assert_allclose(ints, P1, rtol=1e-15)


def test_block_masses_by_hand():
    rows = six_rows(block_rows=4)  # blocks [0, 4) and [4, 6)
    np.testing.assert_array_equal(rows.counts, [[3, 1], [0, 2]])
    np.testing.assert_allclose(block_masses(rows, QL, 1.0), [3 * 2 + 4 + 3, 2 * 4 + 1])
    np.testing.assert_allclose(block_masses(rows, [2, 4], 0.5), [10 + 1.5, 8 + 0.5])


def test_row_probabilities_by_hand():
    for block_rows in (1, 4, 6):
        rows = six_rows(block_rows)
        np.testing.assert_allclose(row_probabilities(rows, QL, 1.0), P1, rtol=1e-15)
        np.testing.assert_allclose(row_probabilities(rows, QL, 1.0, mix=0.4),
                                   0.4 / 6 + 0.6 * P1, rtol=1e-15)
    zero = six_rows(v=np.zeros(6))
    np.testing.assert_array_equal(row_probabilities(zero, [0.0, 0.0], 1.0), np.full(6, 1 / 6))
    assert row_probabilities(zero, [0.0, 1.0], 0.0).tolist() == [0, 0, 0, 1 / 3, 1 / 3, 1 / 3]


def test_checked_total():
    assert _checked_total(1e-300) is True
    assert _checked_total(0.0) is False and _checked_total(-1.0) is False
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match=r"^the sampling mass is not finite; are the "
                                             r"losses or distances huge\?$"):
            _checked_total(bad)


def test_sample_step_with_replacement_by_hand():
    sel = step(size=8)
    assert sel.n == 6 and sel.size == 8 and sel.replace and sel.method == "sensitivity"
    np.testing.assert_allclose(sel.probabilities, P1[sel.indices], rtol=1e-15)
    np.testing.assert_allclose(sel.weights, 1 / (8 * P1[sel.indices]), rtol=1e-15)
    assert sel.centers.tolist() == [[1, 1, 1, 4, 4, 4][i] for i in sel.indices]
    assert sel.query_indices.tolist() == [1, 4] and sel.query_losses.tolist() == [2.0, 4.0]
    assert sel.cluster_sizes.tolist() == [3, 3]
    assert sel.params == {"lam": 1.0, "lam_rule": "given", "z": 2.0, "n_clusters": 2,
                          "cost": 4.0, "hat_total": 18.0, "size": 8, "mix": 0.0,
                          "path": "in-memory", "design": "sensitivity",
                          "design_rule": "given", "queries": "centers"}
    d = sel.diagnostics
    assert d["theorem"] == "Theorem 5" and d["zero_probability_rows"] == 0
    assert d["min_np"] == pytest.approx(6 * 2 / 22) and d["max_np"] == pytest.approx(6 * 5 / 22)
    assert d["Phi"] == 4.0 and d["sum_l_hat"] == 18.0 and d["lam"] == 1.0


def test_sample_step_provenance_arguments():
    sel = step(size=3, z=1.0, n_clusters=5, method="adaptive", path="spilled",
               params={"round": 2}, theorem="Theorem 6", holder_quantile=0.5)
    assert sel.method == "adaptive" and sel.params["path"] == "spilled"
    assert sel.params["z"] == 1.0 and sel.params["n_clusters"] == 5 and sel.params["round"] == 2
    assert sel.diagnostics["theorem"] == "Theorem 6"
    # lam_rule given: lam is used as it is (not resolved again)
    sel = step(lam=0.25, lam_rule="the caller's")
    assert sel.params["lam"] == 0.25 and sel.params["lam_rule"] == "the caller's"
    mass = np.array([2, 2, 2, 4, 4, 4]) + 0.25 * V
    np.testing.assert_allclose(sel.probabilities, (mass / mass.sum())[sel.indices], rtol=1e-15)


def test_sample_step_auto_lam():
    sel = step(lam="auto")
    assert sel.params["lam"] == 4.5  # 18 / 4
    assert sel.params["lam_rule"] == "auto: lam = sum(l_hat) / Phi (half the mass each)"
    mass = np.array([2, 2, 2, 4, 4, 4]) + 4.5 * V
    np.testing.assert_allclose(sel.probabilities, (mass / 36)[sel.indices], rtol=1e-15)


@pytest.mark.parametrize("mix", [0.0, 0.3])
def test_sample_step_is_the_same_draw_whatever_the_blocks(mix):
    base = step(size=400, seed=5, mix=mix)
    for block_rows in (1, 2, 3, 4, 5):
        got = step(six_rows(block_rows), size=400, seed=5, mix=mix)
        np.testing.assert_array_equal(got.indices, base.indices)
        np.testing.assert_allclose(got.probabilities, base.probabilities, rtol=1e-15)
        np.testing.assert_array_equal(got.centers, base.centers)
    # and the same as one draw from the full vector p
    p = mix / 6 + (1 - mix) * P1
    ref = draw_with_replacement(p, 400, np.random.default_rng(5))
    np.testing.assert_array_equal(base.indices, ref)


@pytest.mark.parametrize("block_rows", [1, 4, 6])
@pytest.mark.parametrize("mix", [0.0, 0.5])
def test_sample_step_frequencies(block_rows, mix):
    sel = step(six_rows(block_rows), size=20000, seed=1, mix=mix)
    p = mix / 6 + (1 - mix) * P1
    freq = np.bincount(sel.indices, minlength=6) / 20000
    assert np.all(np.abs(freq - p) <= 4.5 * np.sqrt(p * (1 - p) / 20000))
    np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-14)


def test_sample_step_rows_of_zero_probability_never_come():
    v = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # center 4's cluster: no distance
    for block_rows in (1, 2, 6):
        sel = step(six_rows(block_rows, v=v), size=500, losses=np.array([1.0, 0.0]))
        assert not set(sel.indices.tolist()) & {3, 4, 5}
        assert sel.diagnostics["zero_probability_rows"] == 3
        assert sel.diagnostics["min_np"] == 0.0


def test_sample_step_zero_mass_falls_back_to_uniform():
    zero = six_rows(v=np.zeros(6))
    # with replacement: uniform over the 6 rows; without: over the 4 rows not queried (the
    # queried rows 1 and 4 have known losses and are not drawn)
    for replace, pi, w in ((True, 1 / 6, 6 / 3), (False, 3 / 4, 4 / 3)):
        with pytest.warns(RuntimeWarning, match="falling back to uniform sampling") as rec:
            sel = step(zero, size=3, replace=replace, losses=np.zeros(2), lam="auto", mix=0.2)
        assert len(rec) == 1
        np.testing.assert_allclose(sel.probabilities, pi, rtol=1e-15)
        np.testing.assert_allclose(sel.weights, w, rtol=1e-15)
        assert sel.params["mix"] == 0.2  # the mix asked for is kept in the provenance
        assert sel.diagnostics["min_np"] == pytest.approx(1.0)
        assert replace or not set(sel.indices.tolist()) & {1, 4}


# Without replacement the queried rows 1 and 4 are not drawn (their losses are known): the
# draw is over rows 0, 2, 3, 5 with mass [3, 3, 5, 5] / 16.
P_OUT = np.array([3.0, 0.0, 3.0, 5.0, 0.0, 5.0]) / 16


def test_sample_step_without_replacement_by_hand():
    # pi = min(1, c p) with sum 3: 3 * 5 / 16 < 1, so pi = 3 p
    for block_rows in (1, 4, 6):
        sel = step(six_rows(block_rows), size=3, replace=False, seed=2)
        assert sel.size == 3 and np.unique(sel.indices).shape == (3,)
        assert not sel.replace and np.all(np.diff(sel.indices) > 0)
        assert not set(sel.indices.tolist()) & {1, 4}
        np.testing.assert_allclose(sel.probabilities, 3 * P_OUT[sel.indices], rtol=1e-14)
        np.testing.assert_allclose(sel.weights, 1 / (3 * P_OUT[sel.indices]), rtol=1e-14)
        assert sel.centers.tolist() == [[1, 1, 1, 4, 4, 4][i] for i in sel.indices]
        d = sel.diagnostics
        assert d["min_np"] == pytest.approx(4 * 3 / 16) and d["max_np"] == pytest.approx(20 / 16)
        # the known losses of the queried rows: 2 + 4, added exactly by the estimate
        p = sel.params
        assert p["known_total"] == 6.0 and p["hat_total"] == 12.0 and p["hat_covered"] == 18.0
        assert p["excluded"] == 0 and p["n_covered"] == 6
        y = np.ones(3)
        assert sel.estimate_total(y).value == pytest.approx(6.0 + sel.weights.sum())
    # every row: all of them, with weight 1
    sel = step(size=6, replace=False)
    assert sel.indices.tolist() == list(range(6)) and sel.weights.tolist() == [1.0] * 6


def test_sample_step_without_replacement_inclusion_frequencies():
    counts = np.zeros(6)
    reps = 2000
    for r in range(reps):
        counts[step(six_rows(4), size=2, replace=False, seed=r).indices] += 1
    pi = 2 * P_OUT
    assert counts[1] == counts[4] == 0
    assert np.all(np.abs(counts / reps - pi) <= 4.5 * np.sqrt(pi * (1 - pi) / reps) + 1e-12)


# ------------------------------------------------------- probabilities and the plain draws
def test_sensitivity_probabilities_by_hand():
    np.testing.assert_allclose(sensitivity_probabilities([2, 2, 2, 4, 4, 4], V, 1.0), P1)
    np.testing.assert_allclose(sensitivity_probabilities([2, 2, 2, 4, 4, 4], V, 1.0, mix=0.4),
                               0.4 / 6 + 0.6 * P1)
    with pytest.warns(RuntimeWarning, match="falling back to uniform") as rec:
        p0 = sensitivity_probabilities(np.zeros(4), np.zeros(4), 1.0, mix=0.3)
    np.testing.assert_array_equal(p0, 0.25)
    # stacklevel: the warning points at the caller (here, or mutmut's trampoline), not at
    # the library's own line
    assert f"{os.sep}coreselect{os.sep}" not in rec[0].filename, rec[0].filename
    with pytest.raises(ValueError, match="not finite"):
        sensitivity_probabilities([1.0, np.inf], [0.0, 0.0], 1.0)


def test_draw_with_replacement_by_hand():
    class U:
        def __init__(self, u):
            self.u = np.asarray(u, dtype=np.float64)

        def random(self, size):
            assert size == self.u.shape[0]
            return self.u

    p = np.array([0.25, 0.0, 0.5, 0.25])  # cdf [0.25, 0.25, 0.75, 1]
    got = draw_with_replacement(p, 5, U([0.0, 0.2, 0.25, 0.74, 0.9]))
    assert got.tolist() == [0, 0, 2, 2, 3] and got.dtype == np.int64
    # unnormalised p: the uniforms are scaled by the total
    assert draw_with_replacement(2 * p, 2, U([0.3, 0.8])).tolist() == [2, 3]
    # a uniform at the very end stays on the last row
    assert draw_with_replacement(np.array([0.5, 0.5]), 1, U([1.0])).tolist() == [1]


def test_draw_sample_both_ways():
    p = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    idx, prob, w = draw_sample(p, 4, True, np.random.default_rng(0))
    # the uniforms [.637, .270, .041, .017] against the cdf [.5, .8, .9, .95, 1]
    assert idx.tolist() == [1, 0, 0, 0] and idx.dtype == np.int64
    np.testing.assert_array_equal(prob, p[idx])
    np.testing.assert_allclose(w, 1 / (4 * p[idx]))
    idx, prob, w = draw_sample(p, 3, False, np.random.default_rng(0))
    pi = np.array([1.0, 1.0, 0.5, 0.25, 0.25])
    assert idx.shape == (3,) and {0, 1} <= set(idx.tolist())
    np.testing.assert_allclose(prob, pi[idx])
    np.testing.assert_allclose(w, 1 / pi[idx])


def test_sample_step_default_mix_is_zero():
    sel = sample_selection(six_rows(), query_indices=QI, query_losses=QL, query_points=None,
                           size=5, lam=1.0, replace=True, rng=np.random.default_rng(0))
    np.testing.assert_allclose(sel.probabilities, P1[sel.indices], rtol=1e-15)
    assert sel.params["mix"] == 0.0 and sel.diagnostics["mix"] == 0.0


def test_sample_step_a_block_with_one_draw():
    # six blocks of one row and three draws: most blocks get 0 or 1 uniform
    for seed in range(10):
        one = step(six_rows(1), size=3, seed=seed)
        np.testing.assert_array_equal(one.indices, step(size=3, seed=seed).indices)
        np.testing.assert_allclose(one.probabilities, P1[one.indices], rtol=1e-15)


def test_sample_step_with_an_empty_block():
    # a pool cut as [0, 3), [3, 3), [3, 6): an empty block (a Dask partition can be) is
    # skipped and changes neither the draw nor the diagnostics
    from coreselect.pools.state import MemoryRows, block_summary

    starts = np.array([0, 3, 3, 6])
    rows = MemoryRows(6, 2, starts, LABELS.copy(), V.copy())
    for b in range(3):
        rows.counts[b], rows.vsum[b] = block_summary(LABELS[starts[b]:starts[b + 1]],
                                                     V[starts[b]:starts[b + 1]], 2)
    for replace in (True, False):
        got = step(rows, size=3, replace=replace, seed=4)
        ref = step(six_rows(3), size=3, replace=replace, seed=4)
        np.testing.assert_array_equal(got.indices, ref.indices)
        for key in ("zero_probability_rows", "min_np", "max_np"):
            assert got.diagnostics[key] == ref.diagnostics[key], key
        assert got.diagnostics["zero_probability_rows"] == 0
        assert got.diagnostics["max_np"] == pytest.approx(30 / 22 if replace else 20 / 16)


def test_sample_step_hands_its_arguments_to_the_diagnostics():
    points = np.array([[1.0, 0.0], [4.0, 0.5]])  # the two centers' embeddings
    kw = dict(lam=0.5, lam_rule="the caller's", mix=0.25)
    for replace in (True, False):
        sel = step(size=4, replace=replace, query_points=points, holder_quantile=0.5, **kw)
        d = sel.diagnostics
        assert d["lam_rule"] == "the caller's" and d["mix"] == 0.25 and d["lam"] == 0.5
        assert d["holder"] is not None and d["holder"]["quantile"] == 0.5
        iid = any("stated for i.i.d. draws" in w for w in d["warnings"])
        assert iid == (not replace)
    d = step(size=4, query_points=points).diagnostics
    assert d["holder"]["quantile"] == 0.9  # the default


_ZERO_MASS = (r"^all query losses are 0 and all points coincide with their centers "
              r"\(total mass 0\): falling back to uniform sampling\.$")


def test_zero_mass_warning_text():
    with pytest.warns(RuntimeWarning, match=_ZERO_MASS):
        step(six_rows(v=np.zeros(6)), losses=np.zeros(2), lam="auto")
    with pytest.warns(RuntimeWarning, match=_ZERO_MASS):
        sensitivity_probabilities(np.zeros(3), np.zeros(3), 1.0)


def test_zero_mass_warning_points_at_the_caller_of_sample():
    # pointed at coreselect/sampler.py before main's 8e9a2ac (found by the mutation tests)
    import coreselect as cs

    sampler = cs.SensitivitySampler(1, seed=0, design="sensitivity").fit(np.ones((6, 2)))
    with pytest.warns(RuntimeWarning, match="falling back") as rec:
        sampler.sample([0.0], 3, seed=0)
    # (under mutmut the first frame outside the package is its trampoline's)
    assert rec[0].filename == __file__ or f"{os.sep}mutmut{os.sep}" in rec[0].filename


# ------------------------------------------------------------ resolve_lam: Phi negligible
def test_resolve_lam_auto_when_phi_is_negligible():
    rule = "auto: Phi is negligible next to sum(l_hat), distances carry no mass"
    assert resolve_lam("auto", 1e300, 1e-300) == (0.0, rule)
    lam, _ = resolve_lam("auto", 1e300, 1e-8)  # large but finite
    assert lam == pytest.approx(1e308)


# ------------------------------------------------------------------ the allocation
@pytest.mark.parametrize("sizes, size, expected", [
    ([10, 30, 0, 60], 10, [1, 3, 0, 6]),  # exact quotas; an empty stratum gets 0
    ([3, 3, 4], 5, [2, 1, 2]),  # quotas [1.5, 1.5, 2]: the remainder to the first tie
    ([1, 4, 5], 9, [1, 4, 4]),  # quotas [.9, 3.6, 4.5]: the full stratum 0 is skipped
    ([1, 4, 5], 12, [1, 4, 5]),  # more than the pool: every row, no more
    ([1, 1, 1, 97], 4, [1, 1, 1, 1]),  # at least one each: trim the big one twice
    # quotas [.06, .06, .06, 2.82, 3.0]: floors [1, 1, 1, 2, 3] = 8; trim the smallest
    # remainder first (stratum 4, then stratum 3 whose .82 is now below 1.0)
    ([1, 1, 1, 47, 50], 6, [1, 1, 1, 1, 2]),
    # the same strata the other way round: trim stratum 3 (remainder 0), then 4 (.82 < 1.0)
    ([1, 1, 1, 50, 47], 6, [1, 1, 1, 2, 1]),
    # quotas [.08] * 5 + [3.2, 6.4]: floors 14; trims 5 (.2), 6 (.4), 5 (1.2), 6 (only one > 1)
    ([1, 1, 1, 1, 1, 40, 80], 10, [1, 1, 1, 1, 1, 1, 4]),
    ([0, 0], 0, [0, 0]),
    ([5, 0, 3], 2, [1, 0, 1]),
])
def test_proportional_allocation_by_hand(sizes, size, expected):
    alloc = proportional_allocation(np.array(sizes), size)
    assert alloc.tolist() == expected and alloc.dtype == np.int64


def test_proportional_allocation_takes_lists():
    assert proportional_allocation([2, 6], 4).tolist() == [1, 3]


# -------------------------------------------------------------------- excluded rows
def test_excluded_rows():
    q = np.array([4, 1])
    got = _excluded(6, 3, np.array([0]), q, replace=True)  # with replacement: exclude only
    assert got.tolist() == [0] and got.dtype == np.int64
    got = _excluded(6, 3, None, q, replace=True)
    assert got.tolist() == [] and got.dtype == np.int64
    got = _excluded(6, 3, [0], q, replace=False)  # 6 - 3 = 3 rows remain: enough
    assert got.tolist() == [0, 1, 4] and got.dtype == np.int64
    assert _excluded(6, 4, [0], q, replace=False).tolist() == [0]  # 3 < 4: exclude only
    assert _excluded(6, 4, None, q, replace=False).tolist() == [1, 4]  # 4 remain
    assert _excluded(6, 5, None, q, replace=False).tolist() == []
    assert _excluded(6, 2, [4], q, replace=False).tolist() == [1, 4]


def test_strata_block_picks_by_stratum_and_rank():
    labels = np.array([0, 1, 0, 1, 2], dtype=np.int64)  # stratum 0: rows 0, 2; 1: 1, 3; 2: 4
    none = np.empty(0, dtype=np.int64)
    got = _strata_block(labels, None, 10, (3, none, np.array([0, 1, 2, 0]),
                                           np.array([0, 0, 0, 1])))
    assert got.tolist() == [10, 11, 14, 12]
    # row 0 excluded: stratum 0 is row 2 alone, and the ranks count the available rows
    got = _strata_block(labels, None, 0, (3, np.array([0]), np.array([0, 1, 1, 2]),
                                          np.array([0, 0, 1, 0])))
    assert got.tolist() == [2, 1, 3, 4]
    assert labels.tolist() == [0, 1, 0, 1, 2]  # the block's labels are not written
    empty = _strata_block(labels, None, 5, (3, none, none, none))
    assert empty.tolist() == [] and empty.dtype == np.int64
    # a stratum beyond the block's labels and the last stratum
    got = _strata_block(np.array([2, 2, 0]), None, 0, (3, none, np.array([2, 2]),
                                                       np.array([1, 0])))
    assert got.tolist() == [1, 0]


# ------------------------------------------------------------- design="stratified"
STRAT_VERDICT = (
    "For estimating the total loss: stratified by the clusters (proportional allocation, "
    "the queried centers known "
    "exactly): unbiased, with a variance at most a uniform sample's of the same size up to "
    "the rounding of the allocation.")


@pytest.mark.parametrize("block_rows", [1, 4, 6])
def test_stratified_step_by_hand(block_rows):
    # the queried rows 1 and 4 are known; strata {0, 2} and {3, 5} (N = 2, 2); size 3:
    # quotas [1.5, 1.5], the extra draw to stratum 0: alloc [2, 1], pi = [1, 1/2]
    sel = step(six_rows(block_rows), size=3, design="stratified", seed=1, replace=True,
               lam=7.0, mix=0.3)
    assert not sel.replace and sel.size == 3
    assert sel.indices[:2].tolist() == [0, 2] and sel.indices[2] in (3, 5)
    assert sel.weights.tolist() == [1.0, 1.0, 2.0]
    assert sel.probabilities.tolist() == [1.0, 1.0, 0.5]
    assert sel.centers.tolist() == [1, 1, 4]
    assert sel.params == {
        "lam": 0.0, "lam_rule": "not used by design='stratified'", "z": 2.0, "n_clusters": 2,
        "cost": 4.0, "hat_total": 12.0, "size": 3, "mix": 0.3, "path": "in-memory",
        "design": "stratified", "allocation": "proportional", "strata": 2, "excluded": 0,
        "n_covered": 6, "known_total": 6.0, "hat_covered": 18.0, "queried_in_sample": 0,
        "design_rule": "given", "queries": "centers"}
    d = sel.diagnostics
    assert d["design"] == "stratified" and d["warnings"] == [] and d["verdict"] == STRAT_VERDICT
    assert d["zero_probability_rows"] == 0
    # p = pi / size over the 4 rows drawn from: n p in [4 * 0.5 / 3, 4 * 1 / 3]
    assert d["min_np"] == pytest.approx(2 / 3) and d["max_np"] == pytest.approx(4 / 3)
    est = sel.estimate_total(np.ones(3))
    assert est.value == 10.0 and math.isnan(est.stderr)  # stratum 4 has one draw


def test_stratified_step_same_draw_whatever_the_blocks():
    base = step(size=2, design="stratified", seed=3)
    for seed in range(6):
        ref = step(size=2, design="stratified", seed=seed)
        assert ref.indices[0] in (0, 2) and ref.indices[1] in (3, 5)
        assert ref.weights.tolist() == [2.0, 2.0] and ref.probabilities.tolist() == [0.5, 0.5]
        for block_rows in (1, 2, 4, 5):
            got = step(six_rows(block_rows), size=2, design="stratified", seed=seed)
            assert got.indices.tolist() == ref.indices.tolist()
    # every available row: weights 1
    sel = step(size=4, design="stratified")
    assert sel.indices.tolist() == [0, 2, 3, 5] and sel.weights.tolist() == [1.0] * 4
    assert base.params["strata"] == 2 and base.params["size"] == 2


def test_stratified_step_draws_both_rows_of_a_stratum_over_seeds():
    seen = {step(six_rows(2), size=2, design="stratified", seed=s).indices[1]
            for s in range(20)}
    assert seen == {3, 5}


def test_stratified_step_with_an_excluded_row():
    for block_rows in (1, 4, 6):
        sel = step(six_rows(block_rows), size=2, design="stratified", seed=1,
                   exclude=np.array([0]))
        # stratum 0 is row 2 alone: pi = 1; stratum 1: one of 3, 5 with pi = 1/2
        assert sel.indices[0] == 2 and sel.indices[1] in (3, 5)
        assert sel.probabilities.tolist() == [1.0, 0.5] and sel.weights.tolist() == [1.0, 2.0]
        p = sel.params
        assert p["excluded"] == 1 and p["n_covered"] == 5 and p["cost"] == 3.0
        assert p["hat_total"] == 10.0 and p["known_total"] == 6.0 and p["hat_covered"] == 16.0


def test_stratified_step_needs_one_draw_per_cluster():
    with pytest.raises(ValueError, match=r"^design='stratified' draws at least one row in each "
                                         r"of the 2 non-empty clusters; got size=1\. Raise "
                                         r"size or lower n_clusters\.$"):
        step(size=1, design="stratified")
    # a cluster whose rows are all excluded is empty: one draw is enough
    sel = step(size=1, design="stratified", exclude=np.array([3, 5]))
    assert sel.indices.tolist() in ([0], [2]) and sel.weights.tolist() == [2.0]
    assert sel.params["strata"] == 1


# ----------------------------------------------------------- exclude, both designs
def test_sample_step_with_replacement_and_an_excluded_row():
    # row 0 out: masses [2, 3, 5, 4, 5] / 19 over rows 1..5; the queried rows are drawn
    # (with replacement they are not skipped), so nothing is known exactly
    for block_rows in (1, 4, 6):
        sel = step(six_rows(block_rows), size=300, exclude=np.array([0]))
        p = np.array([0.0, 2, 3, 5, 4, 5]) / 19
        assert 0 not in sel.indices
        np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-14)
        np.testing.assert_allclose(sel.weights, 1 / (300 * p[sel.indices]), rtol=1e-14)
        q = sel.params
        assert q["hat_total"] == 16.0 and q["cost"] == 3.0 and q["excluded"] == 1
        assert q["n_covered"] == 5 and q["known_total"] == 0.0 and q["hat_covered"] == 16.0
        assert sel.diagnostics["min_np"] == pytest.approx(5 * 2 / 19)
    sel = step(size=5, exclude=np.array([0]), lam="auto")
    assert sel.params["lam"] == pytest.approx(16 / 3)
    # mixed: p = 0.5 / 5 + 0.5 mass / 19 over the 5 rows left
    sel = step(six_rows(4), size=300, exclude=np.array([0]), mix=0.5)
    p = 0.1 + 0.5 * np.array([0.0, 2, 3, 5, 4, 5]) / 19
    assert 0 not in sel.indices
    np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-14)


def test_sample_step_without_replacement_and_an_excluded_row():
    # rows 0 (excluded), 1 and 4 (queried) out: masses [3, 5, 5] / 13 over rows 2, 3, 5;
    # size 2: pi = 2 p = [6, 10, 10] / 13
    for block_rows in (1, 4, 6):
        sel = step(six_rows(block_rows), size=2, replace=False, seed=4, exclude=np.array([0]))
        pi = np.array([0, 0, 6, 10, 0, 10]) / 13
        assert set(sel.indices.tolist()) <= {2, 3, 5} and sel.size == 2
        np.testing.assert_allclose(sel.probabilities, pi[sel.indices], rtol=1e-14)
        q = sel.params
        assert q["hat_total"] == 10.0 and q["known_total"] == 6.0 and q["hat_covered"] == 16.0
        assert q["excluded"] == 1 and q["n_covered"] == 5 and q["cost"] == 3.0
    # a queried row excluded: only the other one (row 4, loss 4) is known
    sel = step(size=2, replace=False, exclude=np.array([1]))
    q = sel.params
    assert q["known_total"] == 4.0 and q["hat_total"] == 12.0 and q["hat_covered"] == 16.0
    assert q["excluded"] == 1 and q["n_covered"] == 5
    # too few rows left to skip the queried ones: they are drawn, nothing is known
    sel = step(size=4, replace=False, exclude=np.array([0]))
    assert 0 not in sel.indices and sel.params["known_total"] == 0.0
    assert sel.params["hat_total"] == 16.0 and sel.params["hat_covered"] == 16.0


def test_inclusion_probabilities_spare_mass_only_to_eligible_rows():
    # 2 rows with p > 0 for size 3: they are certain, the third draw is spread uniformly over
    # the zero rows that are eligible (rows 3 and 4; row 2 is excluded)
    p = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    eligible = np.array([True, True, False, True, True])
    assert inclusion_probabilities(p, 3, eligible).tolist() == [1.0, 1.0, 0.0, 0.5, 0.5]
    np.testing.assert_allclose(inclusion_probabilities(p, 3), [1, 1, 1 / 3, 1 / 3, 1 / 3])


def test_sample_step_excluding_every_row_with_a_distance():
    # rows 0, 2, 3, 5 out: Phi = 4 - 4 = 0 (not below 0); rows 1 and 4 left, masses [2, 4]
    for block_rows in (1, 4, 6):
        sel = step(six_rows(block_rows), size=50, lam="auto", exclude=np.array([0, 2, 3, 5]))
        q = sel.params
        assert q["cost"] == 0.0 and q["lam"] == 0.0 and q["hat_total"] == 6.0
        assert q["lam_rule"] == "auto: Phi = 0, distances carry no mass"
        assert set(sel.indices.tolist()) <= {1, 4}
        p = np.array([0, 2, 0, 0, 4, 0]) / 6
        np.testing.assert_allclose(sel.probabilities, p[sel.indices], rtol=1e-14)


def test_sample_step_known_losses_with_unsorted_queries():
    # the same pool with the centers queried in the order [4, 1] (labels swapped)
    rows = memory_rows(1 - LABELS, V, 2, block_rows=4)
    sel = sample_selection(rows, query_indices=np.array([4, 1]), query_losses=np.array([4.0, 2.0]),
                           query_points=None, size=2, lam=1.0, replace=False,
                           rng=np.random.default_rng(0), exclude=np.array([1]))
    # row 1 (loss 2) excluded: row 4 (loss 4) is the one known
    q = sel.params
    assert q["known_total"] == 4.0 and q["hat_total"] == 12.0 and q["hat_covered"] == 16.0
    assert set(sel.indices.tolist()) <= {0, 2, 3, 5}
    sel = sample_selection(rows, query_indices=np.array([4, 1]), query_losses=np.array([4.0, 2.0]),
                           query_points=None, size=2, lam=1.0, replace=False,
                           rng=np.random.default_rng(0), exclude=np.array([4]))
    assert sel.params["known_total"] == 2.0 and sel.params["hat_covered"] == 14.0


def test_proportional_allocation_remainders_ties_in_stratum_order():
    # sizes [3, 2] * 10, size 25: quotas [1.5, 1.0] * 10, floors 20; the 5 extra draws go
    # to the first five strata with remainder .5 (0, 2, 4, 6, 8)
    alloc = proportional_allocation(np.tile([3, 2], 10), 25)
    assert alloc.tolist() == [2, 1] * 5 + [1, 1] * 5


def test_proportional_allocation_below_one_per_stratum_gives_one_each():
    # size below the number of non-empty strata (sample_selection refuses it before): one each
    assert proportional_allocation(np.array([1, 1, 1]), 2).tolist() == [1, 1, 1]
    assert proportional_allocation(np.array([4, 0, 4]), 1).tolist() == [1, 0, 1]
