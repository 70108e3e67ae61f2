"""Input checks run before any training starts, in one place for :func:`mixzoo.fit`, the estimator and the CLI.

Each check raises :class:`~mixzoo.errors.MixzooInputError` (a ``ValueError``) with
one line that names the problem and how to fix it.

Documented conversions (no error): integer, boolean and float64 data become
float32; non-contiguous arrays and tensors (slices, transposes, negative strides)
are copied into contiguous memory; a tensor on another device (e.g. CUDA) is
copied to the CPU here and moved to the training device by the caller.

Refused: NaN/inf values (also values beyond float32's range, ~3.4e38, which
would become inf), values larger than 1e15 in magnitude (their squares overflow
float32 densities; standardise the data), non-2-D arrays, empty arrays, object,
string and complex data, and a feature count that differs from the model's.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import MixzooInputError
from .mapped import extremes, is_mapped, source, tag
from .torch_data import dataset_rows, is_torch_dataset

__all__ = ["check_data", "check_columns", "check_n_clusters", "check_labels", "check_device", "MAX_ABS"]

MAX_ABS = 1e15
"""Largest magnitude accepted in data: (1e15)^2 = 1e30 still fits float32 (max ~3.4e38) with room to spare."""


def check_columns(x: Any, *, name: str = "data") -> None:
    """Refuse a table (a pandas DataFrame, or anything with ``columns`` and ``dtypes``) with non-numeric
    columns, naming them; other inputs pass unchecked.

    :raises MixzooInputError: if a column holds strings, objects, categories or dates.
    """
    dtypes = getattr(x, "dtypes", None)
    if dtypes is None or not hasattr(x, "columns") or not hasattr(dtypes, "items"):
        return
    bad = [f"{col!r} ({dt})" for col, dt in dtypes.items() if getattr(dt, "kind", "O") not in "biufc"]
    if bad:
        raise MixzooInputError(
            f"{name} has non-numeric column(s) {', '.join(bad)}; drop them or encode them as numbers "
            "(e.g. pandas.get_dummies)."
        )


def check_data(x: Any, *, name: str = "data", dim: int | None = None) -> torch.Tensor:
    """Return ``x`` as a float32 tensor of shape ``(n_samples, n_features)``. A map-style
    :class:`torch.utils.data.Dataset` is read into one array first (``mixzoo.data.torch_data.dataset_rows``).

    :raises MixzooInputError: if ``x`` is empty, not numeric (a DataFrame's non-numeric columns are
        named), not 2-D, has the wrong number of features, or holds NaN/inf values.
    """
    check_columns(x, name=name)
    known: tuple[float, float] | None = None
    mapped: np.ndarray | None = None  # the memory-mapped array the tensor reads, where it is one (see .mapped.tag)
    if isinstance(x, torch.Tensor):
        mapped = source(x)
        if x.is_complex():
            raise MixzooInputError(f"{name} has dtype {x.dtype}; pass real numbers (float).")
        t = x.detach().cpu()
        if mapped is not None and t.dtype == torch.float32:
            known = extremes(mapped)  # a block at a time, not the whole file in memory
        finite_before = _finite(*(known or _extremes(t))) if t.is_floating_point() else True
    else:
        if is_torch_dataset(x):  # read once into one array (a scratch file when large), an item at a time
            x = dataset_rows(x, name=name)
        try:
            arr = _table_values(x) if hasattr(x, "columns") else np.asarray(x)
        except Exception as err:  # ragged lists and the like
            raise MixzooInputError(f"{name} cannot be read as an array ({err}); pass a 2-D numeric array.") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise MixzooInputError(
                f"{name} is not numeric (dtype {arr.dtype}); pass a 2-D array of numbers, e.g. X.astype(float)."
            )
        if np.iscomplexobj(arr):
            raise MixzooInputError(f"{name} is complex; pass real numbers.")
        span = extremes(arr) if np.issubdtype(arr.dtype, np.floating) or is_mapped(arr) else None
        finite_before = span is None or _finite(*span)
        with np.errstate(over="ignore"), warnings.catch_warnings():  # beyond float32's range becomes inf, named below
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")  # mixzoo never writes to data
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if span is not None and t.data_ptr() == arr.ctypes.data and is_mapped(arr):
            known, mapped = span, arr  # the tensor is the mapped file: its extremes were found a block at a time
    if t.ndim != 2:
        raise MixzooInputError(
            f"{name} must be 2-D (n_samples, n_features) but has shape {tuple(t.shape)}; "
            "reshape it, e.g. X.reshape(len(X), -1)."
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise MixzooInputError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample and one feature.")
    if dim is not None and t.shape[1] != dim:
        raise MixzooInputError(f"{name} has {t.shape[1]} features but the model was built for {dim}.")
    t = t.to(torch.float32).contiguous()
    lo, hi = known if known is not None else _extremes(t)  # no temporary of the data's size (a mask only on an error)
    if not _finite(lo, hi):
        bad = ~torch.isfinite(t)
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        if finite_before:
            raise MixzooInputError(
                f"{name} has {int(bad.sum())} values beyond float32's range (~3.4e38; first in row {int(rows[0])}); "
                "rescale the data, e.g. standardise each feature."
            )
        raise MixzooInputError(
            f"{name} contains {int(bad.sum())} NaN/inf values (first in row {int(rows[0])}); "
            "drop or impute those rows before fitting."
        )
    big = max(-lo, hi)  # the largest magnitude
    if big > MAX_ABS:
        row = int(torch.nonzero(t.abs().amax(dim=1) > MAX_ABS).flatten()[0])
        raise MixzooInputError(
            f"{name} has values as large as {float(big):.3g} (first in row {row}); beyond {MAX_ABS:.0e} squared "
            "distances overflow float32 densities. Standardise the data (--scale or StandardScaler)."
        )
    return t if mapped is None else tag(t, mapped)


def _table_values(x: Any) -> np.ndarray:
    """A table's values as one float64 array, its columns already checked numeric: booleans and pandas' nullable
    integers beside floats would otherwise make an array of objects (missing values become NaN, named later)."""
    to_numpy = getattr(x, "to_numpy", None)
    if callable(to_numpy):
        try:
            return np.asarray(to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            pass
    return np.asarray(x)


def _extremes(t: torch.Tensor) -> tuple[float, float]:
    """The smallest and largest value of a floating tensor in one reduction (NaN where it holds a NaN)."""
    if t.numel() == 0:
        return 0.0, 0.0
    lo, hi = torch.aminmax(t)
    return float(lo), float(hi)


def _finite(lo: float, hi: float) -> bool:
    """Whether every value is finite, from the extremes: a NaN makes them NaN, an infinity is one of them."""
    return math.isfinite(lo) and math.isfinite(hi)


def check_n_clusters(n_clusters: Any, n_samples: int | None = None) -> int:
    """Return ``n_clusters`` as an int >= 1 that does not exceed ``n_samples`` (1: one component, a density model;
    "is there any cluster structure at all?" compares it with more)."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise MixzooInputError(f"number of clusters must be an integer, got {n_clusters!r}.")
    k = int(n_clusters)
    if k < 1:
        raise MixzooInputError(f"number of clusters must be at least 1, got {k}.")
    if n_samples is not None and n_samples < k:
        raise MixzooInputError(
            f"fewer points ({n_samples}) than clusters ({k}); lower the number of clusters or pass more data."
        )
    return k


def check_labels(y: Any, n_samples: int, n_clusters: int | None = None) -> torch.Tensor:
    """Return observed cluster labels as a long tensor of length ``n_samples``.

    Labels are integers in ``[0, n_clusters)``; ``-1`` marks an unlabelled point.
    """
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise MixzooInputError(f"labels must be 1-D with {n_samples} entries, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise MixzooInputError(f"labels must be integers (dtype {arr.dtype}); use -1 for unlabelled points.")
    if arr.min() < -1 or (n_clusters is not None and arr.max() >= n_clusters):
        raise MixzooInputError(
            f"labels must lie in [0, {n_clusters}) or be -1 (unlabelled); found {arr.min()}..{arr.max()}."
        )
    return torch.as_tensor(arr, dtype=torch.long)


def check_device(device: Any) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (``"cuda:N"``) as a device; CUDA only where a CUDA GPU is available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise MixzooInputError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MixzooInputError(
            "device 'cuda' was asked for, but this torch sees no CUDA GPU (a CPU build, or no driver); "
            "use --device cpu, or install a CUDA build of torch."
        )
    return dev
