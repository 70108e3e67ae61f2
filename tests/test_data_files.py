"""Users' own data files: CSV/TSV, .npy, .npz, Parquet and idx folders, read by load_file and load_dataset."""

import gzip
import struct
import sys

import numpy as np
import pytest

from mixzoo import MixzooInputError
from mixzoo.data import is_data_path, load_dataset, load_file

X = np.array([[1.0, 2.0], [3.0, 4.5], [5.0, -6.0], [7.0, 8.0]])


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def iris_csv(tmp_path):
    return _write(
        tmp_path / "mydata.csv",
        "a,b,species,c\n1,2,setosa,0.5\n3,4.5,virginica,1\n5,-6,setosa,2\n7,8,versicolor,3\n",
    )


def _write_idx(path, arr):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


# ------------------------------------------------------------------------------------------------ round trips


def test_csv_round_trip_with_string_labels(iris_csv):
    d = load_file(iris_csv, label_column="species")
    assert d.name == "mydata.csv" and d.x.dtype == np.float32 and d.labels.dtype == np.int64
    np.testing.assert_array_equal(d.x, np.array([[1, 2, 0.5], [3, 4.5, 1], [5, -6, 2], [7, 8, 3]], np.float32))
    np.testing.assert_array_equal(d.labels, [0, 2, 0, 1])  # setosa < versicolor < virginica
    assert d.n_classes == 3 and d.image_shape is None and d.levels is None and len(d) == 4


def test_csv_integer_labels_sort_numerically_and_columns_choose_features(tmp_path):
    p = _write(tmp_path / "d.csv", "x,y,label,note\n1,2,10,a\n3,4,2,b\n5,6,10,c\n")
    d = load_file(p, label_column="label", columns=["y", "x"])
    np.testing.assert_array_equal(d.x, [[2, 1], [4, 3], [6, 5]])
    np.testing.assert_array_equal(d.labels, [1, 0, 1])  # 2 < 10, not "10" < "2"
    assert d.n_classes == 2
    assert load_file(p, columns="x, y").x.shape == (3, 2)  # one comma-separated string, as the CLI gives it


def test_tsv_round_trip_without_labels(tmp_path):
    p = _write(tmp_path / "t.tsv", "a\tb\n" + "".join(f"{r[0]}\t{r[1]}\n" for r in X) + "\n")
    d = load_file(p)
    np.testing.assert_array_equal(d.x, X.astype(np.float32))
    assert d.labels is None and d.n_classes is None and d.name == "t.tsv"


def test_npy_round_trip(tmp_path):
    np.save(tmp_path / "a.npy", X.astype(np.int32))
    d = load_file(tmp_path / "a.npy")
    np.testing.assert_array_equal(d.x, X.astype(np.int32).astype(np.float32))
    assert d.x.dtype == np.float32 and d.labels is None and d.name == "a.npy"


def test_npz_round_trip_with_and_without_labels(tmp_path):
    np.savez(tmp_path / "l.npz", x=X, y=np.array(["b", "a", "b", "c"]))
    d = load_file(tmp_path / "l.npz")
    np.testing.assert_array_equal(d.x, X.astype(np.float32))
    np.testing.assert_array_equal(d.labels, [1, 0, 1, 2])
    assert d.n_classes == 3 and d.name == "l.npz"
    np.savez(tmp_path / "u.npz", x=X)
    assert load_file(tmp_path / "u.npz").labels is None


def test_idx_folder_reads_like_mnist(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "myidx"
    folder.mkdir()
    for split, n in (("train", 6), ("t10k", 4)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = load_file(str(folder) + "/")
    builtin = load_dataset("mnist", data_dir=str(folder))
    np.testing.assert_array_equal(d.x, builtin.x)
    np.testing.assert_array_equal(d.labels, builtin.labels)
    assert d.name == "myidx" and d.image_shape == (28, 28) and (d.levels, d.top) == (builtin.levels, builtin.top)
    assert load_dataset(str(folder), dequantize=True).x.shape == (10, 784)  # integer levels: dequantizable


def test_parquet_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "kind": ["u", "v", "u", "v"]})
    df.to_parquet(tmp_path / "p.parquet")
    d = load_file(tmp_path / "p.parquet", label_column="kind")
    np.testing.assert_array_equal(d.x, X.astype(np.float32))
    np.testing.assert_array_equal(d.labels, [0, 1, 0, 1])
    with pytest.raises(MixzooInputError, match="column 'kind' of p.parquet is not numeric"):
        load_file(tmp_path / "p.parquet")


def test_parquet_tables_follow_the_csv_rules(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")  # pyarrow may be missing: hand load_file the frame read_parquet would give
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "n": [1, 2, 3], "kind": ["v", "u", "v"]})
    monkeypatch.setattr(pd, "read_parquet", lambda path: df)
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    d = load_file(tmp_path / "p.parquet", label_column="kind")
    np.testing.assert_array_equal(d.x, [[1, 1], [2, 2], [3, 3]])
    np.testing.assert_array_equal(d.labels, [1, 0, 1])
    assert d.name == "p.parquet" and d.n_classes == 2
    with pytest.raises(MixzooInputError, match=r"column 'kind' of p.parquet is not numeric; row 1 \(counting from 1\)"):
        load_file(tmp_path / "p.parquet")
    df.loc[1, "a"] = np.nan
    with pytest.raises(MixzooInputError, match=r"missing value at row 2 \(counting from 1\), column 'a'"):
        load_file(tmp_path / "p.parquet", columns=["n", "a"])


def test_parquet_without_pyarrow_names_the_install(tmp_path, monkeypatch):
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    pattern = r'reading p.parquet needs pyarrow: pip install pyarrow \(or pip install "mixzoo\[parquet\]"\)'
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(tmp_path / "p.parquet")


def test_tables_without_pandas_name_the_install(tmp_path, monkeypatch):
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    p = _write(tmp_path / "d.csv", "a,b\n1,2\n3,4\n")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    for path in (p, tmp_path / "p.parquet"):
        with pytest.raises(MixzooInputError, match=r"needs pandas, a dependency of mixzoo: pip install pandas"):
            load_file(path)


def test_is_data_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    (tmp_path / "data.txt").write_text("x")
    assert is_data_path("new.csv") and is_data_path("X.NPZ") and is_data_path("data.txt") and is_data_path(".")
    assert not is_data_path("digits") and not is_data_path("mnist") and not is_data_path("nope")


# ------------------------------------------------------------------------------------------------ load_dataset


def test_load_dataset_preprocesses_files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(3.0, 2.0, (40, 3)), y=np.arange(40) % 2)
    path = str(tmp_path / "d.npz")
    assert load_dataset(path, pca=1).x.shape == (40, 1)
    s = load_dataset(path, scale=True)
    np.testing.assert_allclose(s.x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x.std(axis=0), 1.0, atol=1e-4)
    sub = load_dataset(path, subsample=10, seed=1)
    assert sub.x.shape == (10, 3) and sub.labels.shape == (10,) and sub.name == "d.npz"
    with pytest.raises(MixzooInputError, match="'d.npz' has no evenly spaced levels to dequantize"):
        load_dataset(path, dequantize=True)


def test_load_dataset_passes_label_column_and_columns(iris_csv):
    d = load_dataset(str(iris_csv), label_column="species", columns=["a", "c"], data_dir="/ignored")
    assert d.x.shape == (4, 2) and d.n_classes == 3


@pytest.mark.parametrize("kwargs", [{"label_column": "y"}, {"columns": ["a"]}])
def test_column_options_with_builtin_data_are_errors(kwargs):
    option = "--label-column" if "label_column" in kwargs else "--columns"
    with pytest.raises(MixzooInputError, match=f"{option} applies to data files.*'moons'"):
        load_dataset("moons", **kwargs)


def test_unknown_name_mentions_files():
    with pytest.raises(MixzooInputError, match=r"unknown data 'nope'; choose one of: digits.*\.csv"):
        load_dataset("nope")


# ------------------------------------------------------------------------------------------------ errors


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(MixzooInputError, match=r"data file '.*gone\.csv' does not exist"):
        load_dataset(str(tmp_path / "gone.csv"))


def test_unknown_suffix_lists_supported(tmp_path):
    p = _write(tmp_path / "d.txt", "a\n1\n2\n")
    with pytest.raises(MixzooInputError, match=r"unsupported type '\.txt'; supported: \.csv, \.tsv, \.npy, \.npz"):
        load_dataset(str(p))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "is empty; it needs a header row"),
        ("a,b\n", "has no data rows"),
        ("a,b\n1,2\n", "has 1 data row; mixzoo needs at least 2"),
        ("1,2\n3,4\n5,6\n", "holds numbers, not column names.*add one"),
        ("a,a\n1,2\n3,4\n", "two columns named 'a'"),
        ("a,\n1,2\n3,4\n", "column 2 of d.csv has no name"),
        ("a,b\n1,2\n3\n", "data row 2 .*has 1 fields but the header has 2"),
    ],
)
def test_bad_tables(tmp_path, text, pattern):
    p = _write(tmp_path / "d.csv", text)
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(p)


@pytest.mark.parametrize(
    ("cell", "what"),
    [("", "a missing value"), ("NaN", "a missing value"), ("NA", "a missing value"), ("inf", "an infinite")],
)
def test_missing_and_infinite_cells_name_row_and_column(tmp_path, cell, what):
    p = _write(tmp_path / "d.csv", f"a,b\n1,2\n3,4\n5,{cell}\n")
    pattern = rf"{what}.* at data row 3 \(counting from 1 below the header; line 4 of the file\), column 'b'"
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(p)


def test_non_numeric_column_is_named_with_the_fix(iris_csv):
    with pytest.raises(
        MixzooInputError, match=r"column 'species' of mydata.csv is not numeric.*'setosa'.*--columns.*--label-column"
    ):
        load_file(iris_csv)
    with pytest.raises(MixzooInputError, match="column 'species' of mydata.csv is not numeric"):
        load_file(iris_csv, columns=["a", "species"])


def test_unknown_columns_list_the_available_ones(iris_csv):
    with pytest.raises(
        MixzooInputError, match=r"--columns names 'z', not a column of mydata.csv; its columns are: a, b, species, c"
    ):
        load_file(iris_csv, columns=["a", "z"])
    with pytest.raises(
        MixzooInputError, match=r"--label-column 'kind' is not a column.*its columns are: a, b, species, c"
    ):
        load_file(iris_csv, label_column="kind")
    with pytest.raises(MixzooInputError, match="both the --label-column and one of --columns"):
        load_file(iris_csv, label_column="a", columns=["a", "b"])
    with pytest.raises(MixzooInputError, match="names 'a' twice"):
        load_file(iris_csv, columns=["a", "a"])


def test_missing_label_is_an_error(tmp_path):
    p = _write(tmp_path / "d.csv", "a,y\n1,u\n2,\n3,v\n")
    with pytest.raises(MixzooInputError, match=r"missing or infinite label at data row 2 .*column 'y'"):
        load_file(p, label_column="y")


@pytest.mark.parametrize(
    ("arr", "pattern"),
    [
        (np.arange(4.0), r"shape \(4,\); mixzoo needs a 2-D array.*reshape\(-1, 1\)"),
        (np.zeros((2, 2, 2)), r"shape \(2, 2, 2\); mixzoo needs a 2-D array"),
        (np.zeros((1, 3)), "has 1 data row"),
        (np.zeros((0, 3)), "has no data rows"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype <U1; mixzoo needs numbers"),
        (np.array([[1.0, 2.0], [np.nan, 1.0]]), r"missing \(NaN\) value at row 2 \(counting from 1\), column 1"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), r"infinite .*value at row 1 \(counting from 1\), column 2"),
    ],
)
def test_bad_npy(tmp_path, arr, pattern):
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(tmp_path / "a.npy")


def test_npy_and_npz_reject_column_options(tmp_path):
    np.save(tmp_path / "a.npy", X)
    with pytest.raises(MixzooInputError, match="--label-column needs a table with column names, but a.npy"):
        load_dataset(str(tmp_path / "a.npy"), label_column="y")
    with pytest.raises(MixzooInputError, match="--columns needs a table with column names"):
        load_file(tmp_path / "a.npy", columns=["a"])
    np.savez(tmp_path / "z.npz", x=X)
    with pytest.raises(MixzooInputError, match="--label-column needs a table.*array y"):
        load_file(tmp_path / "z.npz", label_column="y")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", data=X, target=np.zeros(4))
    with pytest.raises(MixzooInputError, match=r"a.npz has no array 'x' \(it holds: data, target\)"):
        load_file(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=X, y=np.zeros(3))
    with pytest.raises(MixzooInputError, match=r"labels 'y' in b.npz have shape \(3,\), but 'x' has 4 rows"):
        load_file(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=X[:, 0])
    with pytest.raises(MixzooInputError, match=r"array 'x' in c.npz has shape \(4,\)"):
        load_file(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=X, y=np.array([0, 1, np.nan, 1]))
    with pytest.raises(MixzooInputError, match=r"missing or infinite value at row 3"):
        load_file(tmp_path / "d.npz")


def test_garbage_array_files(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"not numpy")
    with pytest.raises(MixzooInputError, match="could not read a.npy as a NumPy .npy file"):
        load_file(tmp_path / "a.npy")
    np.save(tmp_path / "o.npy", np.array([[object()], [1]], dtype=object))
    with pytest.raises(MixzooInputError, match="could not read o.npy"):
        load_file(tmp_path / "o.npy")


def test_folder_without_idx_files_names_the_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        MixzooInputError, match="folder .*empty' is read as MNIST-format idx files but has no train-images"
    ):
        load_dataset(str(tmp_path / "empty"))
    with pytest.raises(MixzooInputError, match="--columns needs a table.*a folder of MNIST idx files"):
        load_file(tmp_path / "empty", columns=["a"])


# ------------------------------------------------------------------------------------------------ readers


def _engines():
    """pandas' engines load_file reads CSV/TSV with: its C engine always, pyarrow's where pyarrow is installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return ["c", pytest.param("pyarrow", marks=pytest.mark.skip(reason="pyarrow is not installed"))]
    return ["c", "pyarrow"]


@pytest.fixture(params=_engines())
def engine(request, monkeypatch):
    import mixzoo.data.files as files

    monkeypatch.setattr(files, "_has_pyarrow", lambda: request.param == "pyarrow")
    return request.param


def _table():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    n = 50
    return pd.DataFrame(
        {
            "x": rng.normal(0, 100, n),
            "count": rng.integers(-5, 10**6, n),  # whole numbers
            "kind": rng.choice(["setosa", "virginica", "versicolor"], n),
            "tiny": rng.normal(0, 1e-30, n),
            "y": rng.normal(5, 1, n).round(3),
        }
    )


def test_csv_tsv_and_parquet_give_identical_arrays(tmp_path, engine):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    paths = [tmp_path / "t.csv", tmp_path / "t.tsv"]
    try:
        import pyarrow  # noqa: F401

        df.to_parquet(tmp_path / "t.parquet")
        paths.append(tmp_path / "t.parquet")
    except ImportError:
        pass
    expected = df[["x", "count", "tiny", "y"]].to_numpy(dtype=np.float64).astype(np.float32)
    _, codes = np.unique(df["kind"].to_numpy(dtype=str), return_inverse=True)
    for path in paths:
        d = load_file(path, label_column="kind")
        assert d.x.dtype == np.float32 and d.x.flags.c_contiguous, path
        np.testing.assert_array_equal(d.x, expected, err_msg=str(path))
        np.testing.assert_array_equal(d.labels, codes, err_msg=str(path))
        assert d.features == ("x", "count", "tiny", "y") and d.n_classes == 3
        sub = load_file(path, columns="y, count")
        np.testing.assert_array_equal(sub.x, expected[:, [3, 1]])


def test_whole_numbers_are_read_as_float32(tmp_path, engine):
    p = _write(tmp_path / "w.csv", "a,b\n1,-2\n3,16777216\n5,0\n")
    d = load_file(p)
    assert d.x.dtype == np.float32
    np.testing.assert_array_equal(d.x, np.array([[1, -2], [3, 16777216], [5, 0]], np.float32))


def test_spaces_blank_lines_quotes_and_a_bom_read_as_before(tmp_path, engine):
    text = '\ufeffa, b ,label\n\n1, 2.5, "u, v"\n  \n3 ,4,w\n\n5,  6 ,"u, v"\n'
    d = load_file(_write(tmp_path / "s.csv", text), label_column="label")
    np.testing.assert_array_equal(d.x, np.array([[1, 2.5], [3, 4], [5, 6]], np.float32))
    np.testing.assert_array_equal(d.labels, [0, 1, 0])
    assert d.features == ("a", "b")


def test_missing_tokens_in_any_case_and_spacing_are_missing(tmp_path, engine):
    for cell in ("NONE", " none ", "N/A", "null", "  ", "nan", "-nan"):
        p = _write(tmp_path / "m.csv", f"a,b\n1,2\n\n3,{cell}\n")
        pattern = r"a missing value at data row 2 \(.*line 4 of the file\), column 'b'"
        with pytest.raises(MixzooInputError, match=pattern):
            load_file(p)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a,b\n1,2\n3,4\n5\n", r"data row 3 \(counting from 1 below the header; line 4 of the file\) has 1 fields"),
        ("a,b\n1,2,9\n3,4\n", r"data row 1 \(counting from 1 below the header; line 2 of the file\) has 3 fields"),
        ("a,b\n1,2\n\n3,4,9\n", r"data row 2 \(counting from 1 below the header; line 4 of the file\) has 3 fields"),
        ("a,b,c\n1,2,\n3,4,5\n6,7\n", r"data row 3 .*line 4 of the file\) has 2 fields but the header has 3"),
        ("a,b\n1,2\n3,x\n", r"column 'b' of d.csv is not numeric; data row 2 \(.*line 3 of the file\) holds 'x'"),
        ("a,b\n1,2\n3,True\n", r"column 'b' of d.csv is not numeric; data row 2 .* holds 'True'"),
        ("a,b\n1,2\n\n3,1e500\n", r"an infinite value \(or one too large\) at data row 2 \(.*line 4.*column 'b'"),
        ("a,b\n1,2\n3,-inf\n", r"an infinite value .* at data row 2 \(.*line 3 of the file\), column 'b'"),
        ("a,b\n1,\n,4\n", r"a missing value at data row 1 \(.*line 2 of the file\), column 'b'"),
    ],
)
def test_each_table_error_names_its_row_and_column(tmp_path, engine, text, pattern):
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(_write(tmp_path / "d.csv", text))


def test_label_errors_name_row_and_column(tmp_path, engine):
    p = _write(tmp_path / "d.csv", "a,y\n1,2\n2,3\n\n3,inf\n")
    with pytest.raises(MixzooInputError, match=r"missing or infinite label at data row 3 \(.*line 5.*column 'y'"):
        load_file(p, label_column="y")
    p = _write(tmp_path / "e.csv", "a,y\n1,u\n2,NA\n3,v\n")
    with pytest.raises(MixzooInputError, match=r"missing or infinite label at data row 2 \(.*line 3.*column 'y'"):
        load_file(p, label_column="y")


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path, engine):
    p = tmp_path / "b.csv"
    p.write_bytes(b"a,b\n" + b"1,2\n" * 5000 + b"3,\xff\n")
    with pytest.raises(MixzooInputError, match=r"b.csv is not UTF-8 text \(invalid start byte at byte 20006\)"):
        load_file(p)


def test_npy_float32_is_memory_mapped_not_copied(tmp_path):
    x = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    d = load_file(tmp_path / "f.npy")
    assert type(d.x) is np.ndarray and not d.x.flags.owndata and not d.x.flags.writeable
    assert isinstance(d.x.base, np.memmap)
    np.testing.assert_array_equal(d.x, x)
    with pytest.raises(ValueError, match="read-only"):
        d.x[0, 0] = 7.0  # mapped read-only: the file keeps its values, and no page holds anything else
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), x)


def test_npz_uncompressed_x_is_memory_mapped_and_compressed_is_read(tmp_path):
    x = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    y = np.arange(500) % 3
    np.savez(tmp_path / "u.npz", y=y, x=x)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=y)
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(x.astype(np.float64)), y=y)
    for name in ("u.npz", "c.npz", "f.npz"):
        d = load_file(tmp_path / name)
        np.testing.assert_array_equal(d.x, x, err_msg=name)
        np.testing.assert_array_equal(d.labels, y)
    assert isinstance(load_file(tmp_path / "u.npz").x.base, np.memmap)


def test_arrays_of_other_dtypes_are_converted_in_blocks(tmp_path, monkeypatch):
    import mixzoo.data.files as files

    monkeypatch.setattr(files, "_CHUNK_ROWS", 7)
    x = np.arange(100 * 3, dtype=np.int64).reshape(100, 3)
    np.save(tmp_path / "i.npy", x)
    np.testing.assert_array_equal(load_file(tmp_path / "i.npy").x, x.astype(np.float32))
    bad = x.astype(np.float64)
    bad[52, 2] = 1e300
    np.save(tmp_path / "b.npy", bad)
    pattern = r"an infinite \(or too large\) value at row 53 \(counting from 1\), column 3"
    with pytest.raises(MixzooInputError, match=pattern):
        load_file(tmp_path / "b.npy")
