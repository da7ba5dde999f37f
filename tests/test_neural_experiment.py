"""The neural-network experiment end to end, on tiny generated images in the IDX format."""

from __future__ import annotations

import csv
import gzip
import struct

import numpy as np
import pytest

from coreselect import LossCache

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from coreselect.experiments import neural  # noqa: E402
from coreselect.integrations import torch as neural_ct  # noqa: E402


def _write_idx(path, arr):
    head = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(gzip.compress(head + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    xtr, ytr = neural._generated_images(400, rng)
    xte, yte = neural._generated_images(200, rng)
    _write_idx(folder / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", ytr)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", xte)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", yte)
    return folder


def _run(out, mnist_dir, *extra):
    argv = ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--budgets", "60", "--reps", "1",
            "--methods", "uniform,loss", "--epochs", "2", "--out", str(out), "--quiet", *extra]
    assert neural.main(argv) == 0
    with open(out / "neural_mnist.csv") as fh:
        return list(csv.DictReader(fh))


def test_end_to_end_and_rerun_gives_same_numbers(tmp_path, mnist_dir, capsys):
    rows = _run(tmp_path / "a", mnist_dir)
    assert [r["method"] for r in rows] == ["uniform", "loss"]
    by = {r["method"]: r for r in rows}
    # k = 60: k' = 12 warm, k'' = 12 centers, 36 sampled; 60 distinct labelled rows each
    assert by["loss"]["n_warm"] == "12" and by["loss"]["n_centers"] == "12"
    assert by["loss"]["n_sampled"] == "36" and by["loss"]["oracle_queries"] == "12"
    assert by["uniform"]["n_train"] == by["loss"]["n_train"] == "60"
    assert by["uniform"]["oracle_queries"] == "0"
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
    out = capsys.readouterr().out
    assert "| uniform |" in out and "loss-based Alg. 1" in out
    md = (tmp_path / "a" / "neural_mnist.md").read_text()
    assert "k = 60" in md
    with open(tmp_path / "a" / "neural_mnist_summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert {s["method"] for s in summary} == {"uniform", "loss"}
    again = _run(tmp_path / "b", mnist_dir)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_resume_keeps_done_repetitions(tmp_path, mnist_dir):
    rows = _run(tmp_path, mnist_dir)
    resumed = _run(tmp_path, mnist_dir, "--resume")
    assert [r["accuracy"] for r in resumed] == [r["accuracy"] for r in rows]
    assert [r["select_time_s"] for r in resumed] == [r["select_time_s"] for r in rows]


def test_generated_dataset_grad_unweighted():
    rows = neural.run("generated", [50], 1, ["uniform", "grad"], pool_size=300, test_size=100,
                      epochs=1, weighting="none", progress=False)
    assert [r["method"] for r in rows] == ["uniform", "grad"]
    assert rows[1]["n_train"] == 50 and rows[1]["weighting"] == "none"


def test_sensitivity_select_excludes_centers_and_weights():
    rng = np.random.default_rng(0)
    E = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(8, 1, (100, 2))])
    loss = np.r_[np.zeros(100), np.ones(100)]
    sel = neural.sensitivity_select(E, loss.__getitem__, 4, 30, seed=1)
    assert sel.size == 30 and np.unique(sel.indices).size == 30
    assert not np.intersect1d(sel.indices, sel.query_indices).size
    np.testing.assert_allclose(sel.weights, 1.0 / sel.probabilities)
    assert np.all(sel.probabilities <= 1.0)
    # with lam = 0 only clusters whose center has a positive loss are sampled
    sel0 = neural.sensitivity_select(E, loss.__getitem__, 2, 30, lam=0.0, seed=1)
    assert np.all(sel0.indices >= 100)


def test_summarize_paired_interval_hand_case():
    rows = []
    for rep, (u, m) in enumerate([(0.80, 0.82), (0.70, 0.73), (0.90, 0.91)]):
        for meth, acc in (("uniform", u), ("loss", m)):
            rows.append({"budget": 10, "rep": rep, "method": meth, "accuracy": acc,
                         "select_time_s": 0.5, "pool_pass_s": 0.0, "oracle_queries": 2,
                         "embedded": 0})
    s = {x["method"]: x for x in neural.summarize(rows)}
    d = np.array([0.02, 0.03, 0.01])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert s["loss"]["diff_uniform"] == pytest.approx(0.02)
    assert s["loss"]["diff_ci_low"] == pytest.approx(0.02 - half)
    assert s["loss"]["diff_ci_high"] == pytest.approx(0.02 + half)
    assert s["uniform"]["mean"] == pytest.approx(0.8)
    assert s["uniform"]["std"] == pytest.approx(0.1)
    assert np.isnan(s["uniform"]["diff_uniform"])


def test_cli_errors(capsys):
    with pytest.raises(SystemExit):
        neural.main(["--methods", "uniform,bogus"])
    assert "unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        neural.main(["--budgets", "0"])
    with pytest.raises(SystemExit):
        neural.main(["--lam", "-1"])


def test_cifar10_end_to_end_on_tiny_binary_files(tmp_path):
    rng = np.random.default_rng(1)

    def write(name, n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        imgs = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)
        (tmp_path / name).write_bytes(np.concatenate([labels[:, None], imgs], axis=1).tobytes())

    for i in range(1, 6):
        write(f"data_batch_{i}.bin", 30)
    write("test_batch.bin", 20)
    rows = neural.run("cifar10", [40], 1, ["uniform", "loss"], data_dir=tmp_path, epochs=1,
                      batch_size=16, progress=False)
    assert [r["n_train"] for r in rows] == [40, 40]
    assert rows[1]["oracle_queries"] == 8 and rows[1]["embedded"] == 150


def test_methods_run_apart_merge_into_one_paired_table(tmp_path, mnist_dir):
    _run(tmp_path, mnist_dir)  # uniform, loss
    argv = ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--budgets", "60", "--reps", "1",
            "--methods", "grad", "--epochs", "2", "--out", str(tmp_path), "--quiet",
            "--tag", "_grad"]
    assert neural.main(argv) == 0
    merged = ["--dataset", "mnist", "--out", str(tmp_path), "--tag", "_all", "--quiet",
              "--from-csv", str(tmp_path / "neural_mnist.csv"), str(tmp_path / "neural_mnist_grad.csv"),
              str(tmp_path / "neural_mnist.csv")]
    assert neural.main(merged) == 0
    rows = neural.read_rows(tmp_path / "neural_mnist_all.csv")
    assert sorted(r["method"] for r in rows) == ["grad", "loss", "uniform"]  # duplicates dropped
    md = (tmp_path / "neural_mnist_all.md").read_text()
    assert "gradient-based Alg. 1" in md and "[" in md.split("gradient-based")[1]


def test_load_data_normalize(mnist_dir):
    raw, _ = neural.load_data("mnist", mnist_dir, pool_size=5, test_size=3)
    std, _ = neural.load_data("mnist", mnist_dir, pool_size=5, test_size=3, normalize=True)
    assert raw.tensors[0].shape == (5, 1, 28, 28) and float(raw.tensors[0].max()) <= 1.0
    torch.testing.assert_close(std.tensors[0], (raw.tensors[0] - 0.1307) / 0.3081)


# ------------------------------------------------------------------------------ rounds
ROUND_METHODS = "uniform,cluster_margin,loss,scores"


def _run_rounds(out, mnist_dir, *extra):
    argv = ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--budgets", "60", "--reps", "1",
            "--methods", ROUND_METHODS, "--epochs", "1", "--rounds", "3", "--out", str(out),
            "--quiet", *extra]
    assert neural.main(argv) == 0
    return neural.read_rows(out / "neural_mnist.csv")


@pytest.fixture(scope="module")
def rounds_reference(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("rounds")
    return out, _run_rounds(out, mnist_dir)


def test_rounds_report_accuracy_per_round(rounds_reference):
    out, rows = rounds_reference
    got = {(r["method"], r["round"]): r for r in rows}
    assert sorted(got) == [(m, j) for m in sorted(ROUND_METHODS.split(",")) for j in (1, 2, 3)]
    # k = 60: 12 warm, then 16 new labels a round (the loss-based rounds: 4 centers + 12 drawn)
    for (m, j), r in got.items():
        assert r["n_train"] == r["labels_asked"] == 12 + 16 * j and r["rounds"] == 3
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["n_centers"] == (4 if m in ("loss", "scores") else 0)
    md = (out / "neural_mnist.md").read_text()
    assert "| round | labelled |" in md and "| Cluster-Margin | 3 | 60 |" in md
    import json

    summary = json.loads((out / "neural_mnist_summary.json").read_text())
    assert {(s["method"], s["round"]) for s in summary} == set(got)
    # the label caches hold exactly the k rows each trajectory paid for
    for m in ROUND_METHODS.split(","):
        assert len(LossCache(out / "neural_mnist_labels" / f"k60_r0_{m}.csv")) == 60


@pytest.mark.parametrize("where", ["label", "train"])
def test_rounds_resume_after_a_failure_without_asking_twice(tmp_path, mnist_dir,
                                                            rounds_reference, monkeypatch,
                                                            where):
    _, reference = rounds_reference
    asked = []
    real = neural._label_function
    calls = {"label": 0, "evaluate": 0}
    evaluate = neural_ct.evaluate

    def counting(dataset):
        fn = real(dataset)

        def label(rows):
            calls["label"] += 1
            if where == "label" and calls["label"] == 3:  # uniform's round 2
                raise RuntimeError("the labelling service is down")
            asked.extend(np.asarray(rows).tolist())
            return fn(rows)

        return label

    def failing_evaluate(model, ds, **kw):
        calls["evaluate"] += 1
        if where == "train" and calls["evaluate"] == 2:  # after uniform's round-2 labels
            raise RuntimeError("out of memory")
        return evaluate(model, ds, **kw)

    monkeypatch.setattr(neural, "_label_function", counting)
    monkeypatch.setattr(neural_ct, "evaluate", failing_evaluate)
    with pytest.raises(Exception, match="labelling service|out of memory"):
        _run_rounds(tmp_path, mnist_dir)
    first = neural.read_rows(tmp_path / "neural_mnist.csv")
    assert [(r["method"], r["round"]) for r in first] == [("uniform", 1)]
    n_asked = len(asked)
    assert n_asked == 12 + 16 * (2 if where == "train" else 1)
    rows = _run_rounds(tmp_path, mnist_dir, "--resume")
    # every label of the trajectories asked exactly once over both runs
    assert len(asked) == len(ROUND_METHODS.split(",")) * 60 > n_asked
    key = lambda r: (r["method"], r["round"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, reference))
    want = {key(r): r["accuracy"] for r in reference}
    assert {key(r): r["accuracy"] for r in rows} == want
