"""What a plan may know of the data before training: its size, and whether it is an image of integer levels."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["DataShape"]


@dataclass(frozen=True)
class DataShape:
    """The data a model will train on, as far as choosing a recipe, a network or a guide needs to know them."""

    n: int
    dim: int
    image_shape: tuple[int, ...] | None = None
    """(H, W) or (C, H, W) when the features are an image's pixels."""
    levels: int | None = None
    """Integer intensity levels (e.g. 256 for raw MNIST), ``None`` for continuous data."""
    learned_features: bool = False
    """The data are a trained network's features (deep transfer, ``--pretrain-classes``), not measurements."""
    levels_per_feature: bool = False
    """The levels' spacing differs from feature to feature (a table of counts in units of their own), so one noise
    width does not dequantize them all."""

    def reduced(self, components: int) -> DataShape:
        """The shape after a reduction to ``components`` principal components: no longer an image, not integer."""
        return replace(self, dim=int(components), image_shape=None, levels=None, levels_per_feature=False)
