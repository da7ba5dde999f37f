"""Hugging Face datasets integration."""

from __future__ import annotations

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

import coreselect as cs  # noqa: E402
from coreselect import Selection  # noqa: E402
from coreselect.integrations.huggingface import (  # noqa: E402
    dataset_embeddings,
    select_rows,
    sensitivity_select,
)


@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 10, size=(5, 3))
    comp = rng.integers(5, size=300)
    emb = (centers[comp] + rng.normal(0, 0.3, size=(300, 3))).astype(np.float32)
    ds = datasets.Dataset.from_dict({
        "text": [f"row {i}" for i in range(300)],
        "label": comp.tolist(),
        "embeddings": emb.tolist(),
    })
    return ds, emb, comp


def test_embeddings_column(pool):
    ds, emb, _ = pool
    got = dataset_embeddings(ds)
    assert got.shape == (300, 3)
    np.testing.assert_array_equal(got, emb)


def test_embeddings_of_a_shuffled_view(pool):
    ds, emb, _ = pool
    view = ds.select([5, 2, 9])
    np.testing.assert_array_equal(dataset_embeddings(view), emb[[5, 2, 9]])


def test_fixed_size_array_feature():
    feats = datasets.Features({"e": datasets.Array2D(shape=(1, 2), dtype="float64")})
    ds = datasets.Dataset.from_dict({"e": [[[1.0, 2.0]], [[3.0, 4.0]]]}, features=feats)
    with pytest.raises(ValueError, match="shape"):
        dataset_embeddings(ds, "e")  # (n, 1, 2): one vector a row is expected
    feats = datasets.Features({"e": datasets.Sequence(datasets.Value("float32"), length=2)})
    ds = datasets.Dataset.from_dict({"e": [[1.0, 2.0], [3.0, 4.0]]}, features=feats)
    got = dataset_embeddings(ds, "e")
    assert got.dtype == np.float32 and got.shape == (2, 2)


def test_errors(pool):
    ds, _, _ = pool
    with pytest.raises(ValueError, match="column"):
        dataset_embeddings(ds, "nope")
    with pytest.raises(TypeError, match="numbers"):
        dataset_embeddings(ds, "text")
    ragged = datasets.Dataset.from_dict({"embeddings": [[1.0, 2.0], [1.0]]})
    with pytest.raises(ValueError, match="one length"):
        dataset_embeddings(ragged)
    with pytest.raises(TypeError, match="DatasetDict"):
        dataset_embeddings(datasets.DatasetDict({"train": ds}))
    sel = Selection(indices=[1], weights=[1.0], probabilities=[1.0], n=5)
    with pytest.raises(ValueError, match="selection.n=5"):
        select_rows(ds, sel)
    sel = Selection(indices=[1], weights=[1.0], probabilities=[1.0], n=300)
    with pytest.raises(ValueError, match="already has a column 'label'"):
        select_rows(ds, sel, weights_column="label")


def test_select_rows_by_hand():
    ds = datasets.Dataset.from_dict({"x": [10, 11, 12, 13, 14, 15]})
    sel = Selection(indices=[4, 1, 4, 4], weights=[1.0, 3.0, 1.0, 1.0],
                    probabilities=[0.1] * 4, n=6, replace=True)
    sub = select_rows(ds, sel, power=1.0, normalize=False)
    assert sub.to_dict() == {"x": [11, 14], "weight": [3.0, 3.0], "pool_index": [1, 4]}
    # the default: the queried rows not drawn too, weight 1; tempered weights of mean 1
    sel2 = Selection(indices=[4, 1, 4, 4], weights=[1.0, 8.0, 1.0, 1.0],
                     probabilities=[0.1] * 4, n=6, replace=True, query_indices=[0, 4],
                     query_losses=[0.5, 0.5])
    sub = select_rows(ds, sel2)
    root = np.sqrt([8.0, 3.0])
    assert sub["pool_index"][:] == [1, 4, 0]
    np.testing.assert_allclose(sub["weight"][:], np.r_[2 * root / root.sum(), 1.0])
    sub = select_rows(ds, sel, normalize=True, index_column=None, weights_column="w")
    assert sub.to_dict() == {"x": [11, 14], "w": [1.0, 1.0]}
    assert select_rows(ds, sel, weights_column=None, index_column=None).column_names == ["x"]


def test_sensitivity_select_matches_the_core(pool):
    ds, emb, comp = pool
    loss = comp.astype(float) + 0.1
    sub, sel = sensitivity_select(ds, loss.__getitem__, 60, n_clusters=5, seed=3)
    ref = cs.sensitivity_sample(emb.astype(np.float32), loss.__getitem__, 60, n_clusters=5,
                                seed=3)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_allclose(sel.weights, ref.weights)
    uniq, w = sel.training_weights()
    assert sub["pool_index"][:] == uniq.tolist()
    np.testing.assert_allclose(sub["weight"][:], w)
    assert set(uniq.tolist()) == set(sel.all_labelled()[0].tolist())
    # the rows are the pool's rows
    assert sub["text"][:] == [f"row {i}" for i in uniq]
    # with the sample weights as drawn, the weighted loss of the subset is the selection's
    # estimate of the total
    est = sel.estimate_total(loss[sel.indices]).value
    raw = select_rows(ds, sel, power=1.0, normalize=False, include_queries=False)
    np.testing.assert_allclose(np.dot(raw["weight"][:], loss[raw["pool_index"][:]]), est)
