"""A user's own data files: CSV/TSV, NumPy ``.npy``/``.npz``, Parquet, or a folder of MNIST idx files.

:func:`load_file` reads one into a :class:`~mixzoo.data.datasets.Dataset` (features float32,
labels int64 or ``None``); :func:`~mixzoo.data.datasets.load_dataset` calls it for every ``--data``
value that :func:`~mixzoo.data.datasets.is_data_path` accepts and then preprocesses the result like the built-in data.
CSV/TSV are read with pandas (its pyarrow engine when pyarrow is installed, else its C engine); Parquet needs
pyarrow. A ``.npy`` file, and the arrays of an uncompressed ``.npz`` archive, are memory-mapped: float32 data are
used where they lie on disk, without a copy.
Every problem with the file raises :class:`~mixzoo.errors.MixzooInputError`, naming it and the fix.
"""

from __future__ import annotations

import codecs
import csv
import importlib.util
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MixzooInputError
from .dataset import Dataset
from .idx import MNIST_IDX_STEMS, find_idx_file, read_mnist_dir
from .mapped import row_blocks

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUFFIXES", "load_file"]

SUFFIXES = (".csv", ".tsv", ".npy", ".npz", ".parquet")
PARQUET_EXTRA = 'pip install "mixzoo[parquet]"'
# Cells of a CSV/TSV read as missing values (compared after strip() and lower()).
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
# The same cells as pandas is told to read them as missing (other spellings read as text and are parsed again).
_NA_TOKENS = sorted({v for m in _MISSING for v in (m, m.upper(), m.capitalize(), m.title())})
_CHUNK_ROWS = 1 << 16  # rows converted or checked at a time, so that no temporary is as large as the data
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
    * ``.parquet``: the same table rules, read by pandas through pyarrow (``pip install pyarrow``).
    * ``.npy``: a 2-D numeric array (points x features), memory-mapped read-only (float32 data are the file itself:
      copy them, ``np.array(d.x)``, to change values in place).
    * ``.npz``: a 2-D array ``x`` (memory-mapped where stored uncompressed, as by ``numpy.savez``) and optional
      labels ``y`` of length N.
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
    """One table column: ``values`` (int or float, NaN where missing) if ``numeric``, else its text cells
    (stripped); ``missing`` marks the missing cells where NaN does not (text), ``first_text`` the first cell that is
    not a number."""

    values: np.ndarray
    numeric: bool
    missing: np.ndarray | None = None
    first_text: int | None = None

    def missing_at(self, i: int) -> bool:
        return bool(self.missing[i]) if self.missing is not None else False


def _plain_row(i: int) -> str:
    return f"row {i + 1} (counting from 1)"


def _blank(row: list[str]) -> bool:
    """A line that holds no field, or only spaces: skipped, as pandas skips it."""
    return not row or (len(row) == 1 and not row[0].strip())


def _records(path: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where it ends, fields) of each record of a CSV/TSV file that is not blank, the header first."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        for row in reader:
            if not _blank(row):
                yield reader.line_num, row


def _data_rows(path: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """:func:`_records` without the header: the data rows, in the order pandas numbers them."""
    records = _records(path, delimiter)
    next(records, None)
    return records


def _data_row(path: str, delimiter: str) -> Callable[[int], str]:
    """Describes data row ``i`` with its line in the file, which it finds by reading the file again (messages only)."""

    def where(i: int) -> str:
        try:
            line = next((line for k, (line, _) in enumerate(_data_rows(path, delimiter)) if k == i), None)
        except (csv.Error, UnicodeDecodeError, OSError):
            line = None
        return _describe(i, line)

    return where


def _describe(i: int, line: int | None) -> str:
    at = "" if line is None else f"; line {line} of the file"
    return f"data row {i + 1} (counting from 1 below the header{at})"


def _not_utf8(path: str, name: str) -> MixzooInputError:
    """The error for a file that is not UTF-8, at the byte offset of the first bad byte in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, found = 0, None
    with open(path, "rb") as f:
        while found is None:
            chunk = f.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                found = (e.reason, offset - pending + e.start)
            if not chunk:
                break
            offset += len(chunk)
    reason, at = found or ("undecodable text", 0)
    return MixzooInputError(f"{name} is not UTF-8 text ({reason} at byte {at}); save it as UTF-8.")


def _has_pyarrow() -> bool:
    """Whether pyarrow is installed (looked up, not imported): pandas then reads tables with its pyarrow engine."""
    return importlib.util.find_spec("pyarrow") is not None


class _Retry(Exception):
    """The fast reader disagrees with the file's structure: read it again with pandas' C engine, which says why."""


def _read_delimited(path: str, name: str, delimiter: str) -> tuple[list[str], dict[str, _Column], Callable]:
    """Header names, columns and a row describer of a CSV/TSV file, read by pandas (its pyarrow engine when
    pyarrow is installed, else its C engine); the standard library's reader only reads the header and, for a message,
    finds the line of a data row."""
    kind = "CSV" if delimiter == "," else "TSV"
    try:
        header = next(_records(path, delimiter), (0, None))[1]
    except UnicodeDecodeError:
        raise _not_utf8(path, name) from None
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
    table = _Table(path, name, delimiter, kind, names)
    cols = None
    if _has_pyarrow():
        try:
            cols = table.columns("pyarrow")
        except MixzooInputError:
            raise
        except Exception:  # any disagreement: the C engine reads it again and names the problem
            cols = None
    if cols is None:
        cols = table.columns("c")
    return names, cols, _data_row(path, delimiter)


@dataclass
class _Table:
    path: str
    name: str
    delimiter: str
    kind: str
    names: list[str]

    def _read(self, engine: str, **options: object) -> pd.DataFrame:
        pd = _pandas(self.name)
        options = {"sep": self.delimiter, "header": 0, "engine": engine, **options}
        if engine == "c":  # the pyarrow engine refuses these: it skips a BOM and is strict on fields by itself
            options.update(index_col=False, skipinitialspace=True, encoding="utf-8-sig")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed columns are read again as text below
            warnings.simplefilter("error", pd.errors.ParserWarning)  # extra fields in the first row: not dropped
            try:
                return pd.read_csv(self.path, **options)
            except UnicodeDecodeError:
                if engine != "c":
                    raise
                raise _not_utf8(self.path, self.name) from None
            except (ValueError, pd.errors.ParserWarning) as e:  # pandas' ParserError is a ValueError
                if engine != "c":
                    raise
                self._check_fields()
                raise MixzooInputError(f"{self.name} is not valid {self.kind}: {e}.") from None

    def _check_fields(self, rows: np.ndarray | None = None) -> None:
        """Raise for the first data row (of ``rows``, sorted; else of all) whose fields do not match the header."""
        wanted = None if rows is None else set(rows.tolist())
        last = None if rows is None else int(rows[-1])
        try:
            for i, (line, row) in enumerate(_data_rows(self.path, self.delimiter)):
                if last is not None and i > last:
                    return
                if (wanted is None or i in wanted) and len(row) != len(self.names):
                    raise MixzooInputError(
                        f"{self.name}: {_describe(i, line)} has {len(row)} fields but the header has "
                        f"{len(self.names)}; every row needs one value per column (check the delimiter: {self.kind} "
                        f"uses {'a comma' if self.delimiter == ',' else 'a tab'})."
                    )
        except UnicodeDecodeError:
            raise _not_utf8(self.path, self.name) from None
        except csv.Error as e:
            raise MixzooInputError(f"{self.name} is not valid {self.kind}: {e}.") from None

    def columns(self, engine: str) -> dict[str, _Column]:
        """The columns, numeric where pandas reads numbers, else read again as text and parsed cell by cell."""
        frame = self._read(engine, keep_default_na=False, na_values=_NA_TOKENS)
        if len(frame.columns) != len(self.names):
            if engine != "c":
                raise _Retry
            self._check_fields()
            raise MixzooInputError(
                f"{self.name} has {len(frame.columns)} columns as pandas reads it, but its header names "
                f"{len(self.names)}; check the quoting of the header row."
            )
        if engine == "c" and len(frame):  # a row short of fields reads as missing values at its end: find it
            short = np.flatnonzero(frame.iloc[:, -1].isna().to_numpy())
            if len(short):
                self._check_fields(short)
        _check_rows(self.name, len(frame))
        cols: dict[str, _Column] = {}
        text = []
        for j, h in enumerate(self.names):
            s = frame.iloc[:, j]
            if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
                cols[h] = _Column(s.to_numpy(), numeric=True)
            else:
                text.append(j)
        if text:
            raw = self._read("c", usecols=text, dtype=str, keep_default_na=False, na_filter=False)
            if len(raw) != len(frame):  # the engines parse the file differently
                raise _Retry if engine != "c" else MixzooInputError(f"{self.name} is not valid {self.kind}.")
            for k, j in enumerate(text):
                cols[self.names[j]] = _parse_cells(raw.iloc[:, k].to_numpy(dtype=object))
        return {h: cols[h] for h in self.names}


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
            return _Column(np.array(stripped, dtype=object), numeric=False, missing=missing, first_text=i)
    return _Column(values, numeric=True, missing=missing)


def _pandas(name: str):  # noqa: ANN202 - the pandas module
    try:
        import pandas as pd
    except ImportError:
        raise MixzooInputError(f"reading {name} needs pandas, a dependency of mixzoo: pip install pandas") from None
    return pd


def _read_parquet(path: str, name: str) -> tuple[list[str], dict[str, _Column], Callable]:
    pd = _pandas(name)
    try:
        df = pd.read_parquet(path)
    except ImportError:
        raise MixzooInputError(f"reading {name} needs pyarrow: pip install pyarrow (or {PARQUET_EXTRA})") from None
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
            plain = isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf"
            values = s.to_numpy() if plain else s.to_numpy(dtype=np.float64, na_value=np.nan)
            cols[h] = _Column(values, numeric=True, missing=missing)
        else:
            first = int(np.argmin(missing)) if not missing.all() else None
            cols[h] = _Column(s.to_numpy(dtype=object), numeric=False, missing=missing, first_text=first)
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
    n = len(cols[features[0]].values)
    x = np.empty((n, len(features)), dtype=np.float32)
    first_bad: tuple[int, int] | None = None  # the first non-finite value in row-major order: (row, column)
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: inf, reported below
        for j, h in enumerate(features):
            x[:, j] = cols[h].values
            bad = np.flatnonzero(~np.isfinite(x[:, j]))
            if len(bad) and (first_bad is None or bad[0] < first_bad[0]):
                first_bad = (int(bad[0]), j)
    if first_bad is not None:
        i, j = first_bad
        h = features[j]
        missing = cols[h].missing_at(i) or np.isnan(x[i, j])
        what = "a missing value" if missing else "an infinite value (or one too large)"
        raise MixzooInputError(
            f"{name} has {what} at {where(i)}, column {h!r}; fill it in or drop that row (mixzoo does not impute)."
        )
    labels, n_classes = None, None
    if label_column is not None:
        col = cols[label_column]
        bad_label = np.zeros(n, dtype=bool) if col.missing is None else col.missing.copy()
        if col.numeric:
            bad_label |= ~np.isfinite(col.values)
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
        arr = np.load(path, mmap_mode="r", allow_pickle=False)  # read-only: nothing read yet, nothing ever written
    except (ValueError, OSError, EOFError):
        arr = None  # not mappable (an empty array, objects, an odd file system): read it, and say why it fails
    if arr is None:
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise MixzooInputError(
                f"could not read {name} as a NumPy .npy file ({e}); save it with numpy.save."
            ) from None
    if not isinstance(arr, np.ndarray):
        raise MixzooInputError(f"{name} is not a single .npy array; save it with numpy.save, or name it .npz.")
    return Dataset(name, _features(arr, name, "the array"), None, None)


def _mapped_member(path: str, key: str) -> np.ndarray | None:
    """The array ``key`` of an .npz archive memory-mapped (read-only) where it is stored uncompressed, as
    ``numpy.savez`` stores it; ``None`` where it cannot be mapped (compressed, objects, empty, an odd archive)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                return None
            shape, fortran, dtype = read_header[version](f)
            offset = f.tell()
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if dtype.hasobject or size == 0 or offset + size > start + info.file_size:
            return None
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, struct.error):
        return None


def _load_npz(path: str, name: str) -> Dataset:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a single array (a .npy file under another name): no archive to close
            raise MixzooInputError(f"{name} is not an .npz archive; save it with numpy.savez(path, x=..., y=...).")
        with loaded as z:
            if "x" not in z.files:
                raise MixzooInputError(
                    f"{name} has no array 'x' (it holds: {', '.join(z.files) or 'nothing'}); save the features as "
                    "x and optional labels as y: numpy.savez(path, x=..., y=...)."
                )
            arr = _mapped_member(path, "x")
            if arr is None:
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
    """A 2-D numeric array of at least 2 rows and 1 column, finite, as float32: ``arr`` itself (as a plain array, not
    copied) when it is float32 already, else converted a block of rows at a time. A memory-mapped array is checked a
    block at a time without keeping its pages (:func:`~mixzoo.data.mapped.row_blocks`)."""
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
    if arr.dtype == np.float32:
        x = np.asarray(arr)  # a memory map stays one, seen as a plain array
    else:
        x = np.empty(arr.shape, dtype=np.float32, order="F" if np.isfortran(arr) else "C")
        with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: inf, reported below
            for s, block in zip(range(0, len(x), _CHUNK_ROWS), row_blocks(arr, _CHUNK_ROWS), strict=True):
                x[s : s + _CHUNK_ROWS] = block
    for s, block in zip(range(0, len(x), _CHUNK_ROWS), row_blocks(x, _CHUNK_ROWS), strict=True):
        bad = ~np.isfinite(block)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            i += s
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
