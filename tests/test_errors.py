"""Every bad input gets a clear error that names the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest

import coreselect as cs

X = np.random.default_rng(0).normal(size=(50, 3))
LOSS = np.abs(X[:, 0])
ORACLE = LOSS.__getitem__


def run(**kw):
    args = dict(X=X, oracle=ORACLE, size=10, n_clusters=5, seed=0)
    args.update(kw)
    return cs.sensitivity_sample(args.pop("X"), args.pop("oracle"), args.pop("size"), **args)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(X=np.where(np.arange(150).reshape(50, 3) == 52, np.nan, X)), ValueError,
         r"X contains NaN at row 17, column 1"),
        (dict(X=np.where(np.arange(150).reshape(50, 3) == 7, np.inf, X)), ValueError,
         r"X contains inf at row 2"),
        (dict(X=X[:, 0]), ValueError, r"X must be a 2-D array.*got 1-D"),
        (dict(X=X[None]), ValueError, r"X must be a 2-D array.*got 3-D"),
        (dict(X=np.empty((0, 3))), ValueError, r"X has 0 rows"),
        (dict(X=np.empty((5, 0))), ValueError, r"X has 0 columns"),
        (dict(X=np.array([["a", "b"]])), TypeError, r"X must hold numbers"),
        (dict(n_clusters=0), ValueError, r"n_clusters must be an int in \[1, n=50\]; got 0"),
        (dict(n_clusters=51), ValueError, r"n_clusters must be an int in \[1, n=50\]; got 51"),
        (dict(n_clusters=2.5), TypeError, r"n_clusters must be an int"),
        (dict(size=0), ValueError, r"size must be an int >= 1; got 0"),
        (dict(size=51, replace=False), ValueError, r"size must be at most n=50 when replace=False"),
        (dict(z=0.5), ValueError, r"z must be a finite real number >= 1; got 0.5"),
        (dict(z="2"), TypeError, r"z must be a real number"),
        (dict(lam=-1.0), ValueError, r"lam must be a finite float >= 0; got -1.0"),
        (dict(lam=float("nan")), ValueError, r"lam must be a finite float >= 0; got nan"),
        (dict(lam="big"), ValueError, r"lam must be a float >= 0 or one of \['auto'\]"),
        (dict(seed="x"), TypeError, r"seed must be None, an int or a numpy.random.Generator"),
        (dict(oracle=42), TypeError, r"oracle must be callable"),
        (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1; got 0"),
    ],
)
def test_bad_input_messages(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        run(**kwargs)


def test_size_larger_than_n_with_replacement_is_fine():
    sel = run(size=200)
    assert sel.size == 200


@pytest.mark.parametrize(
    "answer, exc, match",
    [
        (lambda idx: np.ones(len(idx) - 1), ValueError, r"the oracle returned 4 values for 5"),
        (lambda idx: np.where(idx == idx[2], np.nan, 1.0), ValueError,
         r"the oracle returned nan for index \d+; losses must be finite"),
        (lambda idx: np.where(idx == idx[1], -2.0, 1.0), ValueError,
         r"the oracle returned -2.0 for index \d+; losses must be >= 0"),
        (lambda idx: ["1.0", "x", "2", "3", "4"], TypeError,
         r"the oracle returned a non-numeric value 'x' for index \d+"),
        (lambda idx: np.ones((len(idx), 2)), ValueError, r"an array of shape \(5, 2\)"),
    ],
)
def test_bad_oracle_answers(answer, exc, match):
    with pytest.raises(cs.OracleError) as info:
        run(oracle=answer)
    cause = info.value.__cause__
    assert isinstance(cause, exc)
    assert re.search(match, str(cause)), str(cause)
    assert re.search(match, str(info.value)), str(info.value)


def test_bad_oracle_answer_names_the_index():
    asked = []

    def bad(idx):
        asked.append(np.array(idx))
        out = np.ones(len(idx))
        out[3] = np.nan
        return out

    with pytest.raises(cs.OracleError) as info:
        run(oracle=bad)
    # the index the oracle was given in 4th place (the oracle is asked in its own order, not
    # necessarily that of query_indices_)
    assert f"for index {asked[0][3]}" in str(info.value)


def test_sample_before_fit_and_bad_query_losses():
    with pytest.raises(RuntimeError, match="not fitted"):
        cs.SensitivitySampler(3).sample([1, 2, 3], 5)
    sampler = cs.SensitivitySampler(3, seed=0).fit(X)
    with pytest.raises(ValueError, match=r"query_losses: 2 values for 3 indices"):
        sampler.sample([1.0, 2.0], 5)
    with pytest.raises(ValueError, match=r"query_losses: -1.0 for index"):
        sampler.sample([1.0, -1.0, 2.0], 5)
    with pytest.raises(ValueError, match="no loss for 1 of the 3"):
        q = sampler.query_indices_
        sampler.sample({int(q[0]): 1.0, int(q[1]): 1.0}, 5)


def test_estimate_errors():
    sel = run()
    with pytest.raises(ValueError, match=r"losses: 3 values; expected 15 \(one per selected "
                       r"row\), 10 \(the rows after the 5 queried ones"):
        sel.estimate_total([1.0, 2.0, 3.0])
    plain = run(design="sensitivity")
    with pytest.raises(ValueError, match=r"losses: 3 values for 10 indices"):
        plain.estimate_total([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="method must be"):
        sel.estimate_total(LOSS[sel.indices], method="magic")
    uni = cs.Selection(indices=[0, 1], weights=[1, 1], probabilities=[0.5, 0.5], n=2)
    with pytest.raises(ValueError, match="method='difference' needs"):
        uni.estimate_total([1.0, 1.0], method="difference")
    # the whole pool's losses are accepted too
    assert sel.estimate_total(LOSS).value == sel.estimate_total(LOSS[sel.indices]).value


def test_memmap_accepted_without_full_copy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, X.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    from coreselect._validation import check_embeddings

    assert check_embeddings(mm) is mm
    ref = run(X=X.astype(np.float32))
    np.testing.assert_array_equal(run(X=mm).indices, ref.indices)
