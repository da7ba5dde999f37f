from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect.sensitivity import (
    draw_without_replacement,
    inclusion_probabilities,
    resolve_lam,
    sensitivity_probabilities,
)

X6 = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])


def fitted6():
    return cs.SensitivitySampler(2, seed=0, design="sensitivity").fit(X6)


def test_hand_computed_probabilities_and_weights():
    sampler = fitted6()
    assert sampler.query_indices_.tolist() == [1, 4]
    np.testing.assert_array_equal(sampler.distances_, [1, 0, 1, 1, 0, 1])
    assert sampler.cost_ == 4.0
    sel = sampler.sample([2.0, 4.0], 1000, lam=1.0, seed=0)
    # mass = l_hat + lam v = [3, 2, 3, 5, 4, 5], normaliser lam Phi + sum l_hat = 4 + 18 = 22
    p = np.array([3, 2, 3, 5, 4, 5]) / 22
    np.testing.assert_allclose(sel.probabilities, p[sel.indices])
    np.testing.assert_allclose(sel.weights, 1 / (1000 * p[sel.indices]))
    assert sel.centers.tolist() == [[1, 1, 1, 4, 4, 4][i] for i in sel.indices]
    # every estimate of a loss proportional to the mass is exact
    est = sel.estimate_total(p[sel.indices] * 7.0)
    assert est.value == pytest.approx(7.0)
    assert est.stderr == pytest.approx(0.0, abs=1e-12)


def test_auto_lam_rule():
    sampler = fitted6()
    sel = sampler.sample([2.0, 4.0], 10, seed=0)
    assert sel.params["lam"] == pytest.approx(18 / 4)
    assert resolve_lam("auto", 0.0, 4.0)[0] == 1.0
    assert resolve_lam("auto", 3.0, 0.0)[0] == 0.0
    assert resolve_lam(2.5, 3.0, 1.0) == (2.5, "given")


def test_probabilities_sum_to_one_and_zero_mass_falls_back_to_uniform():
    p = sensitivity_probabilities(np.array([1.0, 2.0, 0.0]), np.array([0.5, 0.0, 1.0]), 2.0)
    assert p.sum() == pytest.approx(1.0)
    with pytest.warns(RuntimeWarning, match="uniform"):
        p0 = sensitivity_probabilities(np.zeros(4), np.zeros(4), 1.0)
    np.testing.assert_array_equal(p0, 0.25)


def test_all_points_identical_and_zero_losses_fall_back_to_uniform():
    X = np.ones((20, 3))
    with pytest.warns(UserWarning):
        sampler = cs.SensitivitySampler(3, seed=0, design="sensitivity").fit(X)
    with pytest.warns(RuntimeWarning, match="uniform"):
        sel = sampler.sample(np.zeros(sampler.query_indices_.shape[0]), 5, seed=1)
    np.testing.assert_allclose(sel.probabilities, 1 / 20)
    np.testing.assert_allclose(sel.weights, 20 / 5)


def test_same_seed_same_selection():
    X, _ = make_blobs(n=500, seed=1)
    loss = np.abs(X[:, 0])
    a = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=8, seed=42, design="sensitivity")
    b = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=8, seed=42, design="sensitivity")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)
    c = cs.sensitivity_sample(X, loss.__getitem__, 50, n_clusters=8, seed=43, design="sensitivity")
    assert not np.array_equal(a.indices, c.indices)


def test_inclusion_probabilities_capped_and_sum_to_size():
    p = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    pi = inclusion_probabilities(p, 3)
    assert pi.sum() == pytest.approx(3)
    assert pi.max() <= 1.0
    assert pi[0] == 1.0 and pi[1] == 1.0
    np.testing.assert_allclose(pi[2:], [0.5, 0.25, 0.25])
    # fewer positive rows than the size: zeros get the rest uniformly
    pi2 = inclusion_probabilities(np.array([0.5, 0.5, 0.0, 0.0]), 3)
    np.testing.assert_allclose(pi2, [1, 1, 0.5, 0.5])


def test_systematic_sampling_inclusion_frequencies():
    rng = np.random.default_rng(0)
    pi = inclusion_probabilities(rng.gamma(0.5, size=40) + 1e-3, 10)
    counts = np.zeros(40)
    reps = 4000
    for _ in range(reps):
        idx = draw_without_replacement(pi, rng)
        assert idx.shape[0] == 10 and np.unique(idx).shape[0] == 10
        counts[idx] += 1
    se = np.sqrt(pi * (1 - pi) / reps) + 1e-9
    assert np.all(np.abs(counts / reps - pi) <= 5 * se + 1e-12)


def test_without_replacement_distinct_and_horvitz_thompson_weights():
    X, _ = make_blobs(n=300, seed=2)
    loss = X[:, 0] ** 2
    sel = cs.sensitivity_sample(X, loss.__getitem__, 100, n_clusters=10, replace=False, seed=0, design="sensitivity")
    assert np.unique(sel.indices).shape[0] == 100
    np.testing.assert_allclose(sel.weights, 1 / sel.probabilities)
    assert sel.weights.sum() == pytest.approx(300, rel=0.25)


def test_selection_provenance_and_unique():
    X, _ = make_blobs(n=400, seed=3)
    loss = np.abs(X[:, 1])
    sel = cs.sensitivity_sample(X, loss.__getitem__, 200, n_clusters=6, seed=0, design="sensitivity")
    sampler = cs.SensitivitySampler(6, seed=0, design="sensitivity").fit(X)
    assert set(sel.centers.tolist()) <= set(sel.query_indices.tolist())
    np.testing.assert_allclose(sel.query_losses, loss[sel.query_indices])
    assert sel.cluster_sizes.sum() == 400
    idx, w = sel.unique()
    assert w.sum() == pytest.approx(sel.weights.sum())
    assert np.all(np.diff(idx) > 0)
    assert sampler.query_indices_.shape == (6,)


def test_weights_sum_to_about_n():
    X, _ = make_blobs(n=2000, seed=4)
    loss = 1.0 + np.abs(X[:, 0])
    sums = [cs.sensitivity_sample(X, loss.__getitem__, 400, n_clusters=10, seed=s, design="sensitivity").weights.sum()
            for s in range(10)]
    assert np.mean(sums) == pytest.approx(2000, rel=0.1)


def _fits(X, k, z=2.0, seeds=range(6)):
    """One sampler per clustering seed; the data are chosen so that the clusterings differ."""
    samplers = [cs.SensitivitySampler(k, z=z, seed=c, design="sensitivity").fit(X) for c in seeds]
    distinct = {tuple(sp.query_indices_.tolist()) for sp in samplers}
    assert len(distinct) >= 3, "the clustering seeds give the same clustering: the test is void"
    return samplers


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("z", [1.0, 2.0])
def test_unbiased_over_many_seeds(replace, z):
    # unbiased given the clustering, for every clustering: six clusterings (k=5 on 8
    # overlapping components, so they differ), 250 draws each; a bias that depends on the
    # clustering (cluster sizes, Phi, which rows are centers) shows in one of them
    X, comp = make_blobs(n=400, d=3, k=8, spread=3.0, seed=5)
    rng = np.random.default_rng(0)
    loss = comp * 0.5 + rng.gamma(1.0, size=400)  # not smooth: unbiasedness must not depend on it
    reps = 250
    pooled = []
    for sampler in _fits(X, 5, z=z):
        qloss = loss[sampler.query_indices_]
        est = np.empty(reps)
        for r in range(reps):
            sel = sampler.sample(qloss, 30, replace=replace, seed=r)
            est[r] = sel.estimate_total(loss[sel.indices]).value
        se = est.std(ddof=1) / math.sqrt(reps)
        assert abs(est.mean() - loss.sum()) <= 4.5 * se, sampler.query_indices_
        pooled.append(est)
    pooled = np.concatenate(pooled)
    assert abs(pooled.mean() - loss.sum()) <= 4 * pooled.std(ddof=1) / math.sqrt(pooled.size)


@pytest.mark.slow
@pytest.mark.parametrize("replace", [True, False])
def test_unbiased_over_fresh_clusterings(replace):
    # the whole pipeline, a fresh clustering for every repetition: E over clustering and draw
    X, comp = make_blobs(n=400, d=3, k=8, spread=3.0, seed=5)
    loss = comp * 0.5 + np.random.default_rng(1).gamma(1.0, size=400)
    est = np.array([
        cs.sensitivity_sample(X, loss.__getitem__, 30, n_clusters=5, replace=replace,
                              seed=r, design="sensitivity").estimate_total(loss).value
        for r in range(1500)
    ])
    assert abs(est.mean() - loss.sum()) <= 4 * est.std(ddof=1) / math.sqrt(est.size)


def test_difference_estimator_unbiased_and_tighter_for_smooth_losses():
    # six clusterings (k=8 on 6 components: they split them differently), 150 draws each
    X, comp = make_blobs(n=600, d=3, k=6, spread=0.5, seed=6)
    loss = 2.0 + comp + 0.1 * X[:, 0] ** 2 / (1 + X[:, 0] ** 2)
    reps = 150
    for sampler in _fits(X, 8):
        qloss = loss[sampler.query_indices_]
        plain, diff = [], []
        for r in range(reps):
            sel = sampler.sample(qloss, 40, seed=r)
            plain.append(sel.estimate_total(loss[sel.indices]).value)
            diff.append(sel.estimate_total(loss[sel.indices], method="difference").value)
        diff = np.array(diff)
        se = diff.std(ddof=1) / math.sqrt(reps)
        assert abs(diff.mean() - loss.sum()) <= 4.5 * se + 1e-9 * loss.sum()
        assert np.std(diff) < np.std(plain)


def _holder_constant(X, loss, z):
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)) ** z
    dl = np.abs(loss[:, None] - loss[None, :])
    mask = d > 0
    return float((dl[mask] / d[mask]).max())


@pytest.mark.parametrize("z", [1.0, 2.0])
def test_theorem5_bound_and_interval_coverage(z):
    # clustered data on a lattice (rows at distance >= 1), loss smooth in the embedding:
    # (z, lam)-Hoelder with lam computed exactly. The bound holds for any clustering, so it
    # is checked for each of six (k=10 on 8 groups: they differ), 100 draws each
    rng = np.random.default_rng(7)
    centers = rng.integers(-40, 40, size=(8, 2)) * 6
    X = np.vstack([c + rng.integers(-2, 3, size=(60, 2)) for c in centers]).astype(float)
    X = np.unique(X, axis=0)
    loss = 5.0 + 0.05 * np.abs(X).sum(axis=1) + 0.3 * np.sin(X[:, 0])
    lam = _holder_constant(X, loss, z)
    eps = 0.25
    s = math.ceil(eps**-2 * (2 + 2 * eps / 3))
    runs, covered, total = 100, 0, 0
    for sampler in _fits(X, 10, z=z):
        bound = eps * (loss.sum() + 2 * lam * sampler.cost_)
        qloss = loss[sampler.query_indices_]
        violated = 0
        for r in range(runs):
            sel = sampler.sample(qloss, s, lam=lam, seed=r)
            est = sel.estimate_total(loss[sel.indices])
            violated += abs(est.value - loss.sum()) > bound
            covered += est.ci_low <= loss.sum() <= est.ci_high
            total += 1
        assert violated / runs <= 1 / math.e, sampler.query_indices_
    assert covered / total >= 0.92


def test_oracle_is_called_in_batches_on_the_centers_only():
    X, _ = make_blobs(n=300, seed=8)
    calls = []

    def oracle(idx):
        calls.append(idx.copy())
        assert idx.dtype == np.int64
        return np.ones(len(idx))

    sel = cs.sensitivity_sample(X, oracle, 20, n_clusters=10, seed=0, batch_size=4, design="sensitivity")
    asked = np.concatenate(calls)
    assert [len(c) for c in calls] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(asked), np.sort(sel.query_indices))


def test_oracle_failure_keeps_answers_and_cache_resumes(tmp_path):
    X, _ = make_blobs(n=300, seed=9)
    loss = np.abs(X[:, 0]) + 0.1
    cache = tmp_path / "cache.csv"
    asked = []

    def flaky(idx):
        asked.append(len(idx))
        if len(asked) == 3:
            raise RuntimeError("GPU fell over")
        return loss[idx]

    with pytest.raises(cs.OracleError, match="GPU fell over") as info:
        cs.sensitivity_sample(X, flaky, 20, n_clusters=12, seed=0, batch_size=2, cache=cache, design="sensitivity")
    err = info.value
    assert len(err.answered) == 4 and len(err.missing) == 8
    assert isinstance(err.state, cs.SensitivitySampler)
    for i, v in err.answered.items():
        assert v == loss[i]
    seen = []

    def counting(idx):
        seen.extend(idx.tolist())
        return loss[idx]

    sel = cs.sensitivity_sample(X, counting, 20, n_clusters=12, seed=0, batch_size=2, cache=cache, design="sensitivity")
    assert len(seen) == 8 and not set(seen) & set(err.answered)
    ref = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=12, seed=0, design="sensitivity")
    np.testing.assert_array_equal(sel.indices, ref.indices)


def test_selection_save_load_roundtrip(tmp_path):
    X, _ = make_blobs(n=200, seed=10)
    loss = np.abs(X[:, 0])
    sel = cs.sensitivity_sample(X, loss.__getitem__, 30, n_clusters=5, seed=0, design="sensitivity")
    sel.save(tmp_path / "sel.npz")
    back = cs.Selection.load(tmp_path / "sel.npz")
    for name in ("indices", "weights", "probabilities", "centers", "query_indices",
                 "query_losses", "cluster_sizes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sel, name))
    assert back.params == sel.params and back.method == sel.method
    with pytest.raises(ValueError):
        sel.indices[0] = 3  # frozen


def test_inputs_accepted_without_copy_and_cast():
    pd = pytest.importorskip("pandas")
    X, _ = make_blobs(n=200, d=3, seed=11)
    loss = np.abs(X[:, 0])
    ref = cs.sensitivity_sample(X, loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")
    df = cs.sensitivity_sample(pd.DataFrame(X), loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")
    np.testing.assert_array_equal(ref.indices, df.indices)
    ints = np.round(X * 10).astype(np.int32)
    cs.sensitivity_sample(ints, loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")
    cs.sensitivity_sample(X.astype(np.float16), loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")
    cs.sensitivity_sample(X > 0, loss.__getitem__, 10, n_clusters=4, seed=0, design="sensitivity")


def test_huge_values_do_not_overflow():
    X, _ = make_blobs(n=200, d=3, seed=12)
    loss = np.abs(X[:, 0])
    sel = cs.sensitivity_sample(X * 1e30, loss.__getitem__, 20, n_clusters=4, seed=0, design="sensitivity")
    assert np.all(np.isfinite(sel.weights)) and np.all(sel.probabilities > 0)
    ref = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=4, seed=0, design="sensitivity")
    np.testing.assert_array_equal(sel.query_indices, ref.query_indices)


def _bars(err):
    """The final state of each progress bar: the last carriage-return segment of each line."""
    assert err.endswith("\n"), repr(err[-80:])  # every bar is closed with a newline
    return [line.split("\r")[-1].strip() for line in err[:-1].split("\n")]


def test_progress_bars_go_to_stderr_and_end_complete(capsys):
    X, _ = make_blobs(n=300, seed=8)
    loss = np.abs(X[:, 0])
    quiet = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=6, seed=0, design="sensitivity")
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # progress=False (the default) writes nothing
    sel = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=6, seed=0, batch_size=2,
                                progress=True, design="sensitivity")
    out, err = capsys.readouterr()
    assert out == ""  # nothing on stdout, ever
    last = _bars(err)
    assert [line.split(":")[0] for line in last] == ["seeding", "fitting", "assign", "oracle"]
    full = "[" + "#" * 24 + "]"
    assert last[0].startswith(f"seeding: {full} 6/6 centers")
    assert last[1].startswith("fitting: [") and " steps " in last[1]
    assert last[2].startswith(f"assign: {full} 300/300 rows")
    assert last[3].startswith(f"oracle: {full} 6/6 queries")
    assert "eta" not in last[2] + last[3]  # a finished bar shows no time left
    # the bars do not change the result
    np.testing.assert_array_equal(sel.indices, quiet.indices)
    np.testing.assert_array_equal(sel.weights, quiet.weights)


def test_progress_from_the_sampler_class(capsys):
    X, _ = make_blobs(n=200, seed=9)
    sampler = cs.SensitivitySampler(4, seed=0, progress=True, design="sensitivity").fit(X)
    out, err = capsys.readouterr()
    last = _bars(err)
    assert out == "" and [line.split(":")[0] for line in last] == ["seeding", "fitting", "assign"]
    assert last[-1].startswith("assign: [" + "#" * 24 + "] 200/200 rows")
    sampler.sample(np.ones(4), 10, seed=0)  # sampling has no bar
    assert capsys.readouterr() == ("", "")
