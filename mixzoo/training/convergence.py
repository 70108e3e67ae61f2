"""Stopping when converged: the relative change of the epoch loss stays below ``tol``.

Like scikit-learn's mixtures, which stop when the change of the lower bound falls below
``tol``, training stops once :math:`|L_t - L_{t-1}| \\le tol \\cdot \\max(1, |L_t|)` has held for
``patience`` consecutive epochs (minibatch losses are noisy, so one quiet epoch is not enough; a step
whose epoch loss is exact and monotone, like closed-form EM, sets ``convergence_patience = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MixzooInputError

__all__ = ["Convergence"]


@dataclass(frozen=True)
class Convergence:
    """Says from the per-epoch losses whether training has converged (so a resumed run stops where it would have)."""

    tol: float | None = None
    patience: int = 3

    def __post_init__(self) -> None:
        if self.tol is not None and (isinstance(self.tol, bool) or not self.tol >= 0):
            raise MixzooInputError(f"tol must be a non-negative number, got {self.tol!r}.")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise MixzooInputError(f"the convergence patience must be a positive integer, got {self.patience!r}.")

    def update(self, losses: list[float]) -> bool:
        """Whether the last ``patience`` changes of ``losses`` were all below ``tol`` (relative)."""
        if self.tol is None or len(losses) <= self.patience:
            return False
        tail = losses[-self.patience - 1 :]
        return all(abs(b - a) <= self.tol * max(1.0, abs(b)) for a, b in zip(tail, tail[1:], strict=False))
