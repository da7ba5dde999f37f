"""coreselect.integrations.torch: oracles against autograd, embeddings, weighted training."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from coreselect import Selection  # noqa: E402
from coreselect.integrations import torch as ct  # noqa: E402


def _data(n=24, d=784, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.5 * y[:, None].astype(np.float32)
    return ct.ArrayDataset(x, y)


def _autograd_sq_norms(model, ds, params):
    out = []
    for i in range(len(ds)):
        x, y = ds[i]
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[None]), y[None])
        grads = torch.autograd.grad(loss, params)
        out.append(sum(float(g.double().pow(2).sum()) for g in grads))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_last_layer_grad_equals_autograd_mlp(seed):
    ds = _data(seed=seed)
    model = ct.make_model("mlp", seed=seed)
    oracle = ct.grad_norm_oracle(model, ds)
    got = oracle(np.arange(len(ds)))
    want = _autograd_sq_norms(model, ds, [model.out.weight, model.out.bias])
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert oracle.calls == len(ds)


def test_closed_form_last_layer_grad_equals_autograd_cnn():
    rng = np.random.default_rng(3)
    ds = ct.ArrayDataset(rng.integers(0, 256, (6, 3, 32, 32)).astype(np.uint8), rng.integers(0, 10, 6))
    model = ct.make_model("cnn", seed=3)
    got = ct.grad_norm_oracle(model, ds, batch_size=4)(np.arange(6))
    want = _autograd_sq_norms(model, ds, [model.out.weight, model.out.bias])
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_closed_form_without_bias_and_hand_case():
    # logits 0 over 2 classes, y=1: g = (0.5, -0.5), ||g||^2 = 0.5; ||h||^2 = 4
    got = ct.last_layer_grad_sq_norm(np.zeros((1, 2)), np.array([[2.0, 0.0]]), [1], bias=False)
    np.testing.assert_allclose(got, [2.0])
    got = ct.last_layer_grad_sq_norm(np.zeros((1, 2)), np.array([[2.0, 0.0]]), [1])
    np.testing.assert_allclose(got, [2.5])


def test_full_grad_norm_equals_autograd():
    ds = _data(n=5, d=20, seed=4)
    model = ct.MLP(in_features=20, hidden=8)
    got = ct.grad_norm_oracle(model, ds, params="all", batch_size=2)(np.array([4, 0, 2]))
    sub = torch.utils.data.Subset(ds, [4, 0, 2])
    want = _autograd_sq_norms(model, sub, list(model.parameters()))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the full gradient is larger than its last-layer part
    last = ct.grad_norm_oracle(model, ds)(np.array([4, 0, 2]))
    assert np.all(got >= last * (1 - 1e-6))  # float32 sums: equal parts agree to ~1e-7


def test_loss_oracle_matches_cross_entropy_and_order():
    ds = _data(seed=5)
    model = ct.make_model("mlp", seed=5)
    idx = np.array([7, 3, 3, 0])
    oracle = ct.loss_oracle(model, ds, batch_size=3)
    got = oracle(idx)
    x, y = ds.tensors
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="none")
    np.testing.assert_allclose(got, want.double().numpy(), rtol=1e-6)
    assert oracle.calls == 4 and got.dtype == np.float64
    with pytest.raises(ValueError, match="indices must lie in"):
        oracle(np.array([len(ds)]))


def test_embed_is_hidden_layer_and_batch_size_invariant():
    ds = _data(seed=6)
    model = ct.make_model("mlp", seed=6)
    e1 = ct.embed(model, ds, batch_size=5)
    e2 = ct.embed(model, ds, batch_size=100)
    with torch.no_grad():
        want = model.body(ds.tensors[0]).numpy()
    # embed runs on the GPU when there is one: float32 sums over 784 inputs in another
    # order differ by ~1e-6 on values of order 1 (seen on an H200), a wrong layer by O(1)
    np.testing.assert_allclose(e1, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e1, e2, rtol=1e-5, atol=1e-5)
    assert e1.shape == (len(ds), 128) and (e1 >= 0).all()  # after the ReLU
    # a named layer: the first Linear, before the ReLU (can be negative)
    pre = ct.embed(model, ds, layer="body.1", indices=[0, 1])
    assert pre.shape == (2, 128) and (pre < 0).any()
    with pytest.raises(ValueError, match="layer must be"):
        ct.embed(model, ds, layer="nope")
    assert not torch.is_grad_enabled() or model.out.weight.grad is None


def test_embed_generic_dataset_without_tensors():
    ds = _data(n=7, seed=7)
    generic = torch.utils.data.Subset(ds, list(range(7)))
    model = ct.make_model("mlp", seed=7)
    np.testing.assert_allclose(ct.embed(model, generic, batch_size=3), ct.embed(model, ds),
                               rtol=1e-5, atol=1e-5)


def test_predict_proba_rows_sum_to_one():
    ds = _data(seed=8)
    p = ct.predict_proba(ct.make_model("mlp", seed=8), ds, batch_size=7)
    assert p.shape == (len(ds), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


def test_make_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (ct.make_model("mlp", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.out.weight, b.out.weight)
    assert not torch.equal(a.out.weight, c.out.weight)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="name must be one of"):
        ct.make_model("resnet")


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_unit_weights_equal_no_weights():
    ds = _data(n=40, seed=9)
    idx = np.arange(0, 40, 2)
    kw = dict(epochs=2, batch_size=8, seed=3)
    m1 = ct.train(ct.make_model("mlp", seed=0), ct.WeightedSubset(ds, idx), **kw)
    m2 = ct.train(ct.make_model("mlp", seed=0), ct.WeightedSubset(ds, idx, np.full(20, 7.0)), **kw)
    m3 = ct.train(ct.make_model("mlp", seed=0),
                  ct.WeightedSubset(ds, idx, np.arange(20.0) + 1), weighting="none", **kw)
    torch.testing.assert_close(_params(m1), _params(m2))  # normalised to mean 1
    torch.testing.assert_close(_params(m1), _params(m3))  # weights ignored
    m4 = ct.train(ct.make_model("mlp", seed=0),
                  ct.WeightedSubset(ds, idx, np.arange(20.0) + 1), **kw)
    assert not torch.allclose(_params(m1), _params(m4))


def test_train_is_deterministic_and_learns():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = (rng.normal(size=(90, 784)) + y[:, None]).astype(np.float32)
    ds = ct.ArrayDataset(x, y)
    m1 = ct.train(ct.make_model("mlp", seed=1), ds, epochs=5, seed=5)
    m2 = ct.train(ct.make_model("mlp", seed=1), ds, epochs=5, seed=5)
    torch.testing.assert_close(_params(m1), _params(m2))
    assert ct.evaluate(m1, ds) > 0.9
    m3 = ct.train(ct.make_model("mlp", seed=1), ct.WeightedSubset(ds, np.arange(90), np.ones(90)),
                  epochs=10, seed=5, weighting="resample")
    assert ct.evaluate(m3, ds) > 0.9


def test_weighted_loss_hand_case():
    f = ct.weighted_loss()
    z = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    got = f(z, y, torch.tensor([3.0, 1.0]))
    np.testing.assert_allclose(float(got), (3 + 1) * np.log(2) / 2, rtol=1e-6)


def test_weighted_subset_items_and_errors():
    ds = _data(n=6, seed=10)
    sub = ct.WeightedSubset(ds, [5, 5, 0], [1.0, 1.0, 4.0])
    assert len(sub) == 3
    x, y, w = sub[2]
    assert int(y) == int(ds[0][1]) and float(w) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        ct.WeightedSubset(ds, [0, 1], [1.0, -1.0])
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        ct.WeightedSubset(ds, [0, 1], [1.0])
    with pytest.raises(ValueError, match="indices must lie in"):
        ct.WeightedSubset(ds, [6])
    with pytest.raises(ValueError, match="weighting must be one of"):
        ct.train(ct.make_model("mlp", seed=0), sub, weighting="yes")


def test_weighted_subset_from_selection():
    ds = _data(n=10, seed=11)
    sel = Selection(indices=[2, 5, 2], weights=[1.0, 2.0, 1.0], probabilities=[0.1, 0.1, 0.1],
                    n=10, query_indices=[5, 7], query_losses=[0.1, 0.2], replace=True)
    sub = ct.WeightedSubset.from_selection(ds, sel, extra_indices=[0, 7])
    assert sub.indices.tolist() == [2, 5, 0, 7]
    np.testing.assert_allclose(sub.weights.numpy(), [1.0, 1.0, 1.0, 1.0])
    sel2 = Selection(indices=[2, 5], weights=[3.0, 1.0], probabilities=[0.1, 0.1], n=10)
    sub2 = ct.WeightedSubset.from_selection(ds, sel2, power=1.0)
    np.testing.assert_allclose(sub2.weights.numpy(), [1.5, 0.5])
    # the default: tempered weights w ** 0.5, mean 1
    tempered = ct.WeightedSubset.from_selection(ds, sel2)
    root = np.sqrt([3.0, 1.0])
    np.testing.assert_allclose(tempered.weights.numpy(), 2 * root / root.sum(), rtol=1e-6)
    plain = ct.WeightedSubset.from_selection(ds, sel2, weighted=False)
    np.testing.assert_allclose(plain.weights.numpy(), [1.0, 1.0])
    with pytest.raises(ValueError, match="does not match len"):
        ct.WeightedSubset.from_selection(ct.ArrayDataset(np.zeros((3, 2)), [0, 1, 2]), sel2)


def test_array_dataset_scaling_and_normalisation():
    imgs = np.full((2, 3, 2, 2), 255, np.uint8)
    ds = ct.ArrayDataset(imgs, [0, 1], mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 1.0))
    x, _ = ds[0]
    assert x[:, 0, 0].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="images has 2 rows but labels has 3"):
        ct.ArrayDataset(imgs, [0, 1, 2])


def test_evaluate_hand_case():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    ds = ct.ArrayDataset(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32), [0, 1, 1])
    assert ct.evaluate(model, ds) == pytest.approx(2 / 3)
