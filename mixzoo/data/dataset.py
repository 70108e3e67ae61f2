"""A data set: features, labels for evaluation, and what is known of its pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .transform import Preprocessing

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (N, D) float32, true ``labels`` (N,) or ``None``, and the image shape if any.

    Quantized data (images stored as integer intensities, a user's integer table) also carry ``levels`` (how many
    evenly spaced values, e.g. 256), ``top`` and ``bottom`` (the values of the highest and the lowest level in ``x``;
    one per feature where each feature has a spacing of its own), which :func:`preprocess` needs to dequantize them.
    """

    name: str
    x: np.ndarray
    labels: np.ndarray | None
    n_classes: int | None
    image_shape: tuple[int, ...] | None = None
    levels: int | None = None
    top: float | np.ndarray | None = None
    bottom: float | np.ndarray = 0.0
    features: tuple[str, ...] | None = None
    """Names of the feature columns (data read from a table)."""
    preprocessing: Preprocessing | None = None
    """What :func:`preprocess` applied (to repeat it on new points)."""

    def __len__(self) -> int:
        return len(self.x)
