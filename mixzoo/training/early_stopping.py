"""Held-out loss per epoch and early stopping with patience.

Each epoch the loss per point of the held-out data is recorded; the best epoch's
parameters are kept, and with ``patience`` training stops after that many epochs
without improvement and the best parameters are put back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO

from ..inference.data_parallel import DistributedContext
from .module_state import restore, snapshot

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Watches the held-out loss ``evaluate(loss, model, guide, x_val)``.

    :param evaluate: the loss per point on all of a data set (:func:`mixzoo.training.loop.evaluate_loss`).
    :param x_val: held-out data, or ``None`` to watch nothing.
    :param patience: epochs without improvement before stopping (``None``: never stop).
    """

    def __init__(
        self,
        evaluate: Callable[..., float],
        loss: ELBO,
        model: Any,
        guide: Any,
        x_val: torch.Tensor | None,
        patience: int | None,
        context: DistributedContext,
    ) -> None:
        self.evaluate, self.loss, self.model, self.guide = evaluate, loss, model, guide
        self.x_val, self.patience, self.context = x_val, patience, context
        self.best_val = math.inf
        self.best_epoch: int | None = None
        self.best: dict[str, Any] | None = None

    def update(self, epoch: int, modules: list[torch.nn.Module]) -> tuple[float | None, bool]:
        """The held-out loss of this epoch (``None`` without held-out data) and whether to stop."""
        if self.x_val is None:
            return None, False
        with torch.no_grad():
            val = self.context.sum(self.evaluate(self.loss, self.model, self.guide, self.x_val)) / self.context.world
        if val < self.best_val:
            self.best_val, self.best_epoch = val, epoch
            self.best = snapshot(modules)
            return val, False
        return val, self.patience is not None and epoch - (self.best_epoch or 0) >= self.patience

    def finish(self, modules: list[torch.nn.Module]) -> None:
        """With patience, put the best epoch's parameters back."""
        if self.best is not None and self.patience is not None:
            restore(modules, self.best)

    def get_state(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "best_epoch": self.best_epoch}

    def best_modules(self) -> list[dict[str, torch.Tensor]] | None:
        """The best epoch's module states (what a checkpoint keeps of it)."""
        return None if self.best is None else self.best["modules"]

    def set_state(self, state: dict[str, Any]) -> None:
        self.best_val, self.best_epoch = state["best_val"], state["best_epoch"]
        best = state.get("best")
        self.best = None if best is None else {"modules": best, "store": {}}
