"""Per-epoch schedules that anneal an attribute of a module (temperatures, std floors).

A schedule is called by :func:`mixzoo.fit` with the epoch index before that
epoch's first step, and sets ``module.<attribute>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["ExponentialDecay", "StepDecay"]


@dataclass
class ExponentialDecay:
    """``value = max(floor, start * rate**epoch)``; e.g. the encoder temperature T of Pires (2020)."""

    module: nn.Module
    attribute: str
    start: float
    rate: float
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not hasattr(self.module, self.attribute):
            raise AttributeError(f"{type(self.module).__name__} has no attribute {self.attribute!r} to anneal")
        if not 0 < self.rate <= 1:
            raise ValueError(f"decay rate must lie in (0, 1], got {self.rate}")

    def value(self, epoch: int) -> float:
        return max(self.floor, self.start * self.rate**epoch)

    def __call__(self, epoch: int) -> None:
        setattr(self.module, self.attribute, self.value(epoch))


@dataclass
class StepDecay:
    """``value = max(floor, start * factor**(epoch // every))``; e.g. std bounds halved every N epochs (Li et al. 2020, II-D)."""

    module: nn.Module
    attribute: str
    start: float
    every: int
    factor: float = 0.5
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not hasattr(self.module, self.attribute):
            raise AttributeError(f"{type(self.module).__name__} has no attribute {self.attribute!r} to anneal")
        if self.every < 1:
            raise ValueError(f"every must be a positive number of epochs, got {self.every}")

    def value(self, epoch: int) -> float:
        return max(self.floor, self.start * self.factor ** (epoch // self.every))

    def __call__(self, epoch: int) -> None:
        setattr(self.module, self.attribute, self.value(epoch))
