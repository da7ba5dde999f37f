"""LossCache: the fingerprint header it writes and checks, partial lines, the file lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import coreselect as cs
from coreselect.io import fingerprint
from coreselect.oracle import HEADER_TAG


def test_header_is_written_checked_and_read_back(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    fp = fingerprint(X)
    path = tmp_path / "c.csv"
    cache = cs.LossCache(path, fingerprint=fp, info={"seed": 7})
    assert len(cache) == 0 and cache.header["seed"] == 7
    first = path.read_text().splitlines()[0]
    assert first.startswith(HEADER_TAG)
    assert json.loads(first[len(HEADER_TAG):]) == {**{k: fp[k] for k in ("shape", "dtype",
                                                                        "hash")}, "seed": 7}
    cache.add([1, 4], [0.5, 2.0])
    again = cs.LossCache(path, fingerprint=fp, info={"seed": 99})  # info of a new file only
    assert dict(again) == {1: 0.5, 4: 2.0} and again.header["seed"] == 7
    other = X.copy()
    other[2, 1] += 1
    with pytest.raises(ValueError, match=r"c\.csv holds answers for other embeddings: .*SHA-256"):
        cs.LossCache(path, fingerprint=fingerprint(other))
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        cs.LossCache(path, fingerprint=fingerprint(X[:5]))
    assert dict(cs.LossCache(path)) == {1: 0.5, 4: 2.0}  # without a fingerprint: not checked


def test_a_cache_without_header_is_used_as_given(tmp_path, caplog):
    path = tmp_path / "hand.csv"
    path.write_text("index,loss\n3,1.5\n")
    with caplog.at_level("WARNING", logger="coreselect"):
        cache = cs.LossCache(path, fingerprint=fingerprint(np.zeros((4, 2))))
    assert dict(cache) == {3: 1.5} and cache.header is None
    assert "without a coreselect header" in caplog.text


def test_a_killed_runs_partial_line_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("index,loss\n1,0.5\n2,0.2")  # the run died mid-line
    cache = cs.LossCache(path)
    assert dict(cache) == {1: 0.5}
    cache.add([2, 5], [0.25, 1.0])
    assert path.read_text() == "index,loss\n1,0.5\n2,0.25\n5,1.0\n"
    assert dict(cs.LossCache(path)) == {1: 0.5, 2: 0.25, 5: 1.0}


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl")
def test_ask_oracle_waits_for_the_run_holding_the_cache_and_uses_its_answers(tmp_path):
    path = tmp_path / "c.csv"
    ready = tmp_path / "ready"
    holder = textwrap.dedent(f"""
        import time
        import coreselect as cs
        cache = cs.LossCache({str(path)!r})
        with cache.locked():
            open({str(ready)!r}, "w").close()
            time.sleep(1.0)                      # the other run is asking its oracle
            cache.add([0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        while not ready.exists():
            assert proc.poll() is None, "the holder died"
            time.sleep(0.01)
        asked = []

        def oracle(idx):
            asked.extend(idx.tolist())
            return idx * 10.0

        got = cs.ask_oracle(oracle, [3, 1, 5], cache=path)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert asked == [5]  # rows 1 and 3 came from the other run, after it let go
    assert got.tolist() == [3.0, 1.0, 50.0]


def test_the_lock_goes_with_a_killed_process(tmp_path):
    path = tmp_path / "c.csv"
    holder = textwrap.dedent(f"""
        import os, signal
        import coreselect as cs
        cache = cs.LossCache({str(path)!r})
        with cache.locked():
            cache.add([0], [1.0])
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", holder]).returncode == -9
    assert cs.ask_oracle(lambda idx: idx * 1.0, [0, 2], cache=path).tolist() == [1.0, 2.0]
    assert os.path.getsize(path) > 0
