"""Passes over memory-mapped arrays that do not keep the file in the process's memory.

A memory-mapped ``.npy`` file is read from the disk as its pages are touched, and every touched page then counts in
the process's resident memory until the map is closed, so one pass over a 768 MB file adds 768 MB to the process
however little of it the pass keeps. :func:`row_blocks` walks an array a block of rows at a time and gives each
block's pages back (``madvise(MADV_DONTNEED)``) once the next block is asked for; the system keeps them in its file
cache, so a second pass reads them from memory, not from the disk. Arrays that are not mapped pass through unchanged.

Data a run derives from a mapped file (the standardised copy a fit trains on) go to a :func:`scratch` array: a
memory-mapped file in the system's temporary folder (``$TMPDIR``, else ``/tmp``), removed from the folder as soon as
it is made and gone when the process ends, so a copy of a file bigger than memory costs disk, not memory (unless
that folder is itself in memory, as a tmpfs ``/tmp`` is: point ``TMPDIR`` at a disk then).
:class:`Reader` gives a training pass's pages back every few thousand rows it reads.
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["row_blocks", "release", "is_mapped", "scratch", "extremes", "Reader", "SCRATCH_BYTES", "tag", "source", "gather", "take"]

SCRATCH_BYTES = 1 << 26
"""A copy derived from a mapped array goes to a :func:`scratch` file from this size (64 MiB) on."""


def _owner(a: np.ndarray) -> np.ndarray | None:
    """The :class:`numpy.memmap` (or view of one) in ``a``'s chain of bases that holds the memory map, if any."""
    while a is not None:
        if isinstance(getattr(a, "_mmap", None), mmap.mmap):
            return a
        a = a.base if isinstance(a.base, np.ndarray) else None
    return None


def _mapping(a: np.ndarray) -> mmap.mmap | None:
    """The memory map behind ``a`` (a :class:`numpy.memmap` or a view of one), if any."""
    owner = _owner(a)
    return None if owner is None else owner._mmap  # type: ignore[attr-defined]


def is_mapped(a: np.ndarray) -> bool:
    """Whether ``a`` reads its values from a memory-mapped file."""
    return _mapping(a) is not None


def release(a: np.ndarray) -> None:
    """Give the pages of ``a``, a contiguous piece of a memory-mapped array, back from the process's resident memory.

    Only for maps whose pages hold nothing but the file's contents: read-only maps (mixzoo maps data files so),
    and shared ones, whose writes reach the file (its :func:`scratch` arrays). A copy-on-write map (``mode="c"``,
    a user's) is left alone: a page written through it would lose the write. Does nothing for other arrays, or where
    the system has no ``madvise``."""
    owner = _owner(a)
    shared = owner is not None and getattr(owner, "mode", "c") in ("r", "r+", "w+")
    mm = owner._mmap if shared else None  # type: ignore[union-attr]
    if mm is None or not hasattr(mm, "madvise") or a.size == 0 or not (a.flags.c_contiguous or a.flags.f_contiguous):
        return
    base = np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data
    start, page = a.ctypes.data - base, mmap.PAGESIZE
    first = (start // page) * page
    length = start + a.nbytes - first
    try:
        mm.madvise(mmap.MADV_DONTNEED, first, length)
    except (OSError, ValueError):
        pass


def row_blocks(x: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """``x[s : s + rows]`` for s = 0, rows, 2 rows, ...; a memory-mapped block's pages are released (:func:`release`)
    when the next is asked for, so a pass holds one block of the file in memory, not all of it."""
    step = max(1, int(rows))
    for s in range(0, len(x), step):
        block = x[s : s + step]
        yield block
        release(block)


def scratch(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.memmap:
    """A zeroed, writable array of ``shape`` backed by a file in the system's temporary folder, not by memory.

    The file is removed from the folder at once (the map keeps it alive), so nothing is left behind however the
    process ends; its pages can be given back with :func:`release` like those of a data file.
    """
    size = max(1, math.prod(shape) * np.dtype(dtype).itemsize)
    with tempfile.NamedTemporaryFile(prefix="mixzoo-", suffix=".bin", delete=False) as f:
        f.truncate(size)
        path = f.name
    try:
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)
    finally:
        os.unlink(path)


def extremes(a: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value of ``a`` (NaN where it holds a NaN), a block of rows at a time where it is
    memory-mapped, so that the check leaves none of the file in memory."""
    if a.size == 0:
        return 0.0, 0.0
    blocks = row_blocks(a, max(1, (1 << 22) // max(1, a.size // max(1, len(a))))) if is_mapped(a) and a.ndim else [a]
    lo, hi = math.inf, -math.inf
    with np.errstate(invalid="ignore"):
        for block in blocks:
            b_lo, b_hi = float(np.min(block)), float(np.max(block))
            if math.isnan(b_lo) or math.isnan(b_hi):
                return math.nan, math.nan
            lo, hi = min(lo, b_lo), max(hi, b_hi)
    return lo, hi


SPAN_BYTES = 1 << 23
"""A gather from a mapped tensor (:func:`take`) reads the file's rows in spans of this many bytes (8 MiB)."""


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for sorted ``idx``; from a tensor on a memory-mapped file (:func:`tag`), a span of the file at a
    time, each span's pages given back before the next.

    Reading one row maps the pages around it as well (the kernel's fault-around, 64 KiB), so a gather of a few
    thousand random rows maps most of a file however few rows it keeps: spans bound that to :data:`SPAN_BYTES`.
    """
    a = source(t)
    if a is None or len(idx) == 0:
        return t.index_select(0, idx)
    if bool((idx[1:] < idx[:-1]).any()):
        raise ValueError("take reads a mapped tensor forward: sort the indices first")
    parts = []
    for lo, hi in _spans(idx, len(a), a.strides[0]):
        parts.append(t.index_select(0, idx[lo:hi]))
        release(a[int(idx[lo]) : int(idx[hi - 1]) + 1])
    return torch.cat(parts)


def gather(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a[rows]`` for sorted ``rows``; from a memory-mapped ``a`` a span of :data:`SPAN_BYTES` at a time, as
    :func:`take` reads them, into a :func:`scratch` array where the result takes :data:`SCRATCH_BYTES` or more (a
    bootstrap replicate of a file bigger than memory)."""
    if not is_mapped(a) or len(rows) == 0:
        return a[rows]
    if (np.diff(rows) < 0).any():
        raise ValueError("gather reads a mapped array forward: sort the rows first")
    shape = (len(rows), *a.shape[1:])
    big = math.prod(shape) * a.itemsize >= SCRATCH_BYTES
    out = scratch(shape, a.dtype) if big else np.empty(shape, dtype=a.dtype)
    for lo, hi in _spans(rows, len(a), a.strides[0]):
        out[lo:hi] = a[rows[lo:hi]]
        release(a[int(rows[lo]) : int(rows[hi - 1]) + 1])
        release(out[lo:hi])
    return out


def _spans(rows: np.ndarray | torch.Tensor, n: int, row_bytes: int) -> Iterator[tuple[int, int]]:
    """Positions ``lo:hi`` in sorted ``rows`` of the rows in each span of :data:`SPAN_BYTES` of the file, non-empty."""
    per_span = max(1, SPAN_BYTES // max(1, row_bytes))
    starts = np.arange(0, n + per_span, per_span)
    edges = (torch.searchsorted(rows, torch.as_tensor(starts, device=rows.device)) if isinstance(rows, torch.Tensor)
             else np.searchsorted(rows, starts)).tolist()  # fmt: skip
    return ((lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=False) if hi > lo)


def tag(t: torch.Tensor, a: np.ndarray) -> torch.Tensor:
    """Mark ``t``, a tensor that shares the memory of ``a``, as read from ``a``'s map (see :func:`source`)."""
    if is_mapped(a) and t.data_ptr() == a.ctypes.data and t.numel() * t.element_size() == a.nbytes:
        t.mapped_source = a  # type: ignore[attr-defined]
    return t


def source(t: torch.Tensor) -> np.ndarray | None:
    """The memory-mapped array ``t`` shares its memory with (marked by :func:`tag`), or ``None``."""
    a = getattr(t, "mapped_source", None)
    if a is None or t.data_ptr() != a.ctypes.data or t.numel() * t.element_size() != a.nbytes:
        return None
    return a


class Reader:
    """Gives the pages of a memory-mapped array back after every ``budget`` bytes of random rows read from it.

    A pass over the rows in a random order touches a page for nearly every row it reads, and the touched pages stay
    in the process's memory: after one epoch all of the file is. Calling :meth:`read` with the number of rows each
    step took keeps that under about ``budget`` bytes, at the price of reading the pages again from the system's
    file cache. Does nothing for an array that is not mapped.
    """

    def __init__(self, a: np.ndarray | torch.Tensor | None, budget: int = 1 << 26) -> None:
        a = source(a) if isinstance(a, torch.Tensor) else a
        self.array = a if a is not None and is_mapped(a) else None
        self.budget = budget
        self._since = 0

    def read(self, rows: int, *, contiguous: bool = False) -> None:
        """Count ``rows`` rows read (in one run of the file where ``contiguous``, else scattered over it, a page
        each); give the pages back once they may hold ``budget`` bytes."""
        if self.array is None:
            return
        row = self.array.strides[0] if self.array.ndim else self.array.itemsize
        self._since += rows * (row if contiguous else max(mmap.PAGESIZE, row))
        if self._since >= self.budget:
            self.done()

    def done(self) -> None:
        """Give the pages back now."""
        if self.array is not None:
            release(self.array)
            self._since = 0
