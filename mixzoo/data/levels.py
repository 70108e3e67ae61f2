"""Quantized data: values on a few evenly spaced levels, such as integer pixel intensities or counts.

A continuous density on quantized values grows without bound by shrinking onto the levels, so the density families
dequantize such data (Theis et al., 2016): each value :math:`v` on level :math:`\\ell \\in \\{0, .., L-1\\}` becomes
:math:`(\\ell + u) / L` with :math:`u \\sim U[0, 1)`. The built-in images carry their levels; a user's file or array
gets them from :func:`detect_levels`, whatever its units: digits stored as integers 0..16, or multiplied by 1000 or by
0.001, are found to take the same 17 levels. Where each feature comes in a unit of its own (every pixel column
multiplied by its own factor, counts of different things), :func:`detect_feature_levels` finds each feature's own
spacing: the levels then have one count and a bottom and a top per feature, and dequantizing them gives exactly what
the common grid would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mapped import extremes, gather

__all__ = ["Levels", "detect_levels", "detect_feature_levels", "MAX_LEVELS"]

MAX_LEVELS = 256
"""Data on more evenly spaced levels than this are treated as continuous (8-bit images have 256)."""

_SAMPLE = 1_000_000
"""Values looked at to find the levels of a large array (a seeded sample, with replacement; its extremes are checked
in full)."""


@dataclass(frozen=True)
class Levels:
    """``count`` evenly spaced values from ``bottom`` to ``top``: numbers for a grid all features share, or one per
    feature (arrays) where each feature has its own spacing (:func:`detect_feature_levels`)."""

    count: int
    bottom: float | np.ndarray
    top: float | np.ndarray

    @property
    def spacing(self) -> float | np.ndarray:
        return (self.top - self.bottom) / (self.count - 1)

    @property
    def per_feature(self) -> bool:
        return np.ndim(self.top) > 0

    def describe(self) -> str:
        if self.per_feature:
            return f"{self.count} evenly spaced values, each feature on a spacing of its own"
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
        sample = gather(flat, np.sort(np.random.default_rng(0).integers(0, flat.size, _SAMPLE)))
    values = np.unique(sample.astype(np.float64))
    if not 2 <= len(values) <= max_levels or not np.isfinite(values).all():
        return None
    bottom, top = float(values[0]), float(values[-1])
    if flat.size > _SAMPLE:
        lo, hi = extremes(np.asarray(x))  # a block at a time where x is memory-mapped
        if lo < bottom or hi > top:
            return None
    count = int(round((top - bottom) / float(np.diff(values).min()))) + 1
    if count > max_levels:
        return None
    steps = (values - bottom) / ((top - bottom) / (count - 1))
    if np.abs(steps - np.rint(steps)).max() > tol:
        return None
    return Levels(count, bottom, top)


_DIVISORS = 8
"""A feature's spacing is its smallest gap between values divided by 1, 2, .., this: values 0, 3, 5 are on a grid of
1, though no two of them are 1 apart."""


def _grid_step(offsets: np.ndarray, tol: float) -> float | None:
    """The largest step (the smallest positive offset divided by 1, 2, ..) of which every offset is a multiple, within
    ``tol`` of a step; ``None`` if there is none."""
    gaps = np.diff(offsets)
    smallest = float(gaps[gaps > 0].min())
    for k in range(1, _DIVISORS + 1):
        steps = offsets / (smallest / k)
        if np.abs(steps - np.rint(steps)).max() <= tol:
            return smallest / k
    return None


def detect_feature_levels(x: np.ndarray, max_levels: int = MAX_LEVELS, tol: float = 1e-3) -> Levels | None:
    """Levels of a 2-D ``x`` whose features each lie on evenly spaced values of their own (at most ``max_levels``),
    where they share no grid: one count, the largest of the features', and each feature's own bottom and top (the
    top of the count's grid on the feature's spacing, which may lie above its largest value). Constant features take
    the median of the others' spacings. ``None`` where a feature is continuous, or every feature is constant."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] < 2 or not np.issubdtype(x.dtype, np.number):
        return None
    rows = max(2, _SAMPLE // x.shape[1])
    sample = x if len(x) <= rows else gather(x, np.sort(np.random.default_rng(0).integers(0, len(x), rows)))
    bottom, spacing, counts = np.empty(x.shape[1]), np.full(x.shape[1], np.nan), np.ones(x.shape[1], dtype=int)
    for j in range(x.shape[1]):
        values = np.unique(sample[:, j].astype(np.float64))
        if not np.isfinite(values).all() or len(values) > max_levels:
            return None
        bottom[j] = values[0]
        if len(values) == 1:
            continue
        step = _grid_step(values - values[0], tol)
        if step is None:
            return None
        counts[j] = int(round((values[-1] - values[0]) / step)) + 1
        if counts[j] > max_levels:
            return None
        spacing[j] = step
    if np.isnan(spacing).all():
        return None
    spacing = np.where(np.isnan(spacing), np.nanmedian(spacing), spacing)
    count = int(counts.max())
    top = bottom + spacing * (count - 1)
    if len(sample) < len(x) and ((x.min(axis=0) < bottom).any() or (x.max(axis=0) > top).any()):
        return None  # values the sample missed fall off the grid
    return Levels(count, bottom, top)
