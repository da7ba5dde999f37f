"""PyTorch integration: embeddings, loss and gradient-norm oracles, weighted training.

Install with ``pip install coreselect[torch]``. Everything here works on any
``torch.utils.data.Dataset`` whose items are ``(x, y)``; :class:`ArrayDataset` holds images in
memory and serves whole batches without a Python loop over items.

The "grad" oracle of the paper is the squared norm of the gradient of the loss. For the last
layer of a classifier (``logits = W h + b``, softmax cross-entropy) it has a closed form:
with ``g = softmax(logits) - onehot(y)``, ``dL/dW = g h^T`` and ``dL/db = g``, so
``||grad||^2 = ||g||^2 (||h||^2 + 1)``: one forward pass, no backward pass.

Randomness: functions that need it take ``seed`` (None, an int or a numpy Generator) and
draw a ``torch.Generator`` from it; the global torch state is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np

from .._optional import require
from .._progress import Progress
from .._validation import (
    check_choice,
    check_indices,
    check_positive_int,
    check_random_state,
    check_sample_weights,
)

torch = require("torch", "torch", "coreselect.integrations.torch")
nn = torch.nn
F = torch.nn.functional  # noqa: N816

__all__ = [
    "ArrayDataset",
    "WeightedSubset",
    "selection_sampler",
    "MLP",
    "CNN",
    "make_model",
    "embed",
    "predict_proba",
    "loss_oracle",
    "grad_norm_oracle",
    "last_layer_grad_sq_norm",
    "weighted_loss",
    "train",
    "evaluate",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ data
class ArrayDataset(torch.utils.data.Dataset):
    """Images and labels held in memory as tensors; items are ``(x, y)``.

    Parameters
    ----------
    images : array-like, shape (n, ...)
        uint8 images are scaled to [0, 1] float32; float arrays are used as they are.
    labels : array-like of int, shape (n,)
    mean, std : float or sequence, optional
        Normalisation applied after scaling, per channel (axis 1) when a sequence.

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.full((4, 2, 2), 255, np.uint8), [0, 1, 0, 1])
    >>> x, y = ds[1]
    >>> float(x.max()), int(y), len(ds)
    (1.0, 1, 4)
    """

    def __init__(self, images, labels, *, mean=None, std=None):
        x = torch.as_tensor(np.asarray(images))
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if mean is not None:
            x = x - self._per_channel(mean, x.dim())
        if std is not None:
            x = x / self._per_channel(std, x.dim())
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"images has {x.shape[0]} rows but labels has {y.shape[0]}.")
        self.tensors = (x, y)

    @staticmethod
    def _per_channel(value, ndim: int) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=torch.float32)
        return t.reshape((1, -1) + (1,) * (ndim - 2)) if t.dim() else t

    def __len__(self) -> int:
        return int(self.tensors[1].shape[0])

    def __getitem__(self, i):
        return self.tensors[0][i], self.tensors[1][i]


class WeightedSubset(torch.utils.data.Dataset):
    """Rows of a dataset with a training weight each; items are ``(x, y, w)``.

    Parameters
    ----------
    dataset : Dataset
        Items ``(x, y)``.
    indices : array-like of int, shape (m,)
        Rows of ``dataset``; repeats are allowed.
    weights : array-like of float, shape (m,), optional
        One weight >= 0 per row; None gives every row weight 1.
    normalize : bool, default=True
        Rescale the weights to mean 1, so that a weighted loss keeps the scale (and the
        learning rate) of the unweighted one.

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((5, 3), np.float32), [0, 1, 2, 3, 4])
    >>> sub = WeightedSubset(ds, [4, 1], [3.0, 1.0])
    >>> [(int(y), float(w)) for _, y, w in sub]
    [(4, 1.5), (1, 0.5)]
    """

    def __init__(self, dataset, indices, weights=None, *, normalize: bool = True):
        self.dataset = dataset
        self.indices = check_indices(indices, len(dataset), name="indices")
        if weights is None:
            w = np.ones(self.indices.shape[0])
        else:
            w = check_sample_weights(weights, self.indices.shape[0])
            if normalize and w.sum() > 0:
                w = w * (w.shape[0] / w.sum())
        self.weights = torch.as_tensor(w, dtype=torch.float32)

    @classmethod
    def from_selection(cls, dataset, selection, *, extra_indices=None, weighted: bool = True,
                       normalize: bool = True,
                       power: float | None = None) -> WeightedSubset:
        """The rows a :class:`~coreselect.Selection` paid for, ready for training.

        :meth:`coreselect.Selection.training_weights`: the drawn rows get their sample
        weights (summed over repeats) to the power ``power`` (None: the measured default
        of every integration, 0.5 or 0 for a selection drawn by the model's scores; 1 the
        weights as drawn), rescaled to mean 1
        when ``normalize``; the queried centers that were not drawn and ``extra_indices``
        (e.g. a warm-start set, indices of ``dataset``) get weight 1. ``weighted=False``
        gives every row weight 1 (the same as ``power=0``). ``selection.n`` must be
        ``len(dataset)``.
        """
        if selection.n != len(dataset):
            raise ValueError(
                f"selection.n={selection.n} does not match len(dataset)={len(dataset)}."
            )
        uniq, w = selection.training_weights(power if weighted else 0.0,
                                             include_queries=False, normalize=normalize)
        rest = np.setdiff1d(selection.query_indices, uniq)
        if extra_indices is not None:
            extra = check_indices(extra_indices, len(dataset), name="extra_indices")
            rest = np.union1d(rest, np.setdiff1d(extra, uniq))
        idx = np.concatenate([uniq, rest])
        weights = np.concatenate([w, np.ones(rest.shape[0])]) if weighted else None
        return cls(dataset, idx, weights, normalize=False)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i):
        x, y = self.dataset[int(self.indices[i])]
        return x, y, self.weights[i]


def selection_sampler(selection, *, num_samples: int | None = None,
                      seed=None) -> torch.utils.data.WeightedRandomSampler:
    """A ``WeightedRandomSampler`` over the whole pool that draws only the selected rows.

    Row ``i`` of the pool is drawn with probability proportional to its summed sample weight
    (0 for rows not selected), with replacement, so that an unweighted loss over the drawn
    rows estimates the pool's mean loss as the weighted loss of the selection does. Give it
    to a ``DataLoader`` over the pool's dataset (``len(dataset) == selection.n``).

    Parameters
    ----------
    selection : Selection
    num_samples : int, optional
        Rows per epoch; the number of distinct selected rows by default.
    seed : None, int or numpy.random.Generator
        Seeds the sampler's own ``torch.Generator``.

    Examples
    --------
    >>> from coreselect import Selection
    >>> sel = Selection(indices=[3, 1], weights=[1.0, 3.0], probabilities=[0.5, 0.5], n=5)
    >>> sampler = selection_sampler(sel, num_samples=100, seed=0)
    >>> sorted(set(int(i) for i in sampler))
    [1, 3]
    """
    uniq, w = selection.unique()
    pool_weights = np.zeros(selection.n)
    pool_weights[uniq] = w
    if not pool_weights.sum() > 0:
        raise ValueError("selection must have weights with a positive sum; got none.")
    if num_samples is None:
        num_samples = int(uniq.shape[0])
    num_samples = check_positive_int(num_samples, "num_samples")
    gen = torch.Generator().manual_seed(_torch_seed(seed))
    return torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(pool_weights, dtype=torch.float64), num_samples, replacement=True,
        generator=gen,
    )


def _batches(dataset, order: np.ndarray, batch_size: int) -> Iterator[tuple]:
    """Batches of ``dataset`` in the given row order: ``(x, y)`` or ``(x, y, w)`` tensors."""
    base, rows, w = dataset, order, None
    if isinstance(dataset, WeightedSubset) and hasattr(dataset.dataset, "tensors"):
        base, rows, w = dataset.dataset, dataset.indices[order], dataset.weights[order]
    for start in range(0, rows.shape[0], batch_size):
        sl = rows[start:start + batch_size]
        if hasattr(base, "tensors"):
            t = torch.as_tensor(sl)
            batch = tuple(x[t] for x in base.tensors)
        else:
            batch = torch.utils.data.default_collate([base[int(i)] for i in sl])
            batch = tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)
        if w is not None:
            batch = batch[:2] + (w[start:start + batch_size],)
        yield batch


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------------------- models
class MLP(nn.Module):
    """Appendix C's network for MNIST and Fashion-MNIST: one hidden layer of 128 units.

    ``Flatten -> Linear(in, 128) -> ReLU -> Linear(128, n_classes)``; the embedding is the
    hidden layer's output (the input of ``self.out``).

    Examples
    --------
    >>> import torch
    >>> MLP()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_features: int = 784, hidden: int = 128, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.out(self.body(x))


class CNN(nn.Module):
    """Appendix C's network for CIFAR-10: three convolutional and three dense layers.

    Three ``conv 3x3 -> ReLU -> max-pool 2`` blocks (32, 64, 64 channels), then dense layers
    of 256 and 128 units and the output layer; the embedding is the 128-unit layer.

    Examples
    --------
    >>> import torch
    >>> CNN()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, image_size: int = 32):
        super().__init__()
        side = image_size // 8
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * side * side, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
        )
        self.out = nn.Linear(128, n_classes)

    def forward(self, x):
        return self.out(self.body(x))


def make_model(name: str, *, seed=None, **kwargs) -> nn.Module:
    """A freshly initialised ``"mlp"`` or ``"cnn"``, its weights drawn from ``seed``.

    The global torch random state is restored afterwards.

    Examples
    --------
    >>> a, b = make_model("mlp", seed=1), make_model("mlp", seed=1)
    >>> bool(torch.equal(a.out.weight, b.out.weight))
    True
    """
    name = check_choice(name, "name", ("mlp", "cnn"))
    torch_seed = _torch_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return MLP(**kwargs) if name == "mlp" else CNN(**kwargs)


def _torch_seed(seed) -> int:
    return int(check_random_state(seed).integers(0, 2**63 - 1))


# ------------------------------------------------------------------------ embeddings
def _last_linear(model: nn.Module) -> nn.Linear:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError("model has no nn.Linear layer; pass layer= to say where to embed.")
    return last


def _resolve_layer(model: nn.Module, layer) -> tuple[nn.Module, str]:
    """The module to hook and whether its input ("in") or output ("out") is the embedding."""
    if layer is None or layer == "penultimate":
        return _last_linear(model), "in"
    if isinstance(layer, nn.Module):
        return layer, "out"
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(
                f"layer must be 'penultimate', a module or the name of one of the model's "
                f"modules ({sorted(k for k in modules if k)[:10]}...); got {layer!r}."
            )
        return modules[layer], "out"
    raise TypeError(f"layer must be None, a str or an nn.Module; got {type(layer).__name__}.")


@torch.no_grad()
def _forward_all(model: nn.Module, dataset, indices, batch_size: int, layer, desc: str,
                 progress: bool, want: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One batched, gradient-free pass; returns the requested arrays ("h", "logits", "y")."""
    order = (np.arange(len(dataset)) if indices is None
             else check_indices(indices, len(dataset)))
    batch_size = check_positive_int(batch_size, "batch_size")
    module, where = _resolve_layer(model, layer)
    captured = []
    if where == "in":
        handle = module.register_forward_pre_hook(lambda m, inp: captured.append(inp[0]))
    else:
        handle = module.register_forward_hook(lambda m, inp, out: captured.append(out))
    device = _device_of(model)
    was_training = model.training
    model.eval()
    out: dict[str, list] = {k: [] for k in want}
    try:
        with Progress(order.shape[0], desc, enabled=progress) as bar:
            for batch in _batches(dataset, order, batch_size):
                captured.clear()
                logits = model(batch[0].to(device))
                if "h" in want:
                    out["h"].append(captured[-1].flatten(1).float().cpu())
                if "logits" in want:
                    out["logits"].append(logits.float().cpu())
                if "y" in want:
                    out["y"].append(batch[1])
                bar.update(batch[0].shape[0])
    finally:
        handle.remove()
        model.train(was_training)
    return {k: torch.cat(v).numpy() if v else np.empty(0) for k, v in out.items()}


def embed(model: nn.Module, dataset, *, layer="penultimate", indices=None,
          batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Embeddings of a dataset's rows: the model's last hidden layer, batched, without grad.

    Parameters
    ----------
    model : nn.Module
    dataset : Dataset
        Items ``(x, y)`` (or ``(x, y, w)``).
    layer : "penultimate", str or nn.Module, default="penultimate"
        "penultimate": the input of the model's last ``nn.Linear`` (the last hidden layer);
        a module (or its name in ``model.named_modules()``): that module's output.
    indices : array-like of int, optional
        Rows to embed (default: all).
    batch_size : int, default=1024
    progress : bool, default=False
        A progress bar on stderr.

    Returns
    -------
    ndarray of float32, shape (n, d)

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((6, 1, 28, 28), np.uint8), np.zeros(6, int))
    >>> embed(make_model("mlp", seed=0), ds).shape
    (6, 128)
    """
    return _forward_all(model, dataset, indices, batch_size, layer, "embed", progress, ("h",))["h"]


def predict_proba(model: nn.Module, dataset, *, indices=None, batch_size: int = 1024,
                  progress: bool = False) -> np.ndarray:
    """Softmax outputs of the model on a dataset's rows, shape (n, n_classes).

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((3, 784), np.float32), np.zeros(3, int))
    >>> p = predict_proba(make_model("mlp", seed=0), ds)
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1, atol=1e-5))
    ((3, 10), True)
    """
    logits = _forward_all(model, dataset, indices, batch_size, None, "predict", progress,
                          ("logits",))["logits"]
    return torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()


# --------------------------------------------------------------------------- oracles
def _per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def loss_oracle(model: nn.Module, dataset, loss_fn: Callable | None = None, *,
                batch_size: int = 1024) -> Callable[[np.ndarray], np.ndarray]:
    """The paper's "loss" oracle: ``oracle(indices) -> loss of the model on those rows``.

    Parameters
    ----------
    model : nn.Module
    dataset : Dataset
        Items ``(x, y)``; the labels are what the oracle pays for.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets) -> per-row losses`` (reduction "none"); softmax
        cross-entropy by default.
    batch_size : int, default=1024

    Returns
    -------
    callable
        Takes an int64 array of row indices, returns float64 losses >= 0. Its attribute
        ``calls`` counts the rows it was asked about (the model inferences spent).

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((4, 784), np.float32), [0, 1, 2, 3])
    >>> oracle = loss_oracle(make_model("mlp", seed=0), ds)
    >>> oracle(np.array([0, 2])).shape, oracle.calls
    ((2,), 2)
    """
    loss_fn = _per_sample_ce if loss_fn is None else loss_fn
    batch_size = check_positive_int(batch_size, "batch_size")

    @torch.no_grad()
    def oracle(indices) -> np.ndarray:
        idx = check_indices(indices, len(dataset))
        oracle.calls += int(idx.shape[0])
        device = _device_of(model)
        was_training = model.training
        model.eval()
        out = []
        try:
            for batch in _batches(dataset, idx, batch_size):
                loss = loss_fn(model(batch[0].to(device)), batch[1].to(device))
                out.append(loss.detach().double().reshape(-1).cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy() if out else np.empty(0)

    oracle.calls = 0
    return oracle


def last_layer_grad_sq_norm(logits, hidden, targets, *, bias: bool = True) -> np.ndarray:
    """Closed-form ``||d CE / d(W, b)||^2`` of a softmax cross-entropy output layer.

    For ``logits = W h + b`` and ``g = softmax(logits) - onehot(y)``:
    ``||dL/dW||^2 + ||dL/db||^2 = ||g||^2 (||h||^2 + 1)`` (without the ``+ 1`` when the layer
    has no bias).

    Examples
    --------
    >>> import numpy as np
    >>> # two classes, logits 0: softmax (0.5, 0.5), y = 0: g = (-0.5, 0.5), ||g||^2 = 0.5
    >>> last_layer_grad_sq_norm(np.zeros((1, 2)), np.array([[1.0, 1.0]]), [0]).tolist()
    [1.5]
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    h = torch.as_tensor(np.asarray(hidden), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.int64).reshape(-1)
    g = torch.softmax(z, dim=1)
    g[torch.arange(g.shape[0]), y] -= 1.0
    h_sq = (h * h).sum(dim=1) + (1.0 if bias else 0.0)
    return ((g * g).sum(dim=1) * h_sq).numpy()


def grad_norm_oracle(model: nn.Module, dataset, loss_fn: Callable | None = None, *,
                     params: str = "last", batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """The paper's "grad" oracle: the squared norm of the gradient of the loss, per row.

    Parameters
    ----------
    model : nn.Module
        A classifier whose last ``nn.Linear`` gives the logits.
    dataset : Dataset
        Items ``(x, y)``.
    loss_fn : callable, optional
        Per-row loss ``loss_fn(logits, targets)``; only with ``params="all"`` (the closed
        form is for softmax cross-entropy, the default).
    params : {"last", "all"}, default="last"
        "last": the gradient with respect to the output layer's weight and bias, in closed
        form from the softmax output and the embedding (one forward pass); "all": with
        respect to every parameter, by per-sample autograd (``torch.func``; much slower).
    batch_size : int, default=256

    Returns
    -------
    callable
        ``oracle(indices) -> squared gradient norms`` (float64); ``oracle.calls`` counts rows.

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.ones((3, 784), np.float32), [0, 1, 2])
    >>> oracle = grad_norm_oracle(make_model("mlp", seed=0), ds)
    >>> bool((oracle(np.arange(3)) > 0).all())
    True
    """
    params = check_choice(params, "params", ("last", "all"))
    batch_size = check_positive_int(batch_size, "batch_size")
    if params == "last" and loss_fn is not None:
        raise ValueError("loss_fn must be None with params='last' (the closed form is for "
                         "softmax cross-entropy); use params='all' for another loss.")
    loss_fn = _per_sample_ce if loss_fn is None else loss_fn
    last = _last_linear(model)

    def oracle(indices) -> np.ndarray:
        idx = check_indices(indices, len(dataset))
        oracle.calls += int(idx.shape[0])
        if idx.shape[0] == 0:
            return np.empty(0)
        if params == "last":
            got = _forward_all(model, dataset, idx, batch_size, None, "grad", False,
                               ("h", "logits", "y"))
            return last_layer_grad_sq_norm(got["logits"], got["h"], got["y"],
                                           bias=last.bias is not None)
        return _full_grad_sq_norm(model, dataset, idx, loss_fn, batch_size)

    oracle.calls = 0
    return oracle


def _full_grad_sq_norm(model, dataset, idx, loss_fn, batch_size) -> np.ndarray:
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    values = tuple(dict(model.named_parameters())[n].detach() for n in names)
    buffers = dict(model.named_buffers())
    device = _device_of(model)

    def one(vals, x, y):
        out = functional_call(model, ({**dict(zip(names, vals, strict=True)), **buffers}), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0)).sum()

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    out = []
    try:
        for batch in _batches(dataset, idx, batch_size):
            grads = per_sample(values, batch[0].to(device), batch[1].to(device))
            sq = sum(g.double().flatten(1).pow(2).sum(dim=1) for g in grads)
            out.append(sq.cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- training
def weighted_loss(loss_fn: Callable | None = None) -> Callable:
    """``loss(outputs, targets, weights) = mean(weights * per-row loss)``.

    With weights of mean 1 (see :class:`WeightedSubset`) it has the scale of the unweighted
    mean loss; unit weights give exactly the unweighted loss.

    Examples
    --------
    >>> import torch
    >>> f = weighted_loss()
    >>> z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    >>> bool(torch.isclose(f(z, y, torch.ones(2)), torch.nn.functional.cross_entropy(z, y)))
    True
    """
    base = _per_sample_ce if loss_fn is None else loss_fn

    def loss(outputs, targets, weights):
        return (base(outputs, targets) * weights).mean()

    return loss


def train(model: nn.Module, dataset, *, epochs: int = 10, batch_size: int = 32,
          lr: float = 1e-3, weighting: str = "loss", loss_fn: Callable | None = None,
          seed=None, progress: bool = False) -> nn.Module:
    """Train ``model`` in place with Adam (appendix C: 10 epochs, batch 32, lr 1e-3).

    Parameters
    ----------
    model : nn.Module
    dataset : Dataset
        Items ``(x, y)`` or, from :class:`WeightedSubset`, ``(x, y, w)``.
    epochs : int, default=10
    batch_size : int, default=32
    lr : float, default=1e-3
    weighting : {"loss", "resample", "none"}, default="loss"
        How the weights of a :class:`WeightedSubset` reach training: "loss" multiplies each
        row's loss by its weight; "resample" draws each epoch's rows with probability
        proportional to the weight (with replacement, as many as there are rows); "none"
        ignores them (for comparison).
    loss_fn : callable, optional
        Per-row loss (reduction "none"); softmax cross-entropy by default.
    seed : None, int or numpy.random.Generator
        Order of the rows in each epoch.
    progress : bool, default=False

    Returns
    -------
    nn.Module
        ``model``, trained.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 64)
    >>> x = (rng.normal(size=(64, 784)) + 2 * y[:, None]).astype(np.float32)
    >>> m = train(make_model("mlp", seed=0), ArrayDataset(x, y), epochs=3, seed=0)
    >>> bool(evaluate(m, ArrayDataset(x, y)) > 0.9)
    True
    """
    weighting = check_choice(weighting, "weighting", ("loss", "resample", "none"))
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    rng = check_random_state(seed)
    crit = weighted_loss(loss_fn)
    n = len(dataset)
    weights = dataset.weights.double().numpy() if isinstance(dataset, WeightedSubset) else None
    if weighting == "resample" and weights is not None:
        if not weights.sum() > 0:
            raise ValueError("weighting='resample' needs weights with a positive sum.")
        p = weights / weights.sum()
    device = _device_of(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps = epochs * -(-n // batch_size)
    with Progress(steps, "train", enabled=progress, unit="steps") as bar:
        for _ in range(epochs):
            if weighting == "resample" and weights is not None:
                order = rng.choice(n, size=n, replace=True, p=p)
            else:
                order = rng.permutation(n)
            for batch in _batches(dataset, order, batch_size):
                x, y = batch[0].to(device), batch[1].to(device)
                if len(batch) > 2 and weighting == "loss":
                    w = batch[2].to(device)
                else:
                    w = torch.ones(x.shape[0], device=device)
                opt.zero_grad(set_to_none=True)
                loss = crit(model(x), y, w)
                loss.backward()
                opt.step()
                bar.update(1)
    model.eval()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 2048) -> float:
    """Accuracy of ``model`` on a dataset (items ``(x, y)``).

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((4, 784), np.float32), [0, 0, 0, 0])
    >>> 0.0 <= evaluate(make_model("mlp", seed=0), ds) <= 1.0
    True
    """
    got = _forward_all(model, dataset, None, batch_size, None, "evaluate", False, ("logits", "y"))
    if got["y"].shape[0] == 0:
        raise ValueError("dataset is empty; cannot evaluate an accuracy.")
    return float(np.mean(got["logits"].argmax(axis=1) == got["y"]))
