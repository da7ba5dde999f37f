"""The regression experiment (paper Figure 1) on a tiny run."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from coreselect.experiments import regression as exp


def test_one_minus_r2_and_prepare():
    A = np.c_[np.arange(4.0), np.ones(4)]
    y = 2 * np.arange(4.0) + 1
    assert exp.one_minus_r2(A, y, np.array([2.0, 1.0])) == 0.0
    assert exp.one_minus_r2(A, y, np.array([0.0, y.mean()])) == pytest.approx(1.0)
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(100, 3))
    Atr, ytr, Ava, yva = exp.prepare(X, X[:, 0], seed=0)
    assert Atr.shape == (80, 4) and Ava.shape == (20, 4)
    np.testing.assert_allclose(Atr[:, :3].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Atr[:, 3], 1.0)


def test_run_on_synthetic_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = X @ [1.0, -1.0, 0.5] + 0.1 * rng.normal(size=600)
    rows, t = exp.run("synthetic", X, y, multiples=[4, 8], repetitions=2, with_centers=True,
                      clusterings=1, max_iter=3)
    summary = exp.summarise(rows)
    methods = {r["method"] for r in summary}
    assert methods == {"ours", "ours-paper", "ours+centers", "uniform", "leverage",
                       "leverage-sketched"}
    assert len(t["clustering_s"]) == 1 and t["k"] == 48
    for r in summary:
        assert r["reps"] == 2 and r["val_mean"] < 0.2  # an easy, almost noise-free problem
        if r["method"] in ("ours", "ours-paper", "uniform"):
            assert r["labels_mean"] <= r["size"]
        if r["method"] == "ours+centers":
            assert r["labels_mean"] > 48
    text = exp.markdown(summary, {"synthetic": t}, rows)
    assert "| synthetic | 16 | 4 |" in text and "ours/lev" in text
    # the targets table carries a bootstrap interval for every size
    assert text.count(" [") >= 2 * 2


def test_ratio_intervals_pair_the_repetitions():
    runs = [{"dataset": "d", "method": m, "size": 10, "rep": i, "val_1mR2": v}
            for i in range(6) for m, v in (("ours", 2.0 + i), ("leverage", 1.0 + i / 2))]
    lo, hi = exp.ratio_intervals(runs, "ours")[("d", 10)]
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)  # ours = 2 x lev in every rep
    noisy = [dict(r, val_1mR2=r["val_1mR2"] * (1 + 0.5 * (r["rep"] % 2)))
             if r["method"] == "ours" else r for r in runs]
    lo, hi = exp.ratio_intervals(noisy, "ours")[("d", 10)]
    assert lo < 2.5 < hi


def test_main_writes_tables(tmp_path):
    pytest.importorskip("statsmodels")
    out = tmp_path / "out"
    code = exp.main(["--datasets", "randhie", "--repetitions", "2", "--multiples", "2,4",
                     "--max-rows", "500", "--max-iter", "3", "--no-figure",
                     "--out", str(out)])
    assert code == 0
    with open(out / "regression.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == {"ours", "ours-paper", "uniform", "leverage",
                                           "leverage-sketched"}
    assert {int(r["size"]) for r in rows} == {20, 40}
    assert (out / "regression.md").read_text().startswith("# Linear regression")
    assert len(list(csv.DictReader(open(out / "regression_runs.csv")))) == 2 * 2 * 5
    # re-summarising the runs gives the same table
    again = tmp_path / "again"
    assert exp.main(["--from-runs", str(out / "regression_runs.csv"), "--no-figure",
                     "--out", str(again)]) == 0
    with open(again / "regression.csv") as fh:
        rows2 = list(csv.DictReader(fh))
    assert [r["val_mean"] for r in rows2] == [r["val_mean"] for r in rows]
    assert "| randhie | 20 | 2 |" in (again / "regression.md").read_text()


def test_figure(tmp_path):
    pytest.importorskip("matplotlib")
    summary = [{"dataset": "d", "method": m, "size": s, "train_mean": 0.1 * s,
                "train_std": 0.01, "val_mean": 0.2 * s, "val_std": 0.02}
               for m in ("ours", "uniform") for s in (1, 2)]
    assert exp.figure(summary, str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_main_errors(tmp_path):
    with pytest.raises(SystemExit):
        exp.main(["--repetitions", "0"])
    with pytest.raises(SystemExit):
        exp.main(["--multiples", "a,b"])
    with pytest.raises(SystemExit):
        exp.main(["--mix", "1.5"])
    with pytest.raises(SystemExit):
        exp.main(["--mix", "some"])
    with pytest.raises(SystemExit, match="needs --gas-sensor"):
        exp.main(["--datasets", "gas_sensor", "--out", str(tmp_path)])
