"""The command line: end to end through subprocess, resume from a cache, bad files."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_blobs

import coreselect as cs
from coreselect import cli
from coreselect.io import read_selection

K, S, SEED = 7, 60, 11


def run_cli(*args, cwd=None, env=None):
    """``python -m coreselect ARGS`` in a subprocess: (returncode, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "coreselect", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def main(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _data(dtype=np.float32):
    X, _ = make_blobs(n=300, d=4, k=5, seed=3, dtype=dtype)
    loss = (X.astype(np.float64) ** 2).sum(axis=1) / 50 + 0.01
    return X, loss


def _write_embeddings(folder, fmt, X):
    path = os.path.join(folder, f"emb{fmt}")
    if fmt == ".npy":
        np.save(path, X)
    elif fmt == ".npz":
        np.savez(path, other=np.zeros(3), emb=X)
    elif fmt == ".csv":
        with open(path, "w") as fh:
            fh.write(",".join(f"x{j}" for j in range(X.shape[1])) + "\n")
            for row in X:
                fh.write(",".join(repr(float(v)) for v in row) + "\n")
    elif fmt == ".parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.table({"id": np.arange(len(X)),
                                 "emb": pa.array(X.tolist(), pa.list_(pa.float32()))}), path)
    return path


def _fill(queries, out, loss):
    with open(queries) as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["loss"] == "" for r in rows)
    with open(out, "w") as fh:
        fh.write("index,loss\n")
        for r in rows:
            fh.write(f"{r['index']},{float(loss[int(r['index'])])!r}\n")


def _same(a, b, *, exact=True):
    """Equal selections; ``exact=False`` allows float rounding in weights and probabilities
    (a memory-mapped pool is sampled out of core, summing in another order)."""
    for name in ("indices", "centers"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("weights", "probabilities"):
        if exact:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        else:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12,
                                       err_msg=name)


# --------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("fmt", [".npy", ".npz", ".csv", ".parquet"])
def test_plan_fill_sample_estimate_equals_python_api(tmp_path, fmt):
    X, loss = _data()
    if fmt == ".csv":
        X = X.astype(np.float64)
    emb = _write_embeddings(tmp_path, fmt, X)
    key = ["--key", "emb"] if fmt == ".npz" else []
    run = tmp_path / "run"
    rc, out, err = run_cli("plan", emb, *key, "--clusters", K, "--seed", SEED, "--out", run,
                           "--json")
    assert rc == 0, err
    plan = json.loads(out)
    queries = run / "queries.csv"
    assert sorted(os.listdir(run)) == ["plan.json", "plan.npz", "queries.csv"]
    _fill(queries, tmp_path / "answers.csv", loss)
    sel_path = tmp_path / "selection.csv"
    rc, out, err = run_cli("sample", run, "--losses", tmp_path / "answers.csv", "--size", S,
                           "--out", sel_path, "--quiet")
    assert rc == 0, err
    assert err == ""
    got = read_selection(sel_path)

    ref = cs.sensitivity_sample(X, loss.__getitem__, S, n_clusters=K, seed=SEED)
    assert plan["queries"] == ref.n_queries
    _same(got, ref)
    np.testing.assert_array_equal(got.query_indices, ref.query_indices)
    np.testing.assert_array_equal(got.query_losses, ref.query_losses)
    header = sel_path.read_text().splitlines()[0]
    assert header == "index,weight,probability,center,cluster_size"

    labelled = tmp_path / "labelled.csv"
    uniq = np.unique(got.indices)
    labelled.write_text("index,loss\n" + "".join(f"{i},{float(loss[i])!r}\n" for i in uniq))
    rc, out, err = run_cli("estimate", sel_path, "--losses", labelled, "--json")
    assert rc == 0, err
    est = json.loads(out)
    want = ref.estimate_total(loss[ref.indices])
    assert est["total"]["value"] == pytest.approx(want.value, rel=1e-12)
    assert est["total"]["ci_low"] == pytest.approx(want.ci_low, rel=1e-12)
    assert est["mean"]["value"] == pytest.approx(want.value / len(X), rel=1e-12)


def test_sample_without_replacement_lam_and_parquet_output(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    X, loss = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    assert main(capsys, "plan", emb, "-k", K, "--seed", 2, "--design", "sensitivity",
                "--out", tmp_path / "r", "-q")[0] == 0
    _fill(tmp_path / "r" / "queries.csv", tmp_path / "a.csv", loss)
    rc, out, err = main(capsys, "sample", tmp_path / "r" / "plan.npz", "--losses",
                        tmp_path / "a.csv", "--size", 40, "--lam", "0.5",
                        "--without-replacement", "--out", tmp_path / "s.parquet", "--json")
    assert rc == 0, err
    got = read_selection(tmp_path / "s.parquet")
    ref = cs.sensitivity_sample(np.load(emb), loss.__getitem__, 40, n_clusters=K, seed=2,
                                lam=0.5, replace=False, design="sensitivity")
    _same(got, ref)
    assert not got.replace and len(np.unique(got.indices)) == 40
    assert json.loads(out)["lam"] == 0.5
    rc, _, err = main(capsys, "sample", tmp_path / "r", "--losses", tmp_path / "a.csv",
                      "--size", 40, "--mix", "0.3", "--out", tmp_path / "m.csv", "-q")
    assert rc == 0, err
    mixed = read_selection(tmp_path / "m.csv")
    _same(mixed, cs.sensitivity_sample(np.load(emb), loss.__getitem__, 40, n_clusters=K,
                                       seed=2, mix=0.3, design="sensitivity"))
    assert mixed.probabilities.min() >= 0.3 / len(X)
    rc, _, err = main(capsys, "sample", tmp_path / "r", "--losses", tmp_path / "a.csv",
                      "--size", 40, "--mix", "1.5", "--out", tmp_path / "m2.csv")
    assert rc == 2 and "--mix" in err


def test_sample_checks_embeddings_fingerprint(tmp_path, capsys):
    X, loss = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    main(capsys, "plan", emb, "-k", K, "--seed", 2, "--out", tmp_path / "r", "-q")
    _fill(tmp_path / "r" / "queries.csv", tmp_path / "a.csv", loss)
    other = X.copy()
    other[5, 0] += 1.0
    np.save(tmp_path / "other.npy", other)
    rc, out, err = main(capsys, "sample", tmp_path / "r", "--losses", tmp_path / "a.csv",
                        "--size", 10, "--embeddings", tmp_path / "other.npy",
                        "--out", tmp_path / "s.csv")
    assert rc == 2
    assert "SHA-256 differs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()
    rc, _, err = main(capsys, "sample", tmp_path / "r", "--losses", tmp_path / "a.csv",
                      "--size", 10, "--embeddings", emb, "--out", tmp_path / "s.csv")
    assert rc == 0, err


# --------------------------------------------------------------------------- resume
ORACLE = textwrap.dedent("""
    import os
    import signal
    import numpy as np

    LOSS = np.load(os.path.join(os.path.dirname(__file__), "loss.npy"))

    def loss(indices):
        log = os.environ["ORACLE_LOG"]
        with open(log, "a") as fh:
            fh.write(" ".join(str(int(i)) for i in indices) + "\\n")
        calls = sum(1 for _ in open(log))
        if calls > int(os.environ.get("KILL_AFTER", "1000000")):
            os.kill(os.getpid(), signal.SIGKILL)  # no exception handler runs
        if calls > int(os.environ.get("FAIL_AFTER", "1000000")):
            raise RuntimeError("the labelling service went down")
        return LOSS[indices]
""")


def _calls(log):
    if not os.path.exists(log):
        return []
    with open(log) as fh:
        return [[int(v) for v in line.split()] for line in fh if line.strip()]


def _pool_with_oracle(tmp_path):
    """Embeddings as .npy, their losses in loss.npy and the oracle module myoracle.py."""
    X, loss = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    np.save(tmp_path / "loss.npy", loss)
    (tmp_path / "myoracle.py").write_text(ORACLE)
    return X, loss, emb


def test_resume_asks_only_for_missing_answers(tmp_path):
    X, loss, emb = _pool_with_oracle(tmp_path)
    k, batch = 12, 2
    args = ["select", emb, "--clusters", k, "--size", S, "--oracle", "myoracle:loss",
            "--batch-size", batch, "--seed", SEED, "--cache", tmp_path / "cache.csv"]

    log1 = str(tmp_path / "calls1.log")
    rc, out, err = run_cli(*args, "--out", tmp_path / "sel.csv", cwd=tmp_path,
                           env={"ORACLE_LOG": log1, "FAIL_AFTER": "3"})
    assert rc == 1
    assert "went down" in err and "Run the same command again" in err
    assert "Traceback" not in err
    assert not (tmp_path / "sel.csv").exists()
    first = _calls(log1)
    assert len(first) == 4  # three batches answered, the fourth raised
    answered = {i for batch_ in first[:3] for i in batch_}

    log2 = str(tmp_path / "calls2.log")
    rc, out, rerun_err = run_cli(*args, "--out", tmp_path / "sel.csv", cwd=tmp_path,
                                 env={"ORACLE_LOG": log2})
    assert rc == 0, rerun_err
    assert "reusing the clustering" in rerun_err  # the rerun did not fit again
    second = [i for batch_ in _calls(log2) for i in batch_]
    assert not answered & set(second)  # nothing paid for is asked twice
    assert len(answered) + len(second) == k

    # the same command, uninterrupted, with a fresh cache: the very same selection
    log3 = str(tmp_path / "calls3.log")
    fresh_args = [tmp_path / "cache2.csv" if a == tmp_path / "cache.csv" else a for a in args]
    rc, out, err = run_cli(*fresh_args, "--out", tmp_path / "fresh.csv", cwd=tmp_path,
                           env={"ORACLE_LOG": log3})
    assert rc == 0, err
    assert len(_calls(log3)) == k // batch
    resumed, fresh = read_selection(tmp_path / "sel.csv"), read_selection(tmp_path / "fresh.csv")
    _same(resumed, fresh)
    # and the Python API's, for the same seed
    ref = cs.sensitivity_sample(X, loss.__getitem__, S, n_clusters=k, seed=SEED)
    _same(resumed, ref)
    # the plan kept beside the cache: sample draws the same from it
    rc, _, err = run_cli("sample", tmp_path / "cache.csv.plan.npz", "--losses",
                         tmp_path / "cache.csv", "--size", S, "--out", tmp_path / "again.csv")
    assert rc == 0, err
    _same(read_selection(tmp_path / "again.csv"), resumed)


def test_select_without_cache_equals_python_api_on_the_same_input(tmp_path):
    X, loss, emb = _pool_with_oracle(tmp_path)
    rc, _, err = run_cli("select", emb, "-k", 9, "-s", S, "--oracle", "myoracle:loss",
                         "--seed", SEED, "--out", tmp_path / "s.csv", "-q", cwd=tmp_path,
                         env={"ORACLE_LOG": str(tmp_path / "log")})
    assert rc == 0, err
    got = read_selection(tmp_path / "s.csv")
    pool = np.load(emb, mmap_mode="r")  # as the command line reads it
    _same(got, cs.sensitivity_sample(pool, loss.__getitem__, S, n_clusters=9, seed=SEED))
    ref = cs.sensitivity_sample(X, loss.__getitem__, S, n_clusters=9, seed=SEED)
    _same(got, ref, exact=False)


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="POSIX signals")
def test_resume_after_the_process_is_killed(tmp_path):
    X, loss, emb = _pool_with_oracle(tmp_path)
    args = ["select", emb, "-k", 10, "-s", 30, "--oracle", "myoracle:loss", "--batch-size", 3,
            "--seed", 5, "--cache", tmp_path / "cache.csv", "--out", tmp_path / "sel.parquet"
            if _has_pyarrow() else tmp_path / "sel.csv", "-q"]
    log1 = str(tmp_path / "kill.log")
    rc, _, _ = run_cli(*args, cwd=tmp_path, env={"ORACLE_LOG": log1, "KILL_AFTER": "2"})
    assert rc == -9
    paid = {i for batch_ in _calls(log1)[:2] for i in batch_}
    assert len(paid) == 6
    assert [f for f in os.listdir(tmp_path) if f.startswith("sel")] == []
    log2 = str(tmp_path / "again.log")
    rc, _, err = run_cli(*args, cwd=tmp_path, env={"ORACLE_LOG": log2})
    assert rc == 0, err
    again = [i for batch_ in _calls(log2) for i in batch_]
    assert len(again) == 4 and not paid & set(again)


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_resume_without_seed_reuses_the_recorded_one(tmp_path, capsys, monkeypatch):
    X, loss, emb = _pool_with_oracle(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "a.log"))
    monkeypatch.setenv("FAIL_AFTER", "1")
    args = ["select", emb, "-k", 6, "-s", 20, "--oracle", "myoracle:loss", "--batch-size", 2,
            "--cache", tmp_path / "c.csv", "-q"]
    rc, _, err = main(capsys, *args, "--out", tmp_path / "x.csv")
    assert rc == 1, err
    header = json.loads((tmp_path / "c.csv").read_text().splitlines()[0].split(":", 1)[1])
    monkeypatch.setenv("FAIL_AFTER", "100")
    rc, out, err = main(capsys, *args, "--out", tmp_path / "x.csv", "--json")
    assert rc == 0, err
    assert json.loads(out)["seed"] == header["seed"]
    assert len(_calls(tmp_path / "a.log")) == 2 + 2  # 1 ok + 1 failed, then the other 2


def test_cache_of_other_embeddings_is_refused(tmp_path, capsys, monkeypatch):
    X, loss, emb = _pool_with_oracle(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "a.log"))
    args = ["-k", 5, "-s", 10, "--oracle", "myoracle:loss", "--seed", 0, "-q",
            "--cache", tmp_path / "c.csv"]
    assert main(capsys, "select", emb, *args, "--out", tmp_path / "a.csv")[0] == 0
    np.save(tmp_path / "other.npy", X[::-1].copy())
    rc, _, err = main(capsys, "select", tmp_path / "other.npy", *args, "--out",
                      tmp_path / "b.csv")
    assert rc == 2 and "holds answers for other embeddings" in err
    assert not (tmp_path / "b.csv").exists()


def test_oracle_errors(tmp_path, capsys, monkeypatch):
    X, _ = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    (tmp_path / "bad.py").write_text("def neg(idx):\n    return [-1.0] * len(idx)\n"
                                     "VALUE = 3\n")
    monkeypatch.chdir(tmp_path)
    base = ["select", emb, "-k", 4, "-s", 5, "--seed", 0, "-q", "--out", tmp_path / "o.csv"]
    for spec, pattern in [("nomodule_xyz:f", "cannot import"), ("bad:missing", "no attribute"),
                          ("bad:VALUE", "not callable"), ("bad", "module:function"),
                          (str(tmp_path / "nofile.py") + ":f", "no file")]:
        rc, _, err = main(capsys, *base, "--oracle", spec)
        assert rc == 2, (spec, err)
        assert pattern in err and len(err.strip().splitlines()) == 1
    rc, _, err = main(capsys, *base, "--oracle", str(tmp_path / "bad.py") + ":neg")
    assert rc == 1 and ">= 0" in err
    assert not (tmp_path / "o.csv").exists()


# --------------------------------------------------------------------------- bad input
def _bad_cases(tmp_path):
    """(name, argv, output path that must not appear) for inputs that are bad."""
    X, loss = _data()
    good = _write_embeddings(tmp_path, ".npy", X)
    cases = []
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, X)
    trunc.write_bytes(trunc.read_bytes()[:-100])
    cases.append(("truncated npy", ["plan", trunc, "-k", 3, "--out", tmp_path / "o1"],
                  tmp_path / "o1"))
    evil = tmp_path / "evil.npy"
    evil.write_bytes(pickle.dumps({"not": "an array"}))
    cases.append(("pickle as npy", ["plan", evil, "-k", 3, "--out", tmp_path / "o2"],
                  tmp_path / "o2"))
    npz = tmp_path / "emb.npz"
    np.savez(npz, a=X, b=X)
    cases.append(("wrong key", ["plan", npz, "--key", "c", "-k", 3, "--out", tmp_path / "o3"],
                  tmp_path / "o3"))
    header_only = tmp_path / "header.csv"
    header_only.write_text("x0,x1,x2\n")
    cases.append(("csv header only", ["plan", header_only, "-k", 3, "--out", tmp_path / "o4"],
                  tmp_path / "o4"))
    run = tmp_path / "run"
    assert cli.main(["plan", str(good), "-k", "5", "--seed", "0", "--out", str(run), "-q"]) == 0
    _fill(run / "queries.csv", tmp_path / "answers.csv", loss)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text((tmp_path / "answers.csv").read_text() + "299,1.0\n")
    cases.append(("losses for unknown indices",
                  ["sample", run, "--losses", unknown, "-s", 5, "--out", tmp_path / "o5.csv"],
                  tmp_path / "o5.csv"))
    empty_loss = tmp_path / "empty.csv"
    rows = (tmp_path / "answers.csv").read_text().splitlines()
    empty_loss.write_text("\n".join(rows[:2] + [rows[2].split(",")[0] + ","] + rows[3:]) + "\n")
    cases.append(("missing answer",
                  ["sample", run, "--losses", empty_loss, "-s", 5, "--out", tmp_path / "o6.csv"],
                  tmp_path / "o6.csv"))
    other = tmp_path / "other.npy"
    np.save(other, X + 1)
    cases.append(("plan with other embeddings",
                  ["sample", run, "--losses", tmp_path / "answers.csv", "-s", 5,
                   "--embeddings", other, "--out", tmp_path / "o7.csv"], tmp_path / "o7.csv"))
    cases.append(("not a plan", ["sample", tmp_path, "--losses", tmp_path / "answers.csv",
                                 "-s", 5, "--out", tmp_path / "o8.csv"], tmp_path / "o8.csv"))
    nan = tmp_path / "nan.npy"
    Xn = X.copy()
    Xn[17, 2] = np.nan
    np.save(nan, Xn)
    cases.append(("NaN in embeddings", ["plan", nan, "-k", 3, "--out", tmp_path / "o12"],
                  tmp_path / "o12"))
    cases.append(("too many clusters", ["plan", good, "-k", 1000, "--out", tmp_path / "o9"],
                  tmp_path / "o9"))
    cases.append(("bad option", ["sample", run, "--losses", tmp_path / "answers.csv", "-s", 0,
                                 "--out", tmp_path / "o10.csv"], tmp_path / "o10.csv"))
    cases.append(("unknown output format", ["sample", run, "--losses", tmp_path / "answers.csv",
                                            "-s", 3, "--out", tmp_path / "o11.xlsx"],
                  tmp_path / "o11.xlsx"))
    return cases


def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, capsys):
    for name, argv, output in _bad_cases(tmp_path):
        rc, out, err = main(capsys, *argv)
        assert rc == 2, (name, err)
        lines = err.strip().splitlines()  # progress bars may come first, on stderr too
        assert lines[-1].startswith("coreselect") and "error: " in lines[-1], (name, err)
        assert sum("error" in line for line in lines) == 1, (name, err)
        assert "Traceback" not in err
        assert not os.path.exists(output), name
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_bad_inputs_through_subprocess(tmp_path):
    X, _ = _data()
    evil = tmp_path / "evil.npy"
    marker = tmp_path / "pwned"
    evil.write_bytes(b"\x80\x04" + pickle.dumps(str(marker))[2:])
    for argv in (["info", evil], ["plan", evil, "-k", 2, "--out", tmp_path / "o"]):
        rc, out, err = run_cli(*argv)
        assert rc == 2, err
        assert len(err.strip().splitlines()) == 1 and "pickle" in err
    assert not (tmp_path / "o").exists() and not marker.exists()


def test_existing_output_is_kept_without_force(tmp_path, capsys):
    X, loss = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    run = tmp_path / "run"
    assert main(capsys, "plan", emb, "-k", 4, "--seed", 0, "--out", run, "-q")[0] == 0
    before = (run / "plan.npz").read_bytes()
    rc, _, err = main(capsys, "plan", emb, "-k", 5, "--seed", 1, "--out", run, "-q")
    assert rc == 2 and "--force" in err
    assert (run / "plan.npz").read_bytes() == before
    assert main(capsys, "plan", emb, "-k", 5, "--seed", 1, "--out", run, "-q", "--force")[0] == 0
    assert (run / "plan.npz").read_bytes() != before
    assert len((run / "queries.csv").read_text().splitlines()) == 1 + 5


# --------------------------------------------------------------------------- the rest
def test_info(tmp_path, capsys):
    X, _ = _data(np.float64)
    X[7] = X[2]
    X[9, 1] = np.nan
    emb = _write_embeddings(tmp_path, ".npy", X)
    rc, out, err = main(capsys, "info", emb, "--json", "--budget", 500, "--hash", "-q")
    assert rc == 0, err
    info = json.loads(out)
    assert info["shape"] == [300, 4] and info["dtype"] == "float64"
    assert (info["nan"], info["inf"], info["duplicate_rows"]) == (1, 0, 1)
    assert info["memory_mapped"] is True
    assert info["hint"]["clusters"] == 100 and info["hint"]["size"] == 400
    assert info["fingerprint"]["hash"].startswith("sha256:")
    rc, out, _ = main(capsys, "info", emb, "-q")
    assert "300 x 4" in out and "--clusters" in out


def test_version_help_and_quiet(capsys):
    rc, out, _ = main(capsys, "--version")
    assert rc == 0 and out.strip() == f"coreselect {cs.__version__}"
    rc, out, _ = main(capsys, "--help")
    assert rc == 0
    for word in ("plan", "sample", "select", "estimate", "info", "reproduce", "examples:"):
        assert word in out
    rc, _, err = main(capsys)
    assert rc == 2
    rc, _, err = main(capsys, "plan")
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_progress_goes_to_stderr_and_quiet_silences_it(tmp_path, capsys):
    X, _ = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    rc, out, err = main(capsys, "plan", emb, "-k", 4, "--seed", 0, "--out", tmp_path / "a",
                        "--json")
    assert rc == 0 and "assign" in err
    json.loads(out)  # stdout holds only the JSON
    rc, out, err = main(capsys, "plan", emb, "-k", 4, "--seed", 0, "--out", tmp_path / "b",
                        "-q")
    assert rc == 0 and err == ""


def test_estimate_difference_and_missing_losses(tmp_path, capsys):
    X, loss = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    np.save(tmp_path / "loss.npy", loss)
    main(capsys, "plan", emb, "-k", K, "--seed", 1, "--out", tmp_path / "r", "-q")
    _fill(tmp_path / "r" / "queries.csv", tmp_path / "a.csv", loss)
    main(capsys, "sample", tmp_path / "r", "--losses", tmp_path / "a.csv", "-s", 30,
         "--out", tmp_path / "s.npz", "-q")
    sel = read_selection(tmp_path / "s.npz")
    full = tmp_path / "all.csv"
    full.write_text("index,loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(loss.tolist())))
    rc, out, err = main(capsys, "estimate", tmp_path / "s.npz", "--losses", full,
                        "--method", "difference", "--confidence", "0.9", "--json", "-q")
    assert rc == 0, err
    want = sel.estimate_total(loss[sel.indices], method="difference", confidence=0.9)
    got = json.loads(out)
    assert got["total"]["value"] == pytest.approx(want.value, rel=1e-12)
    assert got["total"]["ci_high"] == pytest.approx(want.ci_high, rel=1e-12)
    part = tmp_path / "part.csv"
    part.write_text("index,loss\n" + f"{sel.indices[0]},1.0\n")
    rc, _, err = main(capsys, "estimate", tmp_path / "s.npz", "--losses", part)
    assert rc == 2 and "no loss for" in err


def test_reproduce_dispatch(monkeypatch, capsys):
    import types

    seen = {}
    module = types.ModuleType("coreselect.experiments.fake_exp")

    def fake_main(argv=None):
        seen["argv"] = argv
        return 3

    module.main = fake_main
    monkeypatch.setitem(sys.modules, "coreselect.experiments.fake_exp", module)
    monkeypatch.setattr(cli._commands, "experiments", lambda: ["fake_exp"])
    rc, _, _ = main(capsys, "reproduce", "fake_exp", "--n", "5", "--quick")
    assert rc == 3 and seen["argv"] == ["--n", "5", "--quick"]
    rc, _, err = main(capsys, "reproduce", "nope")
    assert rc == 2 and "unknown experiment 'nope'; available: fake_exp" in err

    def exits(argv=None):
        raise SystemExit(2)  # what an experiment's argparse does on a bad option

    module.main = exits
    rc, _, _ = main(capsys, "reproduce", "fake_exp", "--bogus")
    assert rc == 2


def test_reproduce_lists_real_experiments(capsys):
    names = cli._commands.experiments()
    rc, out, _ = main(capsys, "reproduce", "--help")
    assert rc == 0
    for name in names:
        assert name in out


def test_library_logging_is_left_as_found(tmp_path, capsys):
    import logging

    X, _ = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    logger = logging.getLogger("coreselect")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert main(capsys, "info", emb)[0] == 0
    assert main(capsys, "info", tmp_path / "missing.npy")[0] == 2
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_checkpoint_is_reused_only_for_the_same_options(tmp_path, capsys, monkeypatch):
    X, loss, emb = _pool_with_oracle(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "a.log"))
    base = ["select", emb, "-s", 20, "--oracle", "myoracle:loss", "--seed", 3,
            "--cache", tmp_path / "c.csv", "--force", "--out", tmp_path / "o.csv"]
    rc, _, err = main(capsys, *base, "-k", 6)
    assert rc == 0 and "reusing" not in err
    first = read_selection(tmp_path / "o.csv")
    rc, _, err = main(capsys, *base, "-k", 8)
    assert rc == 0 and "fitting again" in err
    assert read_selection(tmp_path / "o.csv").n_queries == 8
    asked = [i for b in _calls(tmp_path / "a.log") for i in b]
    assert len(asked) == len(set(asked))  # answers of the first plan were not asked again
    rc, _, err = main(capsys, *base, "-k", 8)
    assert rc == 0 and "reusing the clustering" in err
    rc, _, err = main(capsys, *base, "-k", 6)
    assert rc == 0
    _same(read_selection(tmp_path / "o.csv"), first)


def test_plan_failing_half_way_leaves_the_old_plan(tmp_path, capsys, monkeypatch):
    import coreselect.io

    X, _ = _data()
    emb = _write_embeddings(tmp_path, ".npy", X)
    run = tmp_path / "run"
    assert main(capsys, "plan", emb, "-k", 4, "--seed", 0, "--out", run, "-q")[0] == 0
    before = {name: (run / name).read_bytes() for name in os.listdir(run)}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(coreselect.io, "write_table", disk_full)
    rc, _, err = main(capsys, "plan", emb, "-k", 6, "--seed", 1, "--out", run, "-q", "--force")
    assert rc == 1 and "No space left" in err
    assert {name: (run / name).read_bytes() for name in os.listdir(run)} == before
    rc, _, _ = main(capsys, "plan", emb, "-k", 6, "--seed", 1, "--out", tmp_path / "new", "-q")
    assert rc == 1 and not (tmp_path / "new").exists()


def test_answers_are_kept_even_without_cache(tmp_path, capsys, monkeypatch):
    X, loss, emb = _pool_with_oracle(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "a.log"))
    monkeypatch.setenv("FAIL_AFTER", "2")
    base = ["select", emb, "-k", 10, "-s", 25, "--oracle", "myoracle:loss", "--batch-size", 3,
            "--seed", 8, "-q"]
    rc, _, err = main(capsys, *base, "--out", tmp_path / "s.csv")
    assert rc == 1
    saved = tmp_path / "s.csv.answers.csv"
    assert f"saved in {saved}" in err and "--cache" in err
    assert not (tmp_path / "s.csv").exists()
    paid = {i for b in _calls(tmp_path / "a.log")[:2] for i in b}
    monkeypatch.setenv("FAIL_AFTER", "1000")
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "b.log"))
    rc, _, err = main(capsys, *base, "--cache", saved, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    again = [i for b in _calls(tmp_path / "b.log") for i in b]
    assert len(paid) == 6 and len(again) == 4 and not paid & set(again)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "c.log"))
    rc, _, err = main(capsys, *base, "--cache", tmp_path / "new.csv", "--out",
                      tmp_path / "u.csv")
    assert rc == 0, err
    _same(read_selection(tmp_path / "s.csv"), read_selection(tmp_path / "u.csv"))


def test_missing_pyarrow_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "e.parquet").write_bytes(b"PAR1")
    rc, _, err = main(capsys, "info", tmp_path / "e.parquet")
    assert rc == 1 and "pip install coreselect[parquet]" in err
    assert len(err.strip().splitlines()) == 1


def test_cache_written_from_python_is_reused(tmp_path, capsys, monkeypatch):
    X, loss, emb = _pool_with_oracle(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "a.log"))
    # a Python run with a cache, stopped by the oracle after its first batch
    calls = []

    def oracle(idx):
        calls.append(len(idx))
        if len(calls) > 1:
            raise RuntimeError("stop")
        return loss[idx]

    with pytest.raises(cs.OracleError):
        cs.sensitivity_sample(X, oracle, 20, n_clusters=6, seed=4, batch_size=4,
                              cache=tmp_path / "py.csv")
    rc, _, err = main(capsys, "select", emb, "-k", 6, "-s", 20, "--oracle", "myoracle:loss",
                      "--seed", 4, "--cache", tmp_path / "py.csv", "--out", tmp_path / "s.csv")
    assert rc == 0, err
    assert "without a coreselect header" in err
    assert sum(len(b) for b in _calls(tmp_path / "a.log")) == 6 - 4
    ref = cs.sensitivity_sample(X, loss.__getitem__, 20, n_clusters=6, seed=4)
    _same(read_selection(tmp_path / "s.csv"), ref)
