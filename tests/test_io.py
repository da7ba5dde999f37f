"""coreselect.io: embeddings readers, atomic writes, fingerprints, loss tables, selections."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from coreselect import Selection
from coreselect.io import (
    atomic_path,
    check_output,
    compare_fingerprints,
    embeddings_summary,
    fingerprint,
    load_embeddings,
    match_losses,
    read_losses,
    read_selection,
    write_selection,
    write_table,
)

X0 = np.arange(12, dtype=np.float32).reshape(4, 3) / 7


def _write(path, text):
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)


def _leftovers(folder) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".tmp"))


# ----------------------------------------------------------------------- embeddings
def test_npy_is_memory_mapped_and_exact(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X0)
    X = load_embeddings(path)
    assert isinstance(X, np.memmap)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, X0)
    assert not X.flags.writeable


def test_npy_int_is_cast_to_float(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.arange(6).reshape(3, 2))
    X = load_embeddings(path)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, np.arange(6).reshape(3, 2))


def test_truncated_npy_is_refused(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X0)
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_embeddings(path)


def test_pickle_disguised_as_npy_is_never_loaded(tmp_path):
    path = tmp_path / "X.npy"
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="pickle"):
        load_embeddings(path)
    assert not marker.exists()


def test_object_npy_is_refused(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickles"):
        load_embeddings(path)


def test_one_dimensional_npy_names_the_file(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.arange(3.0))
    with pytest.raises(ValueError, match=r"v\.npy.*2-D"):
        load_embeddings(path)


def test_npz_key_rules(tmp_path):
    one = tmp_path / "one.npz"
    np.savez(one, emb=X0)
    np.testing.assert_array_equal(load_embeddings(one), X0)
    two = tmp_path / "two.npz"
    np.savez(two, a=X0, b=X0 * 2)
    with pytest.raises(ValueError, match="choose one with key="):
        load_embeddings(two)
    np.testing.assert_array_equal(load_embeddings(two, key="b"), X0 * 2)
    with pytest.raises(ValueError, match=r"key=.c. is not in .*a, b"):
        load_embeddings(two, key="c")


def test_npz_not_a_zip(tmp_path):
    path = _write(tmp_path / "X.npz", "hello")
    with pytest.raises(ValueError, match="npz"):
        load_embeddings(path)


def test_key_on_csv_is_usage_error(tmp_path):
    path = _write(tmp_path / "X.csv", "1,2\n3,4\n")
    with pytest.raises(ValueError, match="key= applies"):
        load_embeddings(path, key="x")


def test_csv_with_and_without_header(tmp_path):
    with_header = _write(tmp_path / "h.csv", "a,b,c\n" + "\n".join(
        ",".join(repr(float(v)) for v in row) for row in X0) + "\n")
    without = _write(tmp_path / "n.csv", "\n".join(
        ",".join(repr(float(v)) for v in row) for row in X0) + "\n")
    for path in (with_header, without):
        X = load_embeddings(path)
        assert X.dtype == np.float64
        np.testing.assert_array_equal(X, X0.astype(np.float64))


def test_csv_header_only_and_empty(tmp_path):
    with pytest.raises(ValueError, match="header line but no rows"):
        load_embeddings(_write(tmp_path / "h.csv", "a,b\n"))
    with pytest.raises(ValueError, match="empty"):
        load_embeddings(_write(tmp_path / "e.csv", ""))


def test_csv_bad_cell_names_the_row(tmp_path):
    path = _write(tmp_path / "b.csv", "a,b\n1,2\n3,x\n")
    with pytest.raises(ValueError, match="line 3, column 2: 'x' is not a number"):
        load_embeddings(path)
    path = _write(tmp_path / "r.csv", "# note\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields; expected 2"):
        load_embeddings(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown embeddings format"):
        load_embeddings(_write(tmp_path / "X.txt", "1,2\n"))
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "nope.npy")


def test_parquet_list_fixed_and_wide_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [list(map(float, r)) for r in X0]
    # variable-length list column plus an id column that must be ignored
    pq.write_table(pa.table({"id": [10, 11, 12, 13], "emb": pa.array(rows, pa.list_(pa.float32()))}),
                   tmp_path / "list.parquet")
    X = load_embeddings(tmp_path / "list.parquet")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, X0)
    pq.write_table(pa.table({"emb": pa.array(rows, pa.list_(pa.float64(), 3))}),
                   tmp_path / "fixed.parquet")
    np.testing.assert_array_equal(load_embeddings(tmp_path / "fixed.parquet"), X0.astype(float))
    wide = pa.table({f"f{j}": X0[:, j] for j in range(3)} | {"name": ["a", "b", "c", "d"]})
    pq.write_table(wide, tmp_path / "wide.parquet")
    np.testing.assert_array_equal(load_embeddings(tmp_path / "wide.parquet"), X0)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "wide.parquet", key="f2,f0"),
                                  X0[:, [2, 0]])
    with pytest.raises(ValueError, match="no column 'zz'"):
        load_embeddings(tmp_path / "wide.parquet", key="zz")


def test_parquet_ragged_and_null_rows_are_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"emb": [[1.0, 2.0], [3.0]]}), tmp_path / "ragged.parquet")
    with pytest.raises(ValueError, match="row 1"):
        load_embeddings(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0]}),
                   tmp_path / "null.parquet")
    with pytest.raises(ValueError, match="null.*row 1"):
        load_embeddings(tmp_path / "null.parquet")
    _write(tmp_path / "junk.parquet", "not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet"):
        load_embeddings(tmp_path / "junk.parquet")


# ----------------------------------------------------------------------- fingerprint
def test_fingerprint_invariant_to_layout_and_sensitive_to_values(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 5))
    np.save(tmp_path / "X.npy", X)
    fp = fingerprint(X)
    assert fingerprint(np.load(tmp_path / "X.npy", mmap_mode="r")) == fp
    assert fingerprint(np.asfortranarray(X)) == fp
    assert fingerprint(X.astype(">f8")) == fp
    Y = X.copy()
    Y[999, 4] = np.nextafter(Y[999, 4], 10)
    assert fingerprint(Y)["hash"] != fp["hash"]
    assert "other values" in compare_fingerprints(fp, fingerprint(Y))
    assert "dtype" in compare_fingerprints(fp, fingerprint(X.astype(np.float32)))
    assert "shape" in compare_fingerprints(fp, fingerprint(X[:10]))
    assert compare_fingerprints(fp, fingerprint(X.copy())) is None


def test_fingerprint_blocks_do_not_change_it(monkeypatch):
    import coreselect.io as io

    X = np.random.default_rng(1).normal(size=(257, 3))
    fp = fingerprint(X)
    monkeypatch.setattr(io, "_HASH_BLOCK_BYTES", 24 * 7)  # 7 rows per block
    assert fingerprint(X) == fp


# ----------------------------------------------------------------------- summary
def test_summary_counts_duplicates_like_numpy_unique():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    X[10] = X[3]
    X[20] = X[3]
    X[200] = X[150]
    X[5, 2] = np.nan
    X[6, 0] = np.inf
    s = embeddings_summary(X)
    finite = X[np.isfinite(X).all(axis=1)]
    assert s["duplicate_rows"] == finite.shape[0] - np.unique(finite, axis=0).shape[0] == 3
    assert (s["nan"], s["inf"], s["rows_not_finite"], s["first_row_not_finite"]) == (1, 1, 2, 5)


# ----------------------------------------------------------------------- outputs
def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        _write(tmp, "partial")
        raise RuntimeError("killed")
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_existing_output_needs_force(tmp_path):
    out = _write(tmp_path / "out.csv", "keep me")
    with pytest.raises(FileExistsError, match="force=True"):
        write_table(out, {"a": [1]})
    assert open(out).read() == "keep me"
    write_table(out, {"a": [1]}, force=True)
    assert open(out).read() == "a\n1\n"
    with pytest.raises(ValueError, match="must end in"):
        check_output(tmp_path / "out.xlsx", formats=(".csv",))
    with pytest.raises(FileNotFoundError):
        check_output(tmp_path / "no" / "out.csv")


def test_csv_floats_round_trip_exactly(tmp_path):
    v = np.random.default_rng(3).random(50) * 1e-7 + 1 / 3
    path = write_table(tmp_path / "t.csv", {"index": np.arange(50), "loss": v})
    idx, got = read_losses(path)
    np.testing.assert_array_equal(idx, np.arange(50))
    np.testing.assert_array_equal(got, v)


def test_parquet_table_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    v = np.random.default_rng(3).random(20)
    path = write_table(tmp_path / "t.parquet", {"index": np.arange(20)[::-1], "loss": v})
    idx, got = read_losses(path)
    np.testing.assert_array_equal(idx, np.arange(20)[::-1])
    np.testing.assert_array_equal(got, v)


# ----------------------------------------------------------------------- losses
@pytest.mark.parametrize(
    "body, pattern",
    [
        ("index,loss\n1,0.5\n2,\n", r"line 3 \(index 2\): no loss given"),
        ("index,loss\n1,abc\n", r"line 2 \(index 1\): loss 'abc' is not a number"),
        ("index,loss\n1,nan\n", r"line 2 \(index 1\): loss is NaN"),
        ("index,loss\n1,inf\n", r"line 2 \(index 1\): loss 'inf' is not finite"),
        ("index,loss\n1,1\n2,-0.5\n", r"line 3 \(index 2\): loss -0.5 is negative"),
        ("index,loss\n1.5,1\n", r"line 2: index '1.5' is not an integer"),
        ("index,loss\n10,1\n", r"line 2: index 10 is not a row"),
        ("index,loss\n-1,1\n", r"line 2: index -1 is not a row"),
        ("index,loss\n1,1\n2,2\n1,1\n", r"index 1 on line 2 and line 4"),
        ("index,loss\n", r"header but no rows"),
        ("index,value\n1,2\n", r"no 'loss' column"),
        ("index,loss\n1,2,3\n", r"line 2: 3 fields"),
    ],
)
def test_bad_loss_rows_are_named(tmp_path, body, pattern):
    path = _write(tmp_path / "losses.csv", body)
    with pytest.raises(ValueError, match=pattern):
        read_losses(path, n=5)


def test_losses_comments_headerless_and_extra_columns(tmp_path):
    path = _write(tmp_path / "c.csv", "# from coreselect\nindex,note,loss\n3,a,1.5\n0,b,2\n")
    idx, v = read_losses(path)
    assert idx.tolist() == [3, 0] and v.tolist() == [1.5, 2.0]
    idx, v = read_losses(_write(tmp_path / "h.csv", "3,1.5\n0,2\n"))
    assert idx.tolist() == [3, 0] and v.tolist() == [1.5, 2.0]


def test_parquet_losses_null_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"index": [4, 2], "loss": [1.0, None]}), tmp_path / "l.parquet")
    with pytest.raises(ValueError, match=r"row 1 \(index 2\): no loss given"):
        read_losses(tmp_path / "l.parquet")


def test_match_losses_missing_extra_and_order():
    idx, v = np.array([9, 4, 7]), np.array([0.9, 0.4, 0.7])
    assert match_losses(idx, v, [7, 9, 4]).tolist() == [0.7, 0.9, 0.4]
    with pytest.raises(ValueError, match=r"no loss for 1 of the 4 indices needed \(first: 5\)"):
        match_losses(idx, v, [4, 5, 7, 9])
    with pytest.raises(ValueError, match=r"1 indices that were not queried \(first: 9\)"):
        match_losses(idx, v, [4, 7])
    assert match_losses(idx, v, [4, 7], allow_extra=True).tolist() == [0.4, 0.7]


# ----------------------------------------------------------------------- selections
def _selection(replace=True):
    return Selection(indices=[5, 2, 5], weights=[1.5, 2.25, 1.5],
                     probabilities=[1 / 9, 1 / 7, 1 / 9], n=10, centers=[2, 2, 6],
                     query_indices=[2, 6], query_losses=[0.5, 1.0], cluster_sizes=[4, 6],
                     replace=replace, method="sensitivity", params={"lam": 0.5})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz"])
def test_selection_round_trip(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    for replace in (True, False):
        sel = _selection(replace)
        path = tmp_path / f"sel{int(replace)}{suffix}"
        written = write_selection(path, sel)
        assert written[0] == str(path)
        back = read_selection(path)
        for name in ("indices", "weights", "probabilities", "centers", "query_indices",
                     "query_losses", "cluster_sizes"):
            np.testing.assert_array_equal(getattr(back, name), getattr(sel, name))
        assert (back.n, back.replace, back.params) == (sel.n, sel.replace, sel.params)
        y = np.array([1.0, 2.0, 1.0])
        assert back.estimate_total(y) == sel.estimate_total(y)
    assert _leftovers(tmp_path) == []


def test_selection_csv_columns_and_missing_side_file(tmp_path):
    path = tmp_path / "sel.csv"
    write_selection(path, _selection())
    lines = path.read_text().splitlines()
    assert lines[0] == "index,weight,probability,center,cluster_size"
    assert lines[1] == "5,1.5,0.1111111111111111,2,4"
    assert lines[3].endswith(",6,6")
    os.remove(str(path) + ".json")
    with pytest.raises(ValueError, match="side file"):
        read_selection(path)


def test_excel_style_csv_bom_and_crlf(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("\ufeffindex,loss\r\n3,0.25\r\n1,4\r\n".encode())
    idx, v = read_losses(path)
    assert idx.tolist() == [3, 1] and v.tolist() == [0.25, 4.0]
    emb = tmp_path / "e.csv"
    emb.write_bytes("\ufeff1.5,2\r\n3,4\r\n".encode())  # no header: the first row is data
    np.testing.assert_array_equal(load_embeddings(emb), [[1.5, 2.0], [3.0, 4.0]])


def test_unfilled_queries_file_says_so(tmp_path):
    path = write_table(tmp_path / "q.csv", {"index": [4, 9], "loss": [None, None]})
    with pytest.raises(ValueError, match="no loss has been filled in yet"):
        read_losses(path)


def test_quoted_cells_and_line_numbers_with_comments(tmp_path):
    path = _write(tmp_path / "l.csv", '# note\n"index","loss"\n\n"2","0.5"\n3,-1\n')
    with pytest.raises(ValueError, match=r"line 5 \(index 3\): loss -1.0 is negative"):
        read_losses(path)


def test_npz_members_are_memory_mapped_when_stored(tmp_path):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(50, 3)).astype(np.float32)
    B = np.asfortranarray(rng.normal(size=(40, 2)))
    np.savez(tmp_path / "s.npz", a=A, b=B, c=np.arange(4))
    np.savez_compressed(tmp_path / "c.npz", a=A)
    a = load_embeddings(tmp_path / "s.npz", key="a")
    b = load_embeddings(tmp_path / "s.npz", key="b")
    assert isinstance(a, np.memmap) and isinstance(b, np.memmap)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(b, B)
    c = load_embeddings(tmp_path / "c.npz")
    assert not isinstance(c, np.memmap)
    np.testing.assert_array_equal(c, A)
    assert not isinstance(load_embeddings(tmp_path / "s.npz", key="a", mmap=False), np.memmap)
