"""A data set: features, labels for evaluation, and what is known of its pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .transform import Preprocessing

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (N, D) float32, true ``labels`` (N,) or ``None``, and the image shape if any.

    Images stored as integer intensities also carry ``levels`` (how many, e.g. 256) and ``top``
    (the value of the highest level in ``x``), which :func:`preprocess` needs to dequantize them.
    """

    name: str
    x: np.ndarray
    labels: np.ndarray | None
    n_classes: int | None
    image_shape: tuple[int, ...] | None = None
    levels: int | None = None
    top: float | None = None
    features: tuple[str, ...] | None = None
    """Names of the feature columns (data read from a table)."""
    preprocessing: Preprocessing | None = None
    """What :func:`preprocess` applied (to repeat it on new points)."""

    def __len__(self) -> int:
        return len(self.x)
