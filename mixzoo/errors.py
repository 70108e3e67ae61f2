"""Exceptions raised by mixzoo.

Every error a user can cause by bad input is a :class:`MixzooInputError`, raised
before any training starts, whose message names the problem and the fix.
"""

from __future__ import annotations

__all__ = ["MixzooInputError", "TrainingDivergedError"]


class MixzooInputError(ValueError):
    """Bad input (data, option or name), detected before training starts."""


class TrainingDivergedError(RuntimeError):
    """The loss or a parameter became NaN/inf during training.

    The model and guide have been restored to the last good state when this is
    raised; :attr:`history` holds the per-epoch losses up to that point.
    """

    def __init__(self, message: str, history: object | None = None) -> None:
        super().__init__(message)
        self.history = history
