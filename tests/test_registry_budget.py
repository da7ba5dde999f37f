"""Every registry strategy spends exactly ``size`` new labels, none of them ``labelled``, and
the registry's bad-input errors name the argument."""

from __future__ import annotations

import numpy as np
import pytest

from coreselect.baselines import STRATEGIES, get_strategy

ALL = sorted(STRATEGIES)
WITH_PROBS = sorted(n for n, e in STRATEGIES.items() if "probs" in e["requires"])


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1.0, (100, 4)) for c in (0.0, 5.0, 10.0)])
    z = rng.normal(size=(300, 3)) * 2
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    loss = (X ** 2).sum(axis=1) / 10
    return X, probs, loss


def _new_labels(sel) -> np.ndarray:
    """The rows whose label the selection asks for: the selected ones and the queried ones
    (which the stratified design lists among the selected ones)."""
    if sel.query_indices is None or sel.params.get("queried_in_sample"):
        return sel.indices
    return np.concatenate([sel.indices, sel.query_indices])


def test_every_strategy_is_listed():
    assert {"uniform", "kcenter", "margin", "least_confidence", "entropy", "badge",
            "cluster_margin", "sensitivity", "leverage"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size,n_labelled", [(20, 0), (40, 90), (57, 200), (100, 200)])
def test_size_new_labels_none_labelled(name, size, n_labelled, pool):
    X, probs, loss = pool
    asked = []

    def oracle(idx):
        asked.append(np.asarray(idx).copy())
        return loss[idx]

    rng = np.random.default_rng(size + n_labelled)
    labelled = (np.sort(rng.choice(300, n_labelled, replace=False)) if n_labelled else None)
    for seed in range(3):
        asked.clear()
        sel = get_strategy(name)(size, X=X, probs=probs, oracle=oracle, labelled=labelled,
                                 seed=seed)
        new = _new_labels(sel)
        assert new.shape == (size,), (name, new.shape)
        assert np.unique(new).size == size, name  # distinct rows: size new labels exactly
        if labelled is not None:
            assert not np.isin(new, labelled).any(), name
        if asked:  # the oracle was asked about new rows only, each once
            q = np.concatenate(asked)
            assert np.unique(q).size == q.size and np.isin(q, new).all()
            if labelled is not None:
                assert not np.isin(q, labelled).any()


@pytest.mark.parametrize("name", ALL)
def test_labelled_errors_name_the_argument(name, pool):
    X, probs, loss = pool
    select = get_strategy(name)
    kw = {"X": X, "probs": probs, "oracle": loss.__getitem__, "seed": 0}
    with pytest.raises(ValueError, match=r"labelled must lie in \[0, 300\); got 300 at position 1"):
        select(10, labelled=[0, 300], **kw)
    with pytest.raises(ValueError, match=r"labelled must lie in \[0, 300\); got -1"):
        select(10, labelled=[-1], **kw)
    with pytest.raises(ValueError, match="labelled must hold distinct rows; row 7 appears more"):
        select(10, labelled=[3, 7, 7], **kw)
    with pytest.raises(ValueError, match="labelled leaves no row to select: it holds all 300"):
        select(10, labelled=np.arange(300), **kw)
    with pytest.raises(TypeError, match="labelled must hold integers"):
        select(10, labelled=[0.5], **kw)
    with pytest.raises(ValueError, match="size must be at most"):
        select(11, labelled=np.arange(290), **kw)


@pytest.mark.parametrize("name", WITH_PROBS)
def test_probs_errors_name_the_argument(name, pool):
    X, probs, _ = pool
    select = get_strategy(name)
    bad = probs.copy()
    bad[4] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="probs rows must sum to 1 .* row 4 sums to 1.5"):
        select(5, X=X, probs=bad, seed=0)
    bad = probs.copy()
    bad[6, 2] = np.nan
    with pytest.raises(ValueError, match="probs contains NaN at row 6, column 2"):
        select(5, X=X, probs=bad, seed=0)
    with pytest.raises(ValueError, match="probs must be a 2-D array"):
        select(5, X=X, probs=probs[:, 0], seed=0)
    with pytest.raises(ValueError, match="probs must have at least 2 columns"):
        select(5, X=X, probs=np.ones((300, 1)), seed=0)
    if "X" in STRATEGIES[name]["requires"]:
        with pytest.raises(ValueError, match="X and probs must have one row per pool row; got "
                                             "300 rows in X and 299 in probs"):
            select(5, X=X, probs=probs[:299], seed=0)
    with pytest.raises(ValueError, match=rf"strategy '{name}' needs probs"):
        select(5, X=X, seed=0)


def test_sensitivity_spends_size_on_a_pool_of_few_distinct_rows():
    import warnings

    X = np.repeat(np.arange(3.0)[:, None], 100, axis=0)  # 300 rows, 3 distinct vectors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = get_strategy("sensitivity")(40, X=X, oracle=lambda i: np.ones(len(i)), seed=0)
    assert np.unique(_new_labels(sel)).size == 40
