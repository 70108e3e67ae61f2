"""Seeded subsamples of rows, for the parts of a run that need a sample of the data rather than all of it.

On large data (millions of points) a fit's start, its temperature, the summary's per-point groups and the scatter
plot each work on a stated, seeded subsample: what they estimate (k-means centres, one temperature, a few
thousand points' log-likelihoods, a picture) does not improve with more points, and their memory would grow with all
of them. Below the limit they see every row, so nothing changes for data of ordinary size.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from .mapped import gather, source, tag

__all__ = ["subsample_rows", "take_rows", "START_POINTS"]

START_POINTS = 200_000
"""Rows a mixture's start (k-means++ and Lloyd iterations, the first covariances) sees at most."""

_T = TypeVar("_T", np.ndarray, torch.Tensor)


def subsample_rows(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Sorted indices of ``limit`` of ``n`` rows drawn without replacement from a generator seeded by ``seed``
    (sorted, so that reading them from a memory-mapped file runs forward); ``None`` where ``n <= limit``: every row."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng([seed, 0x5EED]).choice(n, limit, replace=False))


def take_rows(x: _T, rows: np.ndarray | None) -> _T:
    """The rows of ``x`` (an array or a tensor) that :func:`subsample_rows` chose; ``x`` itself for ``None``. From a
    memory-mapped file (or a tensor on one), the rows must be sorted: they are read a span of the file at a time
    (:func:`~mixzoo.data.mapped.gather`)."""
    if rows is None:
        return x
    if isinstance(x, torch.Tensor):
        mapped = source(x)  # a memory-mapped file's rows are read a chunk at a time, their pages given back
        if mapped is not None:
            out = gather(mapped, rows)
            return tag(torch.from_numpy(out), out).to(x.dtype)  # a big sample is itself a mapped file
        return x[torch.as_tensor(rows, device=x.device)]
    return gather(x, rows)
