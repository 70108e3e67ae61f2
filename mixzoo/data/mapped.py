"""Passes over memory-mapped arrays that do not keep the file in the process's memory.

A memory-mapped ``.npy`` file is read from the disk as its pages are touched, and every touched page then counts in
the process's resident memory until the map is closed, so one pass over a 768 MB file adds 768 MB to the process
however little of it the pass keeps. :func:`row_blocks` walks an array a block of rows at a time and gives each
block's pages back (``madvise(MADV_DONTNEED)``) once the next block is asked for; the system keeps them in its file
cache, so a second pass reads them from memory, not from the disk. Arrays that are not mapped pass through unchanged.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

__all__ = ["row_blocks", "release", "is_mapped"]


def _mapping(a: np.ndarray) -> mmap.mmap | None:
    """The memory map behind ``a`` (a :class:`numpy.memmap` or a view of one), if any."""
    while a is not None:
        mm = getattr(a, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        a = a.base if isinstance(a.base, np.ndarray) else None
    return None


def is_mapped(a: np.ndarray) -> bool:
    """Whether ``a`` reads its values from a memory-mapped file."""
    return _mapping(a) is not None


def release(a: np.ndarray) -> None:
    """Give the pages of ``a``, a contiguous piece of a memory-mapped array, back from the process's resident memory.

    Only for maps nobody writes to (mixzoo maps data files copy-on-write and only reads them): a page written
    through a copy-on-write map would lose the write. Does nothing for other arrays, or where the system has no
    ``madvise``."""
    mm = _mapping(a)
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
