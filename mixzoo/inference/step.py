"""One optimisation step on a minibatch: the unit the training loop repeats.

A :class:`Step` takes the data, the optional labels and the minibatch indices and
returns the minibatch's loss, scaled to the whole data set as :meth:`pyro.infer.SVI.step`
returns it. It owns its optimizer state, so that the loop can checkpoint it, restore it
after a diverged epoch, halve its learning rate and decay it per epoch without knowing
what the step does. :class:`SVIStep` is one :class:`~pyro.infer.SVI` step with any
:class:`~pyro.infer.ELBO`; a family may bring its own step (see :mod:`.two_fold`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

import pyro
import torch
from pyro.infer import ELBO, SVI
from pyro.optim import PyroOptim
from pyro.optim.optim import _load_state_dict

from .data_parallel import DistributedContext, DistributedSVI
from .optimizer import JointOptim

__all__ = ["Step", "StepFactory", "SVIStep", "restore_optim", "scale_lr"]


class Step(Protocol):
    """What the training loop needs of a step."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor) -> float: ...

    def end_epoch(self) -> None:
        """Per-epoch bookkeeping (the learning-rate decay)."""

    def get_state(self) -> dict[str, Any]:
        """The optimizer state, for checkpoints and retries."""

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a :meth:`get_state` before training starts (resume)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`get_state` taken during training (retry after divergence)."""

    def scale_lr(self, factor: float) -> None:
        """Multiply every learning rate by ``factor``."""


StepFactory = Callable[..., Step]
"""``factory(model, guide, optim, loss, *, context, seed) -> Step``."""


class SVIStep:
    """One :class:`~pyro.infer.SVI` step (data-parallel under a process group of several processes)."""

    def __init__(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        optim: PyroOptim,
        loss: ELBO,
        *,
        context: DistributedContext | None = None,
        seed: int | None = None,
    ) -> None:
        self.context = context or DistributedContext()
        self.optim = optim
        if self.context.world > 1:
            self.svi: SVI = DistributedSVI(model, guide, optim, loss, context=self.context)
        else:
            self.svi = SVI(model, guide, optim, loss)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, **kwargs: Any) -> float:
        if isinstance(self.svi, DistributedSVI):
            local = self.context.shard(idx, x.shape[0])
            self.svi.weight = len(local) / len(idx)
            idx = local
        return self.svi.step(x, y, idx, **kwargs)

    def end_epoch(self) -> None:
        if hasattr(self.optim, "step"):
            self.optim.step()

    def get_state(self) -> dict[str, Any]:
        return self.optim.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.optim.set_state(state)

    def restore(self, state: dict[str, Any]) -> None:
        restore_optim(self.optim, state)

    def scale_lr(self, factor: float) -> None:
        scale_lr(self.optim, factor)


def restore_optim(optim: PyroOptim, state: dict[str, Any] | None) -> None:
    """Load a saved :meth:`PyroOptim.get_state` back into the live optimizers."""
    if isinstance(optim, JointOptim):  # also clears the state of parameters the snapshot did not have
        optim.restore(state or {})
        return
    if not state:
        return
    params = dict(pyro.get_param_store().named_parameters())
    for name, st in copy.deepcopy(state).items():
        if name in params and params[name] in optim.optim_objs:
            _load_state_dict(optim.optim_objs[params[name]], st)


def scale_lr(optim: PyroOptim, factor: float) -> None:
    """Multiply the learning rate of every live and future optimizer of ``optim`` by ``factor``."""
    if isinstance(optim, JointOptim):
        optim.scale_lr(factor)
        return
    for opt in optim.optim_objs.values():
        inner = getattr(opt, "optimizer", opt)
        for group in inner.param_groups:
            group["lr"] *= factor
        if hasattr(opt, "base_lrs"):
            opt.base_lrs = [b * factor for b in opt.base_lrs]
    args = getattr(optim, "pt_optim_args", None)
    if isinstance(args, dict) and "lr" in args:
        args["lr"] *= factor
    kwargs = getattr(optim, "kwargs", None)
    if isinstance(kwargs, dict) and isinstance(kwargs.get("optim_args"), dict) and "lr" in kwargs["optim_args"]:
        kwargs["optim_args"]["lr"] *= factor
