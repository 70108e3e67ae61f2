"""Unit tests of the input checks (mixzoo.data.validation) and the file readers (mixzoo.data.files): the exact
messages a user sees, the values and dtypes handed on, and the boundaries of what is accepted."""

import re
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

from mixzoo import MixzooInputError
from mixzoo.data import load_file
from mixzoo.data.mapped import is_mapped
from mixzoo.data.validation import (
    MAX_ABS,
    _extremes,
    check_columns,
    check_data,
    check_device,
    check_labels,
    check_n_clusters,
)

pd = pytest.importorskip("pandas")

X = np.array([[1.0, 2.0], [3.0, 4.5], [5.0, -6.0], [7.0, 8.0]])


def _write(path, text):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _raises(pattern):
    return pytest.raises(MixzooInputError, match=pattern)


# ============================================================================================ validation: columns


def test_dataframe_non_numeric_columns_are_named_with_their_dtypes():
    df = pd.DataFrame(
        {
            "a": [1.0, 2.0],
            "name": ["u", "v"],
            "kind": pd.Categorical(["x", "y"]),
            "when": pd.to_datetime(["2020-01-01", "2020-01-02"]),
        }
    )
    pattern = (
        r"^train has non-numeric column\(s\) 'name' \(\w+\), 'kind' \(category\), 'when' \(datetime64[^)]*\); "
        r"drop them or encode them as numbers \(e\.g\. pandas\.get_dummies\)\.$"
    )
    with _raises(pattern):
        check_columns(df, name="train")
    with _raises(pattern):  # check_data names the columns too, not just "dtype object"
        check_data(df, name="train")
    with _raises(r"^data has non-numeric column\(s\) 'name' "):
        check_data(df[["a", "name"]])


def test_dataframe_numeric_and_bool_columns_are_accepted():
    df = pd.DataFrame(
        {
            "f": [1.5, -2.0, 3.0],
            "i": np.array([1, 2, 3], dtype=np.int32),
            "u": np.array([4, 5, 6], dtype=np.uint8),
            "b": [True, False, True],
            "n": pd.array([7, 8, 9], dtype="Int64"),
        }
    )
    assert check_columns(df) is None
    t = check_data(df[["f", "i", "u"]])
    assert t.dtype == torch.float32 and t.is_contiguous()
    assert t.tolist() == [[1.5, 1.0, 4.0], [-2.0, 2.0, 5.0], [3.0, 3.0, 6.0]]
    assert check_data(df[["b"]]).flatten().tolist() == [1.0, 0.0, 1.0]


class _Table:
    """A duck-typed table: ``columns`` and a mapping ``dtypes`` (as check_columns' docstring allows)."""

    def __init__(self, dtypes, columns=True):
        self.dtypes = dtypes
        if columns:
            self.columns = list(dtypes)


def test_duck_typed_tables_are_checked_and_other_inputs_pass():
    with _raises(r"^data has non-numeric column\(s\) 'w' \(weird\);"):  # a dtype without .kind is not numeric
        check_columns(_Table({"a": np.dtype("float64"), "w": "weird"}))
    check_columns(_Table({"a": np.dtype("float64"), "b": np.dtype("int8")}))
    check_columns(_Table({"s": np.dtype(object)}, columns=False))  # no columns: not a table
    check_columns(np.array([["a", "b"]]))  # arrays (one dtype, no columns) are left to check_data
    check_columns(pd.Series(["a", "b"]))  # a Series has dtypes but no columns


# ============================================================================================ validation: check_data


def test_check_data_returns_contiguous_float32_with_the_same_values():
    rng = np.random.default_rng(0)
    f64 = rng.normal(size=(7, 3))
    ints = rng.integers(-1000, 1000, size=(7, 3))
    fortran = np.asfortranarray(f64)
    for a in (f64, ints, fortran, f64[::-1], f64.T.copy().T):
        t = check_data(a)
        assert t.dtype == torch.float32 and t.is_contiguous() and t.shape == a.shape
        np.testing.assert_array_equal(t.numpy(), a.astype(np.float32))
    one = check_data(np.array([[1.0], [2.0], [3.0]]))  # a single feature is not "empty"
    assert one.shape == (3, 1) and one.flatten().tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("shape", [(0, 3), (4, 0)])
def test_empty_data_is_named_with_its_shape(shape):
    with _raises(rf"^x is empty \(shape \({shape[0]}, {shape[1]}\)\); pass at least one sample and one feature\.$"):
        check_data(np.zeros(shape), name="x")


def test_not_two_d_message_names_the_shape_and_the_fix():
    with _raises(r"^data must be 2-D \(n_samples, n_features\) but has shape \(5,\); reshape it, e\.g\. "
                 r"X\.reshape\(len\(X\), -1\)\.$"):
        check_data(np.zeros(5))


def test_complex_numpy_data_is_refused():
    with _raises(r"^data is complex; pass real numbers\.$"):
        check_data(np.array([[1 + 2j, 1.0], [0.0, 1.0]]))
    with _raises(r"^data has dtype torch\.complex64; pass real numbers \(float\)\.$"):
        check_data(torch.ones(2, 2, dtype=torch.complex64))


def test_nan_and_inf_are_reported_with_their_count_and_first_row():
    a = np.array([[1.0, 2.0], [3.0, np.nan], [np.inf, 0.0], [1.0, 1.0]])
    msg = r"^data contains 2 NaN/inf values \(first in row 1\); drop or impute those rows before fitting\.$"
    with _raises(msg):
        check_data(a)
    with _raises(msg):  # the same for a tensor
        check_data(torch.as_tensor(a))
    with _raises(r"contains 1 NaN/inf values \(first in row 0\)"):  # a single value is checked too
        check_data(torch.tensor([[float("nan")]]))
    with _raises(r"contains 1 NaN/inf values \(first in row 0\)"):
        check_data(np.array([[np.inf]]))
    for dtype in (np.float32, np.float16):  # NaN in any float type is NaN, not a value beyond float32's range
        with _raises(r"^data contains 1 NaN/inf values \(first in row 1\);"):
            check_data(np.array([[1.0, 2.0], [np.nan, 0.0]], dtype=dtype))


def test_values_beyond_float32_are_told_apart_from_nan():
    msg = (
        r"^data has 1 values beyond float32's range \(~3\.4e38; first in row 2\); rescale the data, e\.g\. "
        r"standardise each feature\.$"
    )
    a = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, -1e39]])
    with _raises(msg):
        check_data(a)
    with _raises(msg):  # a float64 tensor is finite before the float32 conversion, as the array is
        check_data(torch.as_tensor(a, dtype=torch.float64))


def test_max_abs_boundary():
    assert MAX_ABS == 1e15
    at = np.float32(MAX_ABS)  # the float32 nearest 1e15 (just below it): accepted, negative too
    above = np.nextafter(at, np.float32(np.inf))  # the next float32: beyond 1e15
    ok = check_data(np.array([[0.0, at], [-at, 1.0]], dtype=np.float32))
    assert ok[0, 1].item() == float(at) and ok[1, 0].item() == -float(at)
    check_data(np.array([[1e15, -1e15], [0.0, 0.0]]))  # exactly 1e15 written in float64
    with _raises(r"^data has values as large as 1e\+15 \(first in row 1\); beyond 1e\+15 squared distances overflow "
                 r"float32 densities\. Standardise the data \(--scale or StandardScaler\)\.$"):
        check_data(np.array([[0.0, 1.0], [0.0, above]], dtype=np.float32))


def test_large_negative_values_are_refused_like_positive_ones():
    with _raises(r"as large as 1e\+20 \(first in row 2\)"):
        check_data(np.array([[1.0, 2.0], [3.0, 4.0], [-1e20, 0.0]]))
    with _raises(r"as large as 1e\+20 \(first in row 0\)"):
        check_data(torch.tensor([[-1e20, 0.0], [1.0, 1.0]]))


def test_extremes():
    from mixzoo.data.mapped import extremes

    assert _extremes(torch.empty(0, 3)) == (0.0, 0.0)
    assert extremes(np.empty((0, 3))) == (0.0, 0.0)
    assert _extremes(torch.tensor([[4.0]])) == (4.0, 4.0)
    assert extremes(np.array([[4.0]])) == (4.0, 4.0)
    assert _extremes(torch.tensor([[3.0, -2.0], [7.5, 0.0]])) == (-2.0, 7.5)
    assert extremes(np.array([[3.0, -2.0], [7.5, 0.0]])) == (-2.0, 7.5)
    lo, hi = extremes(np.array([1.0, np.nan]))
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = _extremes(torch.tensor([1.0, float("nan")]))
    assert np.isnan(lo) and np.isnan(hi)


# ============================================================================================ validation: K, labels


def test_n_clusters_boundaries():
    assert check_n_clusters(5, 5) == 5  # as many clusters as points
    assert check_n_clusters(np.int64(3), 10) == 3 and type(check_n_clusters(np.int64(3), 10)) is int
    assert check_n_clusters(7) == 7  # no sample count: no upper bound
    with _raises(r"^fewer points \(4\) than clusters \(5\); lower the number of clusters or pass more data\.$"):
        check_n_clusters(5, 4)
    with _raises(r"^number of clusters must be an integer, got True\.$"):
        check_n_clusters(True, 10)
    with _raises(r"^number of clusters must be an integer, got '3'\.$"):
        check_n_clusters("3", 10)


def test_labels_are_long_and_keep_their_values():
    t = check_labels(np.array([0, 2, -1, 1], dtype=np.int32), 4, 3)
    assert t.dtype == torch.long and t.tolist() == [0, 2, -1, 1]
    t = check_labels([2.0, -1.0, 0.0], 3, 3)  # integral floats are integers
    assert t.dtype == torch.long and t.tolist() == [2, -1, 0]
    for dtype in (np.float32, np.float16):
        t = check_labels(np.array([1, -1, 0], dtype=dtype), 3, 2)
        assert t.dtype == torch.long and t.tolist() == [1, -1, 0]
    assert check_labels([-1, -1], 2, 2).tolist() == [-1, -1]  # all unlabelled
    assert check_labels([0, 9], 2).tolist() == [0, 9]  # without n_clusters only -1 is the bound


def test_label_boundaries():
    assert check_labels([0, 2], 2, 3).tolist() == [0, 2]  # n_clusters - 1
    with _raises(r"^labels must lie in \[0, 3\) or be -1 \(unlabelled\); found 0\.\.3\.$"):
        check_labels([0, 3], 2, 3)
    with _raises(r"^labels must lie in \[0, 3\) or be -1 \(unlabelled\); found -2\.\.1\.$"):
        check_labels([-2, 1], 2, 3)
    with _raises(r"^labels must lie in \[0, None\) or be -1 \(unlabelled\); found -2\.\.0\.$"):
        check_labels([-2, 0], 2)
    with _raises(r"found 0\.\.5\.$"):  # integral floats are reported as the integers they are
        check_labels([0.0, 5.0], 2, 2)


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        ([0, 0.5, 1], "float64"),
        ([0.0, np.inf], "float64"),
        ([0.0, np.nan], "float64"),
        (["a", "b"], "<U1"),
        ([True, False], "bool"),
    ],
)
def test_non_integer_labels_are_refused(labels, dtype):
    msg = rf"^labels must be integers \(dtype {re.escape(dtype)}\); use -1 for unlabelled points\.$"
    with _raises(msg):
        check_labels(np.array(labels), len(labels), 2)


def test_label_shape():
    with _raises(r"^labels must be 1-D with 3 entries, got shape \(3, 1\)\.$"):
        check_labels(np.zeros((3, 1), dtype=int), 3, 2)
    with _raises(r"^labels must be 1-D with 3 entries, got shape \(2,\)\.$"):
        check_labels([0, 1], 3, 2)


# ============================================================================================ validation: devices


CUDA_MISSING = (
    "device 'cuda' was asked for, but this torch sees no CUDA GPU (a CPU build, or no driver); "
    "use --device cpu, or install a CUDA build of torch."
)


@pytest.mark.parametrize("available", [True, False])
def test_cpu_is_always_accepted(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert check_device("cpu") == torch.device("cpu")
    dev = check_device(torch.device("cpu"))
    assert isinstance(dev, torch.device) and dev.type == "cpu"


def test_cuda_is_accepted_only_where_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with _raises(f"^{re.escape(CUDA_MISSING)}$"):
            check_device(device)


@pytest.mark.parametrize("device", ["gpu", "mps", "meta", "", "cuda:x", None, 1.5])
def test_bad_devices_are_refused(device):
    with _raises(rf"^device must be 'cpu' or 'cuda', got {re.escape(repr(device))}\.$"):
        check_device(device)


# ============================================================================================ files: arguments


def test_empty_columns_option(tmp_path):
    p = _write(tmp_path / "d.csv", "a,b\n1,2\n3,4\n")
    for columns in ([], " , ", ""):
        with _raises(r"^--columns names no column; name the feature columns, or drop --columns\.$"):
            load_file(p, columns=columns)


def test_file_without_suffix(tmp_path):
    p = _write(tmp_path / "data", "a,b\n1,2\n3,4\n")
    with _raises(
        r"has an unsupported type '\(no suffix\)'; supported: \.csv, \.tsv, \.npy, \.npz, \.parquet, or a folder of "
        r"MNIST idx files\. Convert the file, or rename it if its content is one of these\.$"
    ):
        load_file(p)


def test_column_options_on_arrays_and_folders_name_the_file(tmp_path):
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "z.npz", x=X)
    (tmp_path / "imgs").mkdir()
    label_note = r" \(an \.npz file carries its labels as the array y\)\.$"
    cases = [
        ("a.npy", "a .npy array"),
        ("z.npz", "a .npz array"),
        ("imgs", "a folder of MNIST idx files"),
    ]
    for name, kind in cases:
        head = rf"needs a table with column names, but {re.escape(name)} is {re.escape(kind)}, which has none; drop "
        with _raises(rf"^--label-column {head}--label-column{label_note}"):
            load_file(tmp_path / name, label_column="y")
        with _raises(rf"^--columns {head}--columns\.$"):
            load_file(tmp_path / name, columns=["a"])


# ============================================================================================ files: CSV/TSV


def test_csv_header_columns_and_labels(tmp_path):
    p = _write(tmp_path / "iris.csv", "sepal,petal, species ,width\n1,2,b,0.5\n3,4.5,a,1\n5,-6,c,2\n7,8,a,3\n")
    d = load_file(p, label_column="species")
    assert d.name == "iris.csv" and d.features == ("sepal", "petal", "width")
    assert d.x.dtype == np.float32 and d.labels.dtype == np.int64 and d.n_classes == 3
    np.testing.assert_array_equal(d.x, np.array([[1, 2, 0.5], [3, 4.5, 1], [5, -6, 2], [7, 8, 3]], np.float32))
    np.testing.assert_array_equal(d.labels, [1, 0, 2, 0])
    sub = load_file(p, columns="width,sepal", label_column="species")
    assert sub.features == ("width", "sepal") and sub.n_classes == 3
    np.testing.assert_array_equal(sub.x, np.array([[0.5, 1], [1, 3], [2, 5], [3, 7]], np.float32))
    numeric = load_file(p, columns=["petal"], label_column="width")  # numeric labels: classes in numeric order
    np.testing.assert_array_equal(numeric.labels, [0, 1, 2, 3])
    assert numeric.n_classes == 4 and numeric.x.shape == (4, 1)


def test_tsv_reads_like_csv(tmp_path):
    p = _write(tmp_path / "t.tsv", "a\tb\tkind\n1\t2\tu\n3\t4.5\tv\n5\t-6\tu\n")
    d = load_file(p, label_column="kind")
    np.testing.assert_array_equal(d.x, np.array([[1, 2], [3, 4.5], [5, -6]], np.float32))
    np.testing.assert_array_equal(d.labels, [0, 1, 0])
    assert d.n_classes == 2 and d.features == ("a", "b") and d.name == "t.tsv"


def test_table_message_details(tmp_path):
    p = _write(tmp_path / "d.csv", "a,b,y\n1,2,u\n3,4,v\n")
    with _raises(r"^--columns names 'z', 'w', not a column of d\.csv; its columns are: a, b, y\.$"):
        load_file(p, columns=["a", "z", "w"])
    with _raises(
        r"^column 'y' is both the --label-column and one of --columns; labels are for evaluation only: drop it "
        r"from --columns\.$"
    ):
        load_file(p, columns=["a", "y"], label_column="y")
    q = _write(tmp_path / "q.csv", "y\n1\n2\n")
    with _raises(r"^q\.csv has no feature columns besides the label column 'y'\.$"):
        load_file(q, label_column="y")
    one = _write(tmp_path / "one.csv", "a,b\n1,2\n")
    with _raises(r"^one\.csv has 1 data row; mixzoo needs at least 2 points\.$"):
        load_file(one)


@pytest.mark.parametrize(
    ("name", "text", "row", "line", "fields", "uses"),
    [
        ("s.csv", "a,b\n1,2\n3\n", 2, 3, 1, "CSV uses a comma"),
        ("l.csv", "a,b\n1,2\n3,4\n5,6,7\n", 3, 4, 3, "CSV uses a comma"),
        ("s.tsv", "a\tb\n1\t2\n\n3\n", 2, 4, 1, "TSV uses a tab"),
        ("l.tsv", "a\tb\n1\t2\t3\n4\t5\n", 1, 2, 3, "TSV uses a tab"),
    ],
)
def test_short_and_long_rows_name_the_row_line_and_delimiter(tmp_path, name, text, row, line, fields, uses):
    pattern = (
        rf"^{re.escape(name)}: data row {row} \(counting from 1 below the header; line {line} of the file\) has "
        rf"{fields} fields but the header has 2; every row needs one value per column \(check the delimiter: "
        rf"{uses}\)\.$"
    )
    with _raises(pattern):
        load_file(_write(tmp_path / name, text))


def test_quoted_fields_after_spaces_count_as_one(tmp_path):
    p = _write(tmp_path / "d.csv", 'a,label\n1, "u, v"\n2,w,9\n')
    with _raises(r"data row 2 \(counting from 1 below the header; line 3 of the file\) has 3 fields"):
        load_file(p)


def test_missing_and_text_cells_name_row_line_and_column(tmp_path):
    def check(text, pattern, **kw):
        with _raises(pattern):
            load_file(_write(tmp_path / "d.csv", text), **kw)

    # the first bad value in row-major order: row 2's column 'a' before its column 'b'
    check("a,b\n1,2\n,inf\n", r"^d\.csv has a missing value at data row 2 \(counting from 1 below the header; line 3 "
          r"of the file\), column 'a'; fill it in or drop that row \(mixzoo does not impute\)\.$")
    check("a,b\n1,2\n3,inf\n,4\n", r"an infinite value \(or one too large\) at data row 2 .*column 'b'")
    # a row whose first cell is empty is a data row, not a blank line
    check("a,b\n1,2\n,4\n5,6\n", r"missing value at data row 2 \(counting from 1 below the header; line 3 of")
    # a line of spaces is blank: skipped, and the lines after it keep their numbers
    check("a,b\n1,2\n   \n3,x\n", r"^column 'b' of d\.csv is not numeric; data row 2 \(counting from 1 below the "
          r"header; line 4 of the file\) holds 'x'\. Choose the feature columns with --columns, or name it with "
          r"--label-column if it holds the labels\.$")
    # a missing cell before a text cell: the column is text
    check("a,b\n1,N/A\n2,x\n", r"column 'b' of d\.csv is not numeric; data row 2 \(.*line 3 of the file\) holds 'x'")
    check("a,b\n1,2\n2, none \n", r"a missing value at data row 2 \(.*line 3 of the file\), column 'b'")
    # only mixzoo's missing tokens are missing: other spellings are text, shown as they are
    check("a,b\n1,#N/A\n2,3\n", r"column 'b' of d\.csv is not numeric; data row 1 \(.*line 2 of the file\) holds '#N/A'")
    # True/False are not numbers
    check("a,flag\n1,True\n2,False\n", r"column 'flag' of d\.csv is not numeric; data row 1 .* holds 'True'")
    check("a,y\n1,u\n2,NA\n3,v\n", r"^d\.csv has a missing or infinite label at data row 2 \(counting from 1 below the "
          r"header; line 3 of the file\), column 'y'; every row needs a label, or drop --label-column\.$",
          label_column="y")


def test_overflowing_cells_are_reported_without_numpy_warnings(tmp_path):
    p = _write(tmp_path / "d.csv", "a,b\n1,2\n3,1e39\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with _raises(r"an infinite value \(or one too large\) at data row 2 \(.*line 3 of the file\), column 'b'"):
            load_file(p)


def test_a_text_cell_deep_in_a_large_file(tmp_path):
    n = 300_000  # large enough for pandas to read the column in chunks of different types
    p = _write(tmp_path / "big.csv", "a,b\n" + "1,2\n" * n + "3,x\n")
    pattern = rf"column 'b' of big\.csv is not numeric; data row {n + 1} \(.*line {n + 2} of the file\) holds 'x'"
    with _raises(pattern):
        load_file(p)


def test_unreadable_tables(tmp_path):
    long = "x" * 200_000  # beyond the csv module's field limit
    with _raises(r"^h\.csv is not valid CSV: field larger than field limit \(131072\)\.$"):
        load_file(_write(tmp_path / "h.csv", f"{long},b\n1,2\n3,4\n"))
    with _raises(r"^r\.csv is not valid CSV: field larger than field limit \(131072\)\.$"):
        load_file(_write(tmp_path / "r.csv", f"a,b\n{long},2\n1,2,3\n"))
    with _raises(r"^q\.csv is not valid CSV: .*EOF inside string"):
        load_file(_write(tmp_path / "q.csv", 'a,b\n1,"2\n3,4\n'))
    # where the line cannot be found, the message still names the data row
    p = _write(tmp_path / "n.csv", f"a,note\n1,{long}\ny,2\n")
    with _raises(r"column 'a' of n\.csv is not numeric; data row 2 \(counting from 1 below the header\) holds 'y'"):
        load_file(p, columns=["a"])


def test_not_utf8_names_the_byte(tmp_path):
    with _raises(r"^h\.csv is not UTF-8 text \(invalid start byte at byte 2\); save it as UTF-8\.$"):
        load_file(_write(tmp_path / "h.csv", b"a,\xffb\n1,2\n3,4\n"))
    with _raises(r"^e\.csv is not UTF-8 text \(unexpected end of data at byte 11\); save it as UTF-8\.$"):
        load_file(_write(tmp_path / "e.csv", b"a,b\n1,2\n3,4\xc3"))
    with _raises(r"^t\.tsv is not UTF-8 text \(invalid start byte at byte 6\)"):
        load_file(_write(tmp_path / "t.tsv", b"a\tb\n1\t\xff\n3\t4\n"))


def test_not_utf8_offset_past_the_first_megabytes(tmp_path):
    # a two-byte character cut at the 2 MiB boundary: its first byte is the one reported
    head = b"a,b\n" + b"1,2\n" * ((2**21 - 4) // 4 - 1)
    assert len(head) == 2**21 - 4
    p = _write(tmp_path / "big.csv", head + b"3,9\xc3(\n4,5\n")
    with _raises(rf"^big\.csv is not UTF-8 text \(invalid continuation byte at byte {2**21 - 1}\)"):
        load_file(p)


def test_tables_without_pandas_name_the_file(tmp_path, monkeypatch):
    _write(tmp_path / "d.csv", "a,b\n1,2\n3,4\n")
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pandas", None)
    for name in ("d.csv", "p.parquet"):
        with _raises(rf"^reading {re.escape(name)} needs pandas, a dependency of mixzoo: pip install pandas$"):
            load_file(tmp_path / name)


# ============================================================================================ files: Parquet


@pytest.fixture
def parquet(tmp_path, monkeypatch):
    """Writes a DataFrame where load_file reads it as Parquet; without pyarrow, pandas' pickle stands in for the
    Parquet format (pandas.read_parquet is replaced by pandas.read_pickle), so the table rules are tested anyway."""
    try:
        import pyarrow  # noqa: F401

        fake = False
    except ImportError:
        fake = True
        monkeypatch.setattr(pd, "read_parquet", pd.read_pickle)

    def write(df, name="p.parquet"):
        path = tmp_path / name
        if fake:
            df.to_pickle(path, compression=None)
        else:
            df.to_parquet(path)
        return path

    return write


def test_parquet_columns_labels_and_nullable_integers(parquet):
    df = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0],
            "n": pd.array([4, 5, 6], dtype="Int64"),
            "f": pd.array([0.5, 1.5, 2.5], dtype="Float64"),
            "kind": ["v", "u", "v"],
        }
    )
    d = load_file(parquet(df), label_column="kind")
    assert d.name == "p.parquet" and d.features == ("a", "n", "f") and d.n_classes == 2
    np.testing.assert_array_equal(d.x, np.array([[1, 4, 0.5], [2, 5, 1.5], [3, 6, 2.5]], np.float32))
    np.testing.assert_array_equal(d.labels, [1, 0, 1])
    df.loc[1, "n"] = pd.NA
    with _raises(r"^p\.parquet has a missing value at row 2 \(counting from 1\), column 'n'; fill it in or drop that "
                 r"row \(mixzoo does not impute\)\.$"):
        load_file(parquet(df), label_column="kind")


def test_parquet_table_errors(parquet):
    with _raises(r"^p\.parquet has 1 data row; mixzoo needs at least 2 points\.$"):
        load_file(parquet(pd.DataFrame({"a": [1.0]})))
    df = pd.DataFrame({"a": [1.0, 2.0], "t": [None, "x"], "e": [None, None], "y": ["u", None]}, dtype=object)
    df["a"] = df["a"].astype(float)
    p = parquet(df)
    with _raises(r"^column 't' of p\.parquet is not numeric; row 2 \(counting from 1\) holds 'x'\. Choose the "):
        load_file(p, columns=["a", "t"])  # the first cell that is not missing
    with _raises(r"^column 'e' of p\.parquet is not numeric\. Choose the feature columns with --columns"):
        load_file(p, columns=["a", "e"])  # no cell to show
    with _raises(r"^p\.parquet has a missing or infinite label at row 2 \(counting from 1\), column 'y'; every row "):
        load_file(p, columns=["a"], label_column="y")


def test_parquet_duplicate_columns(tmp_path, monkeypatch):
    df = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], columns=["a", "a"])
    monkeypatch.setattr(pd, "read_parquet", lambda path: df)
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    with _raises(r"^p\.parquet has two columns named 'a'; give every column a different name\.$"):
        load_file(tmp_path / "p.parquet")


def test_parquet_reader_errors_name_the_file(tmp_path, monkeypatch):
    def broken(path):
        raise OSError("not a parquet file")

    monkeypatch.setattr(pd, "read_parquet", broken)
    (tmp_path / "p.parquet").write_bytes(b"junk")
    with _raises(r"^could not read p\.parquet as a Parquet file \(not a parquet file\); check the file\.$"):
        load_file(tmp_path / "p.parquet")


def test_parquet_without_pyarrow_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    with pytest.raises(MixzooInputError) as info:
        load_file(tmp_path / "p.parquet")
    assert str(info.value) == 'reading p.parquet needs pyarrow: pip install pyarrow (or pip install "mixzoo[parquet]")'
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_real_parquet_file(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [1, 2, 3], "kind": ["u", "v", "u"]})
    df.to_parquet(tmp_path / "r.parquet")
    d = load_file(tmp_path / "r.parquet", columns=["b"], label_column="kind")
    np.testing.assert_array_equal(d.x, [[1], [2], [3]])
    np.testing.assert_array_equal(d.labels, [0, 1, 0])
    with _raises(r"missing value at row 3 \(counting from 1\), column 'a'"):
        load_file(tmp_path / "r.parquet", label_column="kind")
    (tmp_path / "g.parquet").write_bytes(b"not parquet at all")
    with _raises(r"^could not read g\.parquet as a Parquet file"):
        load_file(tmp_path / "g.parquet")


# ============================================================================================ files: .npy


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.int64).reshape(6, 2) - 5,
        np.arange(12, dtype=np.uint8).reshape(6, 2),
        np.linspace(-3, 3, 12).reshape(6, 2),
        np.asfortranarray(np.linspace(-3, 3, 12).reshape(6, 2)),
        np.asfortranarray(np.linspace(-3, 3, 12, dtype=np.float32).reshape(6, 2)),
        np.array([[True, False]] * 3),
        np.arange(5.0).reshape(5, 1),
    ],
    ids=["int64", "uint8", "float64", "fortran-float64", "fortran-float32", "bool", "one-feature"],
)
def test_npy_converted_to_float32_exactly(tmp_path, arr):
    np.save(tmp_path / "a.npy", arr)
    d = load_file(tmp_path / "a.npy")
    assert d.x.dtype == np.float32 and d.x.shape == arr.shape and d.name == "a.npy" and d.labels is None
    np.testing.assert_array_equal(d.x, arr.astype(np.float32))


@pytest.mark.parametrize(
    ("arr", "pattern"),
    [
        (np.arange(4.0), r"^the array in a\.npy has shape \(4,\); mixzoo needs a 2-D array of points x features \(for "
                         r"one feature, save arr\.reshape\(-1, 1\)\)\.$"),
        (np.zeros((2, 2, 2)), r"^the array in a\.npy has shape \(2, 2, 2\); mixzoo needs a 2-D array of points x "
                              r"features\.$"),
        (np.zeros((3, 0)), r"^the array in a\.npy has shape \(3, 0\), no feature columns\.$"),
        (np.zeros((1, 3)), r"^a\.npy has 1 data row; mixzoo needs at least 2 points\.$"),
        (np.ones((3, 2), dtype=np.complex64), r"^the array in a\.npy has dtype complex64; mixzoo needs numbers"),
        (np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.nan]]),
         r"^the array in a\.npy has a missing \(NaN\) value at row 3 \(counting from 1\), column 2 \(counting from "
         r"1\); fill it in or drop that row \(mixzoo does not impute\)\.$"),
        (np.array([[1.0, 2.0], [-np.inf, np.nan]], dtype=np.float32),
         r"^the array in a\.npy has an infinite \(or too large\) value at row 2 \(counting from 1\), column 1 "),
    ],
)
def test_bad_npy_messages(tmp_path, arr, pattern):
    np.save(tmp_path / "a.npy", arr)
    with _raises(pattern):
        load_file(tmp_path / "a.npy")


def test_npy_too_large_for_float32_without_numpy_warnings(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[1.0, 2.0], [3.0, 4.0], [1e39, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with _raises(r"an infinite \(or too large\) value at row 3 \(counting from 1\), column 1 \(counting"):
            load_file(tmp_path / "a.npy")


def test_npy_that_holds_an_archive(tmp_path):
    with open(tmp_path / "a.npy", "wb") as f:
        np.savez(f, x=X)
    with _raises(r"^a\.npy is not a single \.npy array; save it with numpy\.save, or name it \.npz\.$"):
        load_file(tmp_path / "a.npy")


# ============================================================================================ files: .npz


def test_npz_uncompressed_is_mapped_compressed_is_read(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    np.savez(tmp_path / "u.npz", x=x)
    np.savez_compressed(tmp_path / "c.npz", x=x)
    u, c = load_file(tmp_path / "u.npz"), load_file(tmp_path / "c.npz")
    assert is_mapped(u.x) and not is_mapped(c.x)
    for d, name in ((u, "u.npz"), (c, "c.npz")):
        assert d.name == name and d.labels is None and d.n_classes is None and d.x.dtype == np.float32
        np.testing.assert_array_equal(d.x, x)


def test_npz_mapping_is_read_only(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(tmp_path / "u.npz", x=x)
    d = load_file(tmp_path / "u.npz")
    assert is_mapped(d.x)
    with pytest.raises(ValueError, match="read-only"):
        d.x[0, 0] = 99.0  # the file keeps its values
    with np.load(tmp_path / "u.npz") as z:
        np.testing.assert_array_equal(z["x"], x)
    np.testing.assert_array_equal(load_file(tmp_path / "u.npz").x, x)


def test_npz_fortran_and_other_dtypes(tmp_path):
    x = np.asfortranarray(np.arange(20, dtype=np.float32).reshape(5, 4) / 3)
    np.savez(tmp_path / "f.npz", x=x)
    d = load_file(tmp_path / "f.npz")
    assert is_mapped(d.x)
    np.testing.assert_array_equal(d.x, x)
    for arr in (x.astype(np.float64), np.arange(20, dtype=np.int16).reshape(5, 4)):
        np.savez(tmp_path / "o.npz", x=arr)
        o = load_file(tmp_path / "o.npz")
        assert o.x.dtype == np.float32
        np.testing.assert_array_equal(o.x, arr.astype(np.float32))


def _npz_with_version(path, x, version):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, x, version=version)


def test_npz_members_in_npy_format_2_are_mapped(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    _npz_with_version(tmp_path / "v2.npz", x, (2, 0))
    d = load_file(tmp_path / "v2.npz")
    assert is_mapped(d.x)
    np.testing.assert_array_equal(d.x, x)
    _npz_with_version(tmp_path / "v3.npz", x, (3, 0))
    np.testing.assert_array_equal(load_file(tmp_path / "v3.npz").x, x)


def test_npz_labels(tmp_path):
    x = np.arange(8.0).reshape(4, 2)
    cases = [
        (np.array([3, 1, 3, 7]), [1, 0, 1, 2], 3),
        (np.array([2.0, 0.0, 2.0, 2.0]), [1, 0, 1, 1], 2),
        (np.array([True, False, False, True]), [1, 0, 0, 1], 2),
        (np.array([b"b", b"a", b"b", b"c"]), [1, 0, 1, 2], 3),
    ]
    for y, codes, n_classes in cases:
        np.savez(tmp_path / "l.npz", x=x, y=y)
        d = load_file(tmp_path / "l.npz")
        assert d.labels.dtype == np.int64 and d.n_classes == n_classes and d.name == "l.npz"
        np.testing.assert_array_equal(d.labels, codes)
        np.testing.assert_array_equal(d.x, x.astype(np.float32))


def test_npz_label_errors(tmp_path):
    x = np.arange(8.0).reshape(4, 2)

    def check(y, pattern):
        np.savez(tmp_path / "l.npz", x=x, y=y)
        with _raises(pattern):
            load_file(tmp_path / "l.npz")

    check(np.zeros(5), r"^labels 'y' in l\.npz have shape \(5,\), but 'x' has 4 rows; y must be 1-D with one label "
                       r"per row of x, or left out\.$")
    check(np.zeros((4, 1)), r"^labels 'y' in l\.npz have shape \(4, 1\), but 'x' has 4 rows")
    check(np.ones(4, dtype=np.complex128), r"^labels 'y' in l\.npz have dtype complex128; save integer or string "
                                           r"labels\.$")
    check(np.array([0.0, 1.0, 1.0, np.inf]), r"^labels 'y' in l\.npz have a missing or infinite value at row 4 "
                                             r"\(counting from 1\)\.$")
    # pickled (object) labels are never unpickled
    check(np.array([0, "a", None, 1], dtype=object), r"^could not read l\.npz as a NumPy \.npz file \(.*allow_pickle"
                                                     r"=False.*\); save it with numpy\.savez\.$")


def test_npz_archive_errors(tmp_path):
    np.savez(tmp_path / "e.npz")
    with _raises(r"^e\.npz has no array 'x' \(it holds: nothing\); save the features as x and optional labels as y: "
                 r"numpy\.savez\(path, x=\.\.\., y=\.\.\.\)\.$"):
        load_file(tmp_path / "e.npz")
    (tmp_path / "g.npz").write_bytes(b"definitely not an archive")
    with _raises(r"^could not read g\.npz as a NumPy \.npz file \(.+\); save it with numpy\.savez\.$"):
        load_file(tmp_path / "g.npz")
    np.savez(tmp_path / "n.npz", x=np.array([[1.0, 2.0], [np.nan, 0.0]], dtype=np.float32))
    with _raises(r"^array 'x' in n\.npz has a missing \(NaN\) value at row 2 \(counting from 1\), column 1 "):
        load_file(tmp_path / "n.npz")


def test_npy_named_npz_is_refused_with_the_fix(tmp_path):
    with open(tmp_path / "a.npz", "wb") as f:
        np.save(f, X)
    with _raises(r"^a\.npz is not an \.npz archive; save it with numpy\.savez\(path, x=\.\.\., y=\.\.\.\)\.$"):
        load_file(tmp_path / "a.npz")


# ============================================================================================ files: idx folders


def test_idx_folder_missing_a_file_lists_all_four(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with _raises(
        r"^folder '.*half' is read as MNIST-format idx files but has no train-labels-idx1-ubyte\(\.gz\); it needs all "
        r"of train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
        r"\(gzip-compressed or not\)\.$"
    ):
        load_file(folder)


def test_a_table_mixing_booleans_and_nullable_integers_with_floats_is_read_as_numbers():
    import pandas as pd

    frame = pd.DataFrame({"a": [1.5, 2.0, 3.0], "b": [True, False, True], "c": pd.array([1, 2, 3], dtype="Int64")})
    np.testing.assert_array_equal(check_data(frame).numpy(), [[1.5, 1, 1], [2, 0, 2], [3, 1, 3]])
    frame.loc[1, "c"] = pd.NA
    with pytest.raises(MixzooInputError, match=r"^data contains 1 NaN/inf values \(first in row 1\)"):
        check_data(frame)
