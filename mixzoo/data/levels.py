"""Quantized data: values on a few evenly spaced levels, such as integer pixel intensities or counts.

A continuous density on quantized values grows without bound by shrinking onto the levels, so the density families
dequantize such data (Theis et al., 2016): each value :math:`v` on level :math:`\\ell \\in \\{0, .., L-1\\}` becomes
:math:`(\\ell + u) / L` with :math:`u \\sim U[0, 1)`. The built-in images carry their levels; a user's file or array
gets them from :func:`detect_levels`, whatever its units: digits stored as integers 0..16, or multiplied by 1000 or by
0.001, are found to take the same 17 levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Levels", "detect_levels", "MAX_LEVELS"]

MAX_LEVELS = 256
"""Data on more evenly spaced levels than this are treated as continuous (8-bit images have 256)."""

_SAMPLE = 1_000_000
"""Values looked at to find the levels of a large array (a seeded sample, with replacement; its extremes are checked
in full)."""


@dataclass(frozen=True)
class Levels:
    """``count`` evenly spaced values from ``bottom`` to ``top``."""

    count: int
    bottom: float
    top: float

    @property
    def spacing(self) -> float:
        return (self.top - self.bottom) / (self.count - 1)

    def describe(self) -> str:
        return f"{self.count} evenly spaced values from {self.bottom:g} to {self.top:g}"


def detect_levels(x: np.ndarray, max_levels: int = MAX_LEVELS, tol: float = 1e-3) -> Levels | None:
    """The levels of ``x`` when every value lies within ``tol`` of a spacing of one of at most ``max_levels`` evenly
    spaced values (at least 2); ``None`` for continuous or constant data.

    The spacing is the smallest gap between distinct values, so the test depends on the data's units only through
    their ratios: ``x``, ``1000 x`` and ``0.001 x`` (in float32) give the same count.
    """
    flat = np.asarray(x).ravel(order="K")  # a view of the values in memory order, whatever the layout
    if flat.size == 0 or not np.issubdtype(flat.dtype, np.number):
        return None
    sample = flat
    if flat.size > _SAMPLE:  # drawn with replacement: without, numpy shuffles an index of every value (8 bytes each)
        sample = flat[np.random.default_rng(0).integers(0, flat.size, _SAMPLE)]
    values = np.unique(sample.astype(np.float64))
    if not 2 <= len(values) <= max_levels or not np.isfinite(values).all():
        return None
    bottom, top = float(values[0]), float(values[-1])
    if flat.size > _SAMPLE and (float(flat.min()) < bottom or float(flat.max()) > top):
        return None
    count = int(round((top - bottom) / float(np.diff(values).min()))) + 1
    if count > max_levels:
        return None
    steps = (values - bottom) / ((top - bottom) / (count - 1))
    if np.abs(steps - np.rint(steps)).max() > tol:
        return None
    return Levels(count, bottom, top)
