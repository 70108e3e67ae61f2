"""A user's own data files: CSV/TSV, NumPy ``.npy``/``.npz``, Parquet, or a folder of MNIST idx files.

:func:`load_file` reads one into a :class:`~mixzoo.data.datasets.Dataset` (features float32,
labels int64 or ``None``); :func:`~mixzoo.data.datasets.load_dataset` calls it for every ``--data``
value that :func:`~mixzoo.data.datasets.is_data_path` accepts and then preprocesses the result like the built-in data.
CSV/TSV are read with the standard library (pandas is not needed); Parquet needs pandas and pyarrow.
Every problem with the file raises :class:`~mixzoo.errors.MixzooInputError`, naming it and the fix.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MixzooInputError
from .dataset import Dataset
from .idx import MNIST_IDX_STEMS, find_idx_file, read_mnist_dir

__all__ = ["SUFFIXES", "load_file"]

SUFFIXES = (".csv", ".tsv", ".npy", ".npz", ".parquet")
PARQUET_EXTRA = 'pip install "mixzoo[parquet]"'
# Cells of a CSV/TSV read as missing values (compared after strip() and lower()).
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_MIN_ROWS = 2


def load_file(
    path: str | os.PathLike[str],
    *,
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
) -> Dataset:
    """Read a user's data file or folder into a :class:`Dataset` named after the file.

    * ``.csv`` / ``.tsv``: a header row, then one point per row. Numeric columns are the
      features, or those named in ``columns`` (a sequence, or one comma-separated string).
      ``label_column`` names a column of labels (strings or numbers) used for evaluation only;
      they become 0..C-1 in the sorted order of their distinct values. Empty cells, ``NA``,
      ``NaN`` and infinite values are errors.
    * ``.parquet``: the same table rules, read through pandas (``pip install "mixzoo[parquet]"``).
    * ``.npy``: a 2-D numeric array (points x features).
    * ``.npz``: a 2-D array ``x`` and optional labels ``y`` of length N.
    * a folder: MNIST-format idx files, read like ``--data mnist --data-dir FOLDER``.
    """
    shown = os.fspath(path)
    full = os.path.expanduser(shown)
    name = os.path.basename(os.path.normpath(shown))
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    if columns is not None:
        columns = list(columns)
        if not columns:
            raise MixzooInputError("--columns names no column; name the feature columns, or drop --columns.")
        dup = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
        if dup is not None:
            raise MixzooInputError(f"--columns names {dup!r} twice; name each feature column once.")
    if not os.path.exists(full):
        raise MixzooInputError(f"data file {shown!r} does not exist; check the path given to --data.")
    if os.path.isdir(full):
        _no_column_options(name, "a folder of MNIST idx files", label_column, columns)
        return _load_idx_folder(full, shown, name)
    suffix = os.path.splitext(full)[1].lower()
    if suffix not in SUFFIXES:
        raise MixzooInputError(
            f"data file {shown!r} has an unsupported type {suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(SUFFIXES)}, or a folder of MNIST idx files. Convert the file, or rename it if its "
            "content is one of these."
        )
    if suffix in (".csv", ".tsv"):
        names, cols, where = _read_delimited(full, name, "," if suffix == ".csv" else "\t")
        return _from_table(name, names, cols, where, label_column, columns)
    if suffix == ".parquet":
        names, cols, where = _read_parquet(full, name)
        return _from_table(name, names, cols, where, label_column, columns)
    _no_column_options(name, f"a {suffix} array", label_column, columns)
    return _load_npy(full, name) if suffix == ".npy" else _load_npz(full, name)


# ---------------------------------------------------------------------------------------------- tables


@dataclass
class _Column:
    """One table column: float64 ``values`` (NaN where missing) if ``numeric``, else the raw objects."""

    values: np.ndarray
    missing: np.ndarray
    numeric: bool
    first_text: int | None = None  # the first row that is not a number, for non-numeric columns


def _data_row(lines: list[int]) -> Callable[[int], str]:
    return lambda i: f"data row {i + 1} (counting from 1 below the header; line {lines[i]} of the file)"


def _plain_row(i: int) -> str:
    return f"row {i + 1} (counting from 1)"


def _read_delimited(path: str, name: str, delimiter: str) -> tuple[list[str], dict[str, _Column], Callable]:
    """Header names, columns and a row describer of a CSV/TSV file."""
    kind = "CSV" if delimiter == "," else "TSV"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if row:  # skip blank lines
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise MixzooInputError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8.") from None
    except csv.Error as e:
        raise MixzooInputError(f"{name} is not valid {kind}: {e}.") from None
    if header is None:
        raise MixzooInputError(f"{name} is empty; it needs a header row of column names and at least 2 data rows.")
    names = [h.strip() for h in header]
    for j, h in enumerate(names):
        if not h:
            raise MixzooInputError(f"column {j + 1} of {name} has no name in the header row; give every column a name.")
    dup = next((h for j, h in enumerate(names) if h in names[:j]), None)
    if dup is not None:
        raise MixzooInputError(f"{name} has two columns named {dup!r}; give every column a different name.")
    if all(_is_number(h) for h in names):
        raise MixzooInputError(
            f"the first row of {name} holds numbers, not column names; {kind} data needs a header row: add one."
        )
    where = _data_row(lines)
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise MixzooInputError(
                f"{name}: {where(i)} has {len(row)} fields but the header has {len(names)}; every row needs one "
                f"value per column (check the delimiter: {kind} uses {'a comma' if delimiter == ',' else 'a tab'})."
            )
    _check_rows(name, len(rows))
    cells = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return names, {h: _parse_cells(c) for h, c in zip(names, cells, strict=True)}, where


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_cells(cells: Sequence[str]) -> _Column:
    """A column of text cells: numeric when every cell that is not missing reads as a number."""
    stripped = [c.strip() for c in cells]
    missing = np.array([c.lower() in _MISSING for c in stripped], dtype=bool)
    values = np.full(len(stripped), np.nan)
    for i, c in enumerate(stripped):
        if missing[i]:
            continue
        try:
            values[i] = float(c)
        except ValueError:
            return _Column(np.array(stripped, dtype=object), missing, numeric=False, first_text=i)
    return _Column(values, missing, numeric=True)


def _read_parquet(path: str, name: str) -> tuple[list[str], dict[str, _Column], Callable]:
    try:
        import pandas as pd

        df = pd.read_parquet(path)
    except ImportError:
        raise MixzooInputError(f"reading {name} needs pandas and pyarrow: {PARQUET_EXTRA}") from None
    except (ValueError, OSError, TypeError) as e:
        raise MixzooInputError(f"could not read {name} as a Parquet file ({e}); check the file.") from None
    names = [str(c) for c in df.columns]
    dup = next((h for j, h in enumerate(names) if h in names[:j]), None)
    if dup is not None:
        raise MixzooInputError(f"{name} has two columns named {dup!r}; give every column a different name.")
    _check_rows(name, len(df))
    cols = {}
    for h, (_, s) in zip(names, df.items(), strict=True):
        missing = s.isna().to_numpy(dtype=bool)
        if pd.api.types.is_numeric_dtype(s.dtype):
            cols[h] = _Column(s.to_numpy(dtype=np.float64, na_value=np.nan), missing, numeric=True)
        else:
            first = int(np.argmin(missing)) if not missing.all() else None
            cols[h] = _Column(s.to_numpy(dtype=object), missing, numeric=False, first_text=first)
    return names, cols, _plain_row


def _from_table(
    name: str,
    names: list[str],
    cols: dict[str, _Column],
    where: Callable[[int], str],
    label_column: str | None,
    columns: list[str] | None,
) -> Dataset:
    available = ", ".join(names)
    if label_column is not None and label_column not in cols:
        raise MixzooInputError(
            f"--label-column {label_column!r} is not a column of {name}; its columns are: {available}."
        )
    if columns is not None:
        unknown = [c for c in columns if c not in cols]
        if unknown:
            raise MixzooInputError(
                f"--columns names {', '.join(map(repr, unknown))}, not a column of {name}; its columns are: {available}."
            )
        if label_column in columns:
            raise MixzooInputError(
                f"column {label_column!r} is both the --label-column and one of --columns; labels are for evaluation "
                "only: drop it from --columns."
            )
        features = columns
    else:
        features = [h for h in names if h != label_column]
    if not features:
        raise MixzooInputError(f"{name} has no feature columns besides the label column {label_column!r}.")
    for h in features:
        col = cols[h]
        if not col.numeric:
            shown = "" if col.first_text is None else f"; {where(col.first_text)} holds {col.values[col.first_text]!r}"
            raise MixzooInputError(
                f"column {h!r} of {name} is not numeric{shown}. Choose the feature columns with --columns, or name "
                f"it with --label-column if it holds the labels."
            )
    x = np.column_stack([cols[h].values for h in features]).astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        h = features[j]
        what = "a missing value" if cols[h].missing[i] or np.isnan(x[i, j]) else "an infinite value (or one too large)"
        raise MixzooInputError(
            f"{name} has {what} at {where(int(i))}, column {h!r}; fill it in or drop that row (mixzoo does not impute)."
        )
    labels, n_classes = None, None
    if label_column is not None:
        col = cols[label_column]
        bad_label = col.missing | (~np.isfinite(col.values) if col.numeric else False)
        if bad_label.any():
            i = int(np.argmax(bad_label))
            raise MixzooInputError(
                f"{name} has a missing or infinite label at {where(i)}, column {label_column!r}; every row needs a "
                "label, or drop --label-column."
            )
        values = col.values if col.numeric else col.values.astype(str)
        labels, n_classes = _encode(values)
    return Dataset(name, x, labels, n_classes, features=tuple(features))


def _encode(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as 0..C-1 in the sorted order of their distinct values, and C."""
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniq)


def _check_rows(name: str, n: int) -> None:
    if n < _MIN_ROWS:
        have = "no data rows" if n == 0 else f"{n} data row"
        raise MixzooInputError(f"{name} has {have}; mixzoo needs at least {_MIN_ROWS} points.")


def _no_column_options(name: str, kind: str, label_column: str | None, columns: list[str] | None) -> None:
    for option, value in (("--label-column", label_column), ("--columns", columns)):
        if value is not None:
            raise MixzooInputError(
                f"{option} needs a table with column names, but {name} is {kind}, which has none; drop {option}"
                + (" (an .npz file carries its labels as the array y)." if option == "--label-column" else ".")
            )


# ---------------------------------------------------------------------------------------------- arrays


def _load_npy(path: str, name: str) -> Dataset:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise MixzooInputError(f"could not read {name} as a NumPy .npy file ({e}); save it with numpy.save.") from None
    if not isinstance(arr, np.ndarray):
        raise MixzooInputError(f"{name} is not a single .npy array; save it with numpy.save, or name it .npz.")
    return Dataset(name, _features(arr, name, "the array"), None, None)


def _load_npz(path: str, name: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise MixzooInputError(f"{name} is not an .npz archive; save it with numpy.savez(path, x=..., y=...).")
            if "x" not in z.files:
                raise MixzooInputError(
                    f"{name} has no array 'x' (it holds: {', '.join(z.files) or 'nothing'}); save the features as "
                    "x and optional labels as y: numpy.savez(path, x=..., y=...)."
                )
            arr = z["x"]
            y = z["y"] if "y" in z.files else None
    except MixzooInputError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise MixzooInputError(f"could not read {name} as a NumPy .npz file ({e}); save it with numpy.savez.") from None
    x = _features(arr, name, "array 'x'")
    if y is None:
        return Dataset(name, x, None, None)
    if y.ndim != 1 or len(y) != len(x):
        raise MixzooInputError(
            f"labels 'y' in {name} have shape {y.shape}, but 'x' has {len(x)} rows; y must be 1-D with one label "
            "per row of x, or left out."
        )
    if y.dtype.kind not in "biufUS":
        raise MixzooInputError(f"labels 'y' in {name} have dtype {y.dtype}; save integer or string labels.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        i = int(np.argmax(~np.isfinite(y)))
        raise MixzooInputError(f"labels 'y' in {name} have a missing or infinite value at {_plain_row(i)}.")
    labels, n_classes = _encode(y)
    return Dataset(name, x, labels, n_classes)


def _features(arr: np.ndarray, name: str, what: str) -> np.ndarray:
    """A 2-D numeric array of at least 2 rows and 1 column, finite, as float32."""
    if arr.ndim != 2:
        hint = " (for one feature, save arr.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise MixzooInputError(
            f"{what} in {name} has shape {arr.shape}; mixzoo needs a 2-D array of points x features{hint}."
        )
    if arr.dtype.kind not in "biuf":
        raise MixzooInputError(f"{what} in {name} has dtype {arr.dtype}; mixzoo needs numbers (int or float).")
    _check_rows(name, arr.shape[0])
    if arr.shape[1] == 0:
        raise MixzooInputError(f"{what} in {name} has shape {arr.shape}, no feature columns.")
    x = arr.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "a missing (NaN)" if np.isnan(x[i, j]) else "an infinite (or too large)"
        raise MixzooInputError(
            f"{what} in {name} has {kind} value at {_plain_row(int(i))}, column {j + 1} (counting from 1); "
            "fill it in or drop that row (mixzoo does not impute)."
        )
    return x


# ---------------------------------------------------------------------------------------------- idx folders


def _load_idx_folder(path: str, shown: str, name: str) -> Dataset:
    for stem in MNIST_IDX_STEMS:
        try:
            find_idx_file(path, stem)
        except MixzooInputError:
            raise MixzooInputError(
                f"folder {shown!r} is read as MNIST-format idx files but has no {stem}(.gz); it needs all of "
                f"{', '.join(MNIST_IDX_STEMS)} (gzip-compressed or not)."
            ) from None
    return read_mnist_dir(path, name)
