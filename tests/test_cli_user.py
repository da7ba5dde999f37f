"""The command line as a new user meets it (issue 17): what the library knows is printed,
columns are chosen, outputs are checked before the oracle is paid, plans are checked, a
shared cache is asked once, Ctrl-C exits 130. Every case runs ``python -m coreselect`` in a
subprocess on files in their real formats."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import make_blobs

from coreselect.cli._output import cli_words
from coreselect.io import read_selection

K, S = 6, 40

ORACLE = textwrap.dedent("""
    import os
    import signal
    import time
    import numpy as np

    LOSS = np.load(os.path.join(os.path.dirname(__file__), "loss.npy"))

    def loss(indices):
        with open(os.environ["ORACLE_LOG"], "a") as fh:
            fh.write(" ".join(str(int(i)) for i in indices) + "\\n")
        go = os.environ.get("WAIT_FOR")
        while go and not os.path.exists(go):  # hold the cache until the test says go
            time.sleep(0.05)
        if os.environ.get("INTERRUPT"):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
            time.sleep(5)
        return LOSS[indices]
""")


def _child_setup(umask):
    # a shell running jobs in the background starts them with SIGINT ignored, and Python
    # keeps an ignored SIGINT ignored: restore the default so that Ctrl-C is seen
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if umask is not None:
        os.umask(umask)


def run_cli(*args, cwd=None, env=None, umask=None):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "coreselect", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: _child_setup(umask))
    return proc.returncode, proc.stdout, proc.stderr


def _pool(tmp_path):
    X, _ = make_blobs(n=200, d=4, k=4, seed=5, dtype=np.float32)
    loss = (X.astype(np.float64) ** 2).sum(axis=1) / 40 + 0.01
    np.save(tmp_path / "emb.npy", X)
    np.save(tmp_path / "loss.npy", loss)
    (tmp_path / "myoracle.py").write_text(ORACLE)
    return X, loss, tmp_path / "emb.npy"


def _calls(log) -> list[int]:
    if not os.path.exists(log):
        return []
    with open(log) as fh:
        return [int(v) for line in fh for v in line.split()]


def _plan_and_answers(tmp_path, loss, emb, *, zero_first=False):
    run = tmp_path / "run"
    rc, _, err = run_cli("plan", emb, "-k", K, "--seed", 1, "--out", run, "-q")
    assert rc == 0, err
    with open(run / "queries.csv") as fh:
        rows = [int(r["index"]) for r in csv.DictReader(fh)]
    values = [0.0 if zero_first and j == 0 else float(loss[i]) for j, i in enumerate(rows)]
    answers = tmp_path / "answers.csv"
    answers.write_text("index,loss\n" + "".join(f"{i},{v!r}\n" for i, v in zip(rows, values, strict=True)))
    return run, answers


# --------------------------------------------------------------------------- what is known
def test_sample_select_estimate_print_the_verdict_and_every_warning(tmp_path):
    X, loss, emb = _pool(tmp_path)
    run, answers = _plan_and_answers(tmp_path, loss, emb, zero_first=True)
    # lam 0 and a center whose loss is 0: its rows can never be drawn, which is warned about
    args = ["sample", run, "--losses", answers, "-s", S, "--lam", "0", "--design",
            "sensitivity", "-q"]
    rc, out, err = run_cli(*args, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    sel = read_selection(tmp_path / "s.csv")
    said, warns = sel.diagnostics["verdict"], sel.diagnostics["warnings"]
    assert any("probability 0" in w for w in warns)
    lines = out.splitlines()
    assert f"verdict: {cli_words(said)}" in lines
    assert sum(line.startswith("warning: ") for line in lines) == len(warns)
    assert any("probability 0" in line and "--mix" in line for line in lines)  # flag, not mix=
    rc, out, err = run_cli(*args, "--out", tmp_path / "j.csv", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["verdict"] == said and data["warnings"] == warns

    labelled = tmp_path / "labelled.csv"
    labelled.write_text("index,loss\n" + "".join(f"{i},{float(loss[i])!r}\n" for i in range(len(X))))
    rc, out, err = run_cli("estimate", tmp_path / "s.csv", "--losses", labelled, "-q")
    assert rc == 0, err
    assert f"verdict: {cli_words(said)}" in out.splitlines()
    rc, out, err = run_cli("estimate", tmp_path / "s.csv", "--losses", labelled, "--json")
    assert json.loads(out)["warnings"] == warns

    for cache in ([], ["--cache", tmp_path / "c.csv"]):  # a memmap sampled directly, or a plan
        rc, out, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                               "--seed", 0, *cache, "--out", tmp_path / "sel.csv", "--force",
                               "-q", cwd=tmp_path, env={"ORACLE_LOG": str(tmp_path / "log")})
        assert rc == 0, err
        said = read_selection(tmp_path / "sel.csv").diagnostics["verdict"]
        assert f"verdict: {cli_words(said)}" in out.splitlines()


def test_json_errors_are_one_object_on_stdout(tmp_path):
    X, loss, emb = _pool(tmp_path)
    rc, out, err = run_cli("plan", tmp_path / "missing.npy", "-k", 3, "--out", tmp_path / "o",
                           "--json")
    assert rc == 2
    data = json.loads(out)
    assert data["exit"] == 2 and "missing.npy" in data["error"]
    assert err.strip().splitlines() == [f"coreselect: error: {data['error']}"]
    rc, out, _ = run_cli("plan", emb, "-k", "zero", "--out", tmp_path / "o", "--json")
    data = json.loads(out)  # an argparse error, too
    assert rc == 2 and data["exit"] == 2 and "'zero'" in data["error"]


def test_errors_name_the_flags_not_python_arguments(tmp_path):
    X, loss, emb = _pool(tmp_path)
    run, answers = _plan_and_answers(tmp_path, loss, emb)
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", 500, "--without-replacement",
                         "--out", tmp_path / "s.csv")
    assert rc == 2
    assert "--size must be at most n=200 with --without-replacement" in err
    assert "replace=" not in err
    rc, _, err = run_cli("plan", emb, "-k", 500, "--out", tmp_path / "p")
    assert rc == 2 and "--clusters must be an int in [1, n=200]" in err
    rc, _, err = run_cli("plan", emb, "-k", 3, "--out", run)
    assert rc == 2 and "pass --force to overwrite" in err and "force=True" not in err
    npz = tmp_path / "two.npz"
    np.savez(npz, a=X, b=X)
    rc, _, err = run_cli("info", npz)
    assert rc == 2 and "choose one with --key" in err and "key=" not in err


# --------------------------------------------------------------------------- columns
def _table(path, names, cols):
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        for row in zip(*cols, strict=True):
            fh.write(",".join(v if isinstance(v, str) else repr(v) for v in row) + "\n")


def test_columns_choose_the_embedding_and_id_columns_are_warned_about(tmp_path):
    X, _ = make_blobs(n=120, d=3, k=3, seed=2)
    ids = list(range(120))
    labels = [int(i % 4) for i in ids]
    text = [f"row {i}" for i in ids]
    names = ["id", "text", "x0", "x1", "x2", "label"]
    cols = [ids, text, *(c.tolist() for c in X.T), labels]
    path = tmp_path / "emb.csv"
    _table(path, names, cols)
    rc, out, err = run_cli("info", path, "--json")
    assert rc == 0, err
    assert json.loads(out)["shape"] == [120, 5]  # the text column left out, with a warning
    assert "non-numeric column 'text'" in err
    assert "'id' holds the row numbers" in err and "'label' is named like" in err
    assert "--columns" in err
    for spec in ("x0,x1,x2", "2:5", "x0,3,4"):
        rc, out, err = run_cli("info", path, "--columns", spec, "--json")
        assert rc == 0, err
        assert json.loads(out)["shape"] == [120, 3], spec
        assert "warning" not in err.lower() and "taken as an embedding" not in err
    rc, _, err = run_cli("info", path, "--columns", "x9")
    assert rc == 2 and "no column 'x9'" in err
    rc, _, err = run_cli("info", path, "--key", "x0")
    assert rc == 2 and "--key applies to .npz" in err

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = {n: c for n, c in zip(names, cols, strict=True)}
    pq.write_table(pa.table(table), tmp_path / "emb.parquet")
    rc, out, err = run_cli("info", tmp_path / "emb.parquet", "--json", "-q")
    assert rc == 0, err
    assert json.loads(out)["shape"] == [120, 5]
    assert "non-numeric column 'text'" in err and "'id' holds the row numbers" in err  # -q too
    rc, out, err = run_cli("info", tmp_path / "emb.parquet", "--columns", "2:5", "--json")
    assert json.loads(out)["shape"] == [120, 3]
    # the plan remembers the columns: sample checks the same embeddings by default
    rc, _, err = run_cli("plan", path, "--columns", "x0,x1,x2", "-k", 4, "--seed", 0,
                         "--out", tmp_path / "run", "-q")
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["columns"] == "x0,x1,x2"


# --------------------------------------------------------------------------- outputs
@contextlib.contextmanager
def _read_only_folder(tmp_path):
    """A read-only tmpfs (root can write anywhere else); skips where it cannot be mounted."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield folder
        finally:
            os.chmod(folder, 0o755)
        return
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                         capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_read_only_output_is_refused_before_the_oracle_is_asked(tmp_path):
    X, loss, emb = _pool(tmp_path)
    log = tmp_path / "log"
    with _read_only_folder(tmp_path) as ro:
        for out in (ro / "sel.csv", ro / "sub" / "sel.csv"):
            rc, _, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                                 "--seed", 0, "--out", out, cwd=tmp_path,
                                 env={"ORACLE_LOG": str(log)})
            assert rc == 2, err
            assert str(out) in err and ".tmp" not in err
            assert len(err.strip().splitlines()) == 1
        rc, _, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                             "--seed", 0, "--cache", ro / "c.csv", "--out", tmp_path / "s.csv",
                             cwd=tmp_path, env={"ORACLE_LOG": str(log)})
        assert rc == 2 and "--cache" in err, err
        assert _calls(log) == []  # nothing was paid for
    # a folder that does not exist yet is created, as plan does
    rc, _, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                         "--seed", 0, "--out", tmp_path / "new" / "deep" / "sel.csv", "-q",
                         cwd=tmp_path, env={"ORACLE_LOG": str(log)})
    assert rc == 0, err
    assert (tmp_path / "new" / "deep" / "sel.csv").exists()


def test_no_room_for_the_output_is_refused_before_the_oracle(tmp_path, capsys, monkeypatch):
    import shutil

    from coreselect import cli

    X, loss, emb = _pool(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORACLE_LOG", str(tmp_path / "log"))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 100))
    rc = cli.main(["select", str(emb), "-k", str(K), "-s", str(S), "--oracle",
                   "myoracle:loss", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and "100 bytes free" in err and "s.csv" in err
    assert _calls(tmp_path / "log") == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_respect_the_umask(tmp_path, umask):
    X, loss, emb = _pool(tmp_path)
    rc, _, err = run_cli("plan", emb, "-k", K, "--seed", 1, "--out", tmp_path / "run", "-q",
                         umask=umask)
    assert rc == 0, err
    rc, _, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                         "--seed", 0, "--cache", tmp_path / "c.csv", "--out",
                         tmp_path / "sel.csv", "-q", cwd=tmp_path,
                         env={"ORACLE_LOG": str(tmp_path / "log")}, umask=umask)
    assert rc == 0, err
    files = [tmp_path / "run" / f for f in ("plan.npz", "plan.json", "queries.csv")]
    files += [tmp_path / f for f in ("sel.csv", "sel.csv.json", "c.csv", "c.csv.plan.npz")]
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o666 & ~umask, f


# --------------------------------------------------------------------------- plans
def test_a_tampered_or_incomplete_plan_exits_2_with_one_line(tmp_path):
    X, loss, emb = _pool(tmp_path)
    run, answers = _plan_and_answers(tmp_path, loss, emb)
    base = ["sample", run, "--losses", answers, "-s", S]
    rc, out, err = run_cli(*base, "--out", tmp_path / "ok.csv")
    assert rc == 0, err
    assert "checking that" in err  # the embeddings are checked by default
    good = {f: (run / f).read_bytes() for f in ("plan.npz", "plan.json")}

    def tampered_npz():
        with np.load(run / "plan.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["distances"] = arrays["distances"] * 3  # cost x 3: lam moves
        np.savez(run / "plan.npz", **arrays)

    cases = {
        "edited plan.npz": (tampered_npz, "SHA-256 differs"),
        "garbage plan.json": (lambda: (run / "plan.json").write_text("{not json"),
                              "not a plan summary"),
        "deleted plan.json": (lambda: (run / "plan.json").unlink(), "is missing"),
    }
    for name, (damage, words) in cases.items():
        damage()
        rc, out, err = run_cli(*base, "--out", tmp_path / "bad.csv", "-q")
        assert rc == 2, (name, err)
        assert words in err and len(err.strip().splitlines()) == 1, (name, err)
        assert not (tmp_path / "bad.csv").exists(), name
        for f, data in good.items():
            (run / f).write_bytes(data)
    # a sampler saved from Python (no summary beside it) is checked by its own checksum
    with np.load(run / "plan.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["distances"] = arrays["distances"] * 3
    np.savez(tmp_path / "mine.npz", **arrays)
    rc, _, err = run_cli("sample", tmp_path / "mine.npz", "--losses", answers, "-s", S, "-q",
                         "--out", tmp_path / "bad.csv")
    assert rc == 2 and "corrupted" in err and len(err.strip().splitlines()) == 1, err
    # embeddings changed where the plan was made: refused, unless told not to look
    changed = X.copy()
    changed[3, 1] += 1
    np.save(emb, changed)
    rc, _, err = run_cli(*base, "--out", tmp_path / "bad.csv", "-q")
    assert rc == 2 and "SHA-256 differs" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(*base, "--no-check-embeddings", "--out", tmp_path / "ok2.csv", "-q")
    assert rc == 0, err
    os.remove(emb)  # not at hand: sampled without the check
    rc, _, err = run_cli(*base, "--out", tmp_path / "ok3.csv")
    assert rc == 0 and "not at hand" in err, err


# --------------------------------------------------------------------------- the cache
def test_two_runs_sharing_a_cache_ask_each_row_once(tmp_path):
    X, loss, emb = _pool(tmp_path)
    go = tmp_path / "go"
    args = [sys.executable, "-m", "coreselect", "select", str(emb), "-k", "10", "-s", str(S),
            "--oracle", "myoracle:loss", "--batch-size", "3", "--seed", "4",
            "--cache", str(tmp_path / "cache.csv")]
    env = dict(os.environ, ORACLE_LOG=str(tmp_path / "log"), WAIT_FOR=str(go))
    procs, errs = [], []
    try:
        for i in range(2):
            errs.append(open(tmp_path / f"err{i}", "w"))
            procs.append(subprocess.Popen(args + ["--out", str(tmp_path / f"s{i}.csv")],
                                          cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                          stderr=errs[i]))
            deadline = time.monotonic() + 60
            # the first run is in the oracle (holding the cache); the second waits for it
            want = ((lambda: _calls(tmp_path / "log")) if i == 0 else
                    (lambda: "waiting for its answers" in
                     "".join((tmp_path / f"err{j}").read_text() for j in range(2))))
            while not want():
                assert time.monotonic() < deadline, "the runs did not meet"
                assert all(p.poll() is None for p in procs)
                time.sleep(0.05)
        go.write_text("")
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for fh in errs:
            fh.close()
    asked = _calls(tmp_path / "log")
    assert len(asked) == len(set(asked)) == 10  # 10 centers, each asked once in all
    a, b = (read_selection(tmp_path / f"s{i}.csv") for i in range(2))
    np.testing.assert_array_equal(a.indices, b.indices)


# --------------------------------------------------------------------------- Ctrl-C
def test_sigint_exits_130_with_one_line_and_no_output(tmp_path):
    X, loss, emb = _pool(tmp_path)
    rc, out, err = run_cli("select", emb, "-k", K, "-s", S, "--oracle", "myoracle:loss",
                           "--seed", 0, "--cache", tmp_path / "c.csv", "--out",
                           tmp_path / "sel.csv", cwd=tmp_path,
                           env={"ORACLE_LOG": str(tmp_path / "log"), "INTERRUPT": "1"})
    assert rc == 128 + signal.SIGINT == 130
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert lines == [f"coreselect: error: interrupted; no output was written; the answers "
                     f"received are in {tmp_path / 'c.csv'}."]
    assert "Traceback" not in err
    assert [f for f in os.listdir(tmp_path) if f.startswith("sel")] == []


def test_progress_bars_leave_one_clean_line_off_a_terminal(tmp_path):
    X, loss, emb = _pool(tmp_path)
    rc, _, err = run_cli("plan", emb, "-k", K, "--seed", 0, "--out", tmp_path / "run")
    assert rc == 0, err
    assert "\r" not in err
    bars = [line for line in err.splitlines() if "[" in line and "/" in line]
    assert bars and all(line.rstrip() == line and " eta " not in line for line in bars)


def test_design_flag_gives_the_python_apis_selection(tmp_path):
    from coreselect.persist import load_sampler

    X, loss, emb = _pool(tmp_path)
    run, answers = _plan_and_answers(tmp_path, loss, emb)
    rc, out, err = run_cli("sample", run, "--losses", answers, "-s", S, "--design", "stratified",
                           "--seed", 3, "--out", tmp_path / "s.csv", "--json", "-q")
    assert rc == 0, err
    got = read_selection(tmp_path / "s.csv")
    sampler = load_sampler(run / "plan.npz")
    want = sampler.sample(loss[sampler.query_indices_], S, design="stratified", seed=3)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.weights, want.weights, rtol=1e-12)
    assert got.method == want.method
    assert json.loads(out)["verdict"] == want.diagnostics["verdict"]
    assert not np.array_equal(got.indices, sampler.sample(
        loss[sampler.query_indices_], S, design="sensitivity", seed=3).indices)  # the flag did change the draw
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", S, "--design", "nope",
                         "--out", tmp_path / "x.csv")
    assert rc == 2 and "--design" in err


def _plan_with_surrogate(tmp_path):
    """A plan, its answers and a surrogate file (a close prediction of the loss)."""
    X, loss, emb = _pool(tmp_path)
    run, answers = _plan_and_answers(tmp_path, loss, emb)
    g = tmp_path / "g.npy"
    np.save(g, 0.9 * loss + 0.1)
    return run, answers, g


def test_surrogate_flag_reaches_the_selection_and_bad_files_are_named(tmp_path):
    run, answers, g = _plan_with_surrogate(tmp_path)
    rc, out, err = run_cli("sample", run, "--losses", answers, "-s", S, "--surrogate", g,
                           "--seed", 3, "--out", tmp_path / "s.csv", "-q")
    assert rc == 0, err
    got = read_selection(tmp_path / "s.csv")
    assert got.surrogate.shape == (got.size,) and "surrogate_total" in got.params
    np.save(tmp_path / "short.npy", np.ones(3))
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", S, "--surrogate",
                         tmp_path / "short.npy", "--out", tmp_path / "x.csv")
    assert rc != 0 and "surrogate must have shape" in err
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", S, "--surrogate",
                         tmp_path / "none.npy", "--out", tmp_path / "x.csv")
    assert rc != 0 and "--surrogate" in err and "no such file" in err


def test_proposal_power_flag_reaches_the_selection(tmp_path):
    run, answers, g = _plan_with_surrogate(tmp_path)
    rc, out, err = run_cli("sample", run, "--losses", answers, "-s", S, "--surrogate", g,
                           "--proposal-power", 3, "--seed", 3, "--out", tmp_path / "s.csv",
                           "-q")
    assert rc == 0, err
    got = read_selection(tmp_path / "s.csv")
    assert got.params["proposal_power"] == 3.0 and got.params["design"] == "sensitivity"
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", S, "--surrogate", g,
                         "--proposal-power", 0, "--out", tmp_path / "x.csv")
    assert rc == 2 and "--proposal-power" in err
    rc, _, err = run_cli("sample", run, "--losses", answers, "-s", S, "--proposal-power", 2,
                         "--out", tmp_path / "x.csv")
    assert rc != 0 and "needs surrogate=" in err
