"""The preprocessing a fit applied to its data, kept so that new points get exactly the same.

:func:`~mixzoo.data.datasets.preprocess` fits a :class:`Preprocessing` to the training data
(dequantization levels, standardisation means and deviations, PCA mean and components) and
``mixzoo fit --out`` saves it in the run (``preprocessing.npz``, plain arrays). ``mixzoo
predict`` applies it to new data. Dequantization noise is a training device: new points get
the centre of their level, :math:`(v + 1/2) / L`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MixzooInputError

__all__ = ["Preprocessing", "PREPROCESSING"]

PREPROCESSING = "preprocessing.npz"


@dataclass
class Preprocessing:
    """What turns raw features (``dim_in`` columns, named ``features`` for tables) into model inputs."""

    dim_in: int
    features: tuple[str, ...] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """``levels``/``top``/``bottom`` (dequantization), ``mean``/``sd`` (scaling), ``pca_mean``/``pca_components``."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The model inputs of raw points ``x`` (N, dim_in)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim_in:
            raise MixzooInputError(
                f"the run was fitted on {self.dim_in} features, these data have {x.shape[1] if x.ndim == 2 else x.shape}; "
                "pass data with the same columns as the training data."
            )
        a = self.arrays
        if "levels" in a:
            levels, top, bottom = self._levels()
            x = (np.rint((x - bottom) / (top - bottom) * (levels - 1)) + 0.5) / levels
        if "mean" in a:
            x = (x - a["mean"]) / a["sd"]
        if "pca_mean" in a:
            x = (x - a["pca_mean"]) @ a["pca_components"].T
        return np.ascontiguousarray(x, dtype=np.float32)

    def _levels(self) -> tuple[float, np.ndarray, np.ndarray | float]:
        """The dequantization's count of levels and its top and bottom values: numbers, or one per feature."""
        a = self.arrays
        bottom = np.asarray(a["bottom"], dtype=np.float64) if "bottom" in a else 0.0
        return float(a["levels"]), np.asarray(a["top"], dtype=np.float64), bottom

    @property
    def invertible(self) -> bool:
        """Whether the stages map the features one to one (no principal components, which drop directions)."""
        return "pca_mean" not in self.arrays

    def log_det_jacobian(self) -> float:
        r""":math:`\log |\det \partial x' / \partial x|` of the invertible stages, the same for every point: what
        turns a log density of the model inputs :math:`x'` into one of the raw features :math:`x` (add it). The
        dequantization counts as the affine map of a value onto its level's cell of width :math:`1/L`."""
        a, out = self.arrays, 0.0
        if "levels" in a:
            levels, top, bottom = self._levels()
            spacing = (top - bottom) / (levels - 1)
            out -= float(np.broadcast_to(np.log(spacing * levels), (self.dim_in,)).sum())
        if "sd" in a:
            out -= float(np.log(a["sd"]).sum())
        return out

    def invert(self, x: np.ndarray) -> np.ndarray:
        """Raw features of model inputs ``x`` (points the model drew): principal components back to the features
        they span, rescaling undone, dequantized values back to their level."""
        x = np.asarray(x, dtype=np.float64)
        a = self.arrays
        if "pca_mean" in a:
            x = x @ a["pca_components"] + a["pca_mean"]
        if "mean" in a:
            x = x * a["sd"] + a["mean"]
        if "levels" in a:
            levels, top, bottom = self._levels()
            level = np.clip(np.floor(x * levels), 0, levels - 1)
            x = bottom + level * (top - bottom) / (levels - 1)
        return x

    def save(self, path: str | os.PathLike[str]) -> None:
        names = np.array(self.features if self.features is not None else [], dtype=str)
        np.savez(
            path,
            dim_in=np.array(self.dim_in),
            features=names,
            has_features=np.array(self.features is not None),
            **self.arrays,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Preprocessing:
        p = Path(path)
        if not p.is_file():
            raise MixzooInputError(
                f"{str(p)!r} is missing: the run was written by an older mixzoo; fit it again to predict."
            )
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k not in ("dim_in", "features", "has_features")}
            features = tuple(str(f) for f in z["features"]) if bool(z["has_features"]) else None
            return cls(int(z["dim_in"]), features, arrays)
