"""The divergence guard: NaN/inf losses or parameters stop training, or retry the epoch.

After every finished epoch the guard keeps a snapshot of the parameters (and, when retries
are allowed, of the step's optimizer state). When an epoch diverges it puts the snapshot
back; with retries left it restores the optimizer state, halves the learning rate and
lets the loop run the epoch again, else it raises
:class:`~mixzoo.errors.TrainingDivergedError` with the parameters of the last good epoch
in place.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch

from ..errors import TrainingDivergedError
from ..inference.step import Step
from .module_state import all_finite, restore, snapshot

__all__ = ["Diverged", "DivergenceGuard"]


class Diverged(Exception):
    """An epoch produced a NaN/inf loss or parameter at ``step`` (1-based)."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(what)
        self.step, self.what = step, what


class DivergenceGuard:
    """Snapshots of the last good epoch, and the retry policy.

    :param modules: the modules whose parameters are guarded (and the current param store).
    :param step: the step whose optimizer state is restored and whose learning rate is halved.
    :param retries: how many diverged epochs may be retried in the whole run.
    :param used: retries already spent (a resumed run).
    :param warn: warn on each retry (the main process of a distributed run).
    """

    def __init__(self, modules: list[torch.nn.Module], step: Step, retries: int, used: int = 0, warn: bool = True):
        self.modules, self.step, self.retries, self.used, self.warn = modules, step, retries, used, warn
        self.good: dict[str, Any] = {}
        self.good_optim: dict[str, Any] | None = None
        self.mark_good()

    def mark_good(self) -> None:
        """Remember the current state as the last good one."""
        self.good = snapshot(self.modules)
        if self.retries:
            self.good_optim = copy.deepcopy(self.step.get_state())

    def check_loss(self, loss: float, step: int) -> None:
        if not math.isfinite(loss):
            raise Diverged(step, f"the loss became {loss}")

    def check_parameters(self, step: int) -> None:
        if not all_finite(self.modules):
            raise Diverged(step, "a parameter became NaN/inf")

    def recover(self, d: Diverged, epoch: int, epochs_done: int, history: object) -> None:
        """Put the last good state back; raise, or prepare a retry of ``epoch`` at half the learning rate."""
        what = f"training diverged in epoch {epoch + 1}, step {d.step}: {d.what}"
        restore(self.modules, self.good)
        if self.used >= self.retries:
            raise TrainingDivergedError(
                f"{what}; stopped and restored the parameters of the last good epoch ({epochs_done})"
                + (f" after {self.used} retries with a halved learning rate" if self.used else "")
                + ". Lower the learning rate or check the data scale.",
                history=history,
            ) from None
        self.used += 1
        self.step.restore(self.good_optim or {})
        self.step.scale_lr(0.5)
        self.good_optim = copy.deepcopy(self.step.get_state())
        if self.warn:
            warnings.warn(f"{what}; retrying from epoch {epoch + 1} with half the learning rate.", stacklevel=3)
