"""PyTorch: a WeightedRandomSampler built from a Selection."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from coreselect import Selection  # noqa: E402
from coreselect.integrations.torch import ArrayDataset, selection_sampler  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_draws_only_selected_rows_in_proportion_to_weight():
    sel = Selection(indices=[2, 7, 2], weights=[1.0, 2.0, 1.0], probabilities=[0.1] * 3, n=10,
                    replace=True)
    sampler = selection_sampler(sel, num_samples=20_000, seed=0)
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    drawn = np.fromiter(iter(sampler), dtype=np.int64)
    assert drawn.shape == (20_000,)
    assert set(drawn.tolist()) == {2, 7}
    # rows 2 and 7 have summed weights 2 and 2: half each (binomial sd 0.0035)
    assert abs(np.mean(drawn == 2) - 0.5) < 0.02


def test_default_length_and_seed():
    sel = Selection(indices=[0, 3, 3, 4], weights=[1.0] * 4, probabilities=[0.1] * 4, n=5,
                    replace=True)
    a = list(selection_sampler(sel, seed=1))
    assert len(a) == 3  # distinct selected rows
    assert a == list(selection_sampler(sel, seed=1))
    many = [tuple(selection_sampler(sel, num_samples=10, seed=s)) for s in range(5)]
    assert len(set(many)) > 1


def test_loader_mean_loss_estimates_pool_mean():
    # The unweighted mean over sampled rows estimates the weighted mean of the selection.
    n = 50
    loss = np.linspace(0.0, 1.0, n)
    sel = Selection(indices=[0, 10, 49], weights=[10.0, 20.0, 20.0], probabilities=[0.1] * 3,
                    n=n)
    ds = ArrayDataset(loss.reshape(-1, 1).astype(np.float32), np.zeros(n, dtype=int))
    loader = torch.utils.data.DataLoader(ds, batch_size=1000,
                                         sampler=selection_sampler(sel, num_samples=20_000,
                                                                   seed=0))
    got = torch.cat([x for x, _ in loader]).double().mean().item()
    want = np.dot(sel.weights, loss[sel.indices]) / sel.weights.sum()
    assert abs(got - want) < 0.01


def test_errors():
    sel = Selection(indices=[1], weights=[0.0], probabilities=[1.0], n=3)
    with pytest.raises(ValueError, match="positive sum"):
        selection_sampler(sel)
    sel = Selection(indices=[1], weights=[1.0], probabilities=[1.0], n=3)
    with pytest.raises(ValueError, match="num_samples"):
        selection_sampler(sel, num_samples=0)
