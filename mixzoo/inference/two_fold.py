r"""The two-fold optimisation of Tissera et al. (2022, Algorithm 1, section 7) as a step.

For each minibatch :math:`x` and one random transformation :math:`x^{tr} = T(x)`:

1. **EM step** - one :class:`pyro.infer.SVI` step with :class:`~mixzoo.inference.em.EM`
   on eq. (7): the E-step guide gives :math:`p = \operatorname{softmax}(a^*)` (held
   constant) and the model scores :math:`\log\sigma(a^*/\gamma) + \log\sigma(a^{tr*}/\gamma)`.
2. **Consistency step** - with the updated parameters, :math:`p_i` is computed afresh
   (held constant) and one step of a separate Adam, with its own learning rate, lowers
   eq. (8) (:func:`~mixzoo.inference.consistency.consistency_loss`).

Because it is a step of :func:`mixzoo.fit`, the two-fold scheme gets everything the loop
gives: observed labels, learning-rate decay (both optimizers), retries at half the
learning rates, checkpoints and exact resume (the consistency optimizer and the
augmentation generator are part of the step's state), and data-parallel training (the
consistency gradients are all-reduced like the SVI ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO
from pyro.optim import PyroOptim

from ..errors import MixzooInputError
from .consistency import consistency_loss
from .data_parallel import DistributedContext
from .em import EM
from .step import SVIStep

__all__ = ["TwoFoldStep", "two_fold"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TwoFoldStep(SVIStep):
    """EM step on eq. (7) with augmented inputs, then (optionally) the consistency step on eq. (8).

    :param model: a neural mixture (``scores(x, batch_stats)``, an ``x_aug`` argument).
    :param augment: ``augment(x_batch, generator) -> x_tr``; the model's own ``augment`` by default.
    :param consistency_lr: Adam learning rate of the consistency step (the paper: 1e-4).
    :param consistency: run the consistency step (``False``: EM on eq. 7 only).
    :param seed: seeds the augmentations (with ``seed + 1``).
    """

    def __init__(
        self,
        model: Any,
        guide: Callable[..., Any],
        optim: PyroOptim,
        loss: ELBO,
        *,
        consistency_lr: float = 1e-4,
        consistency: bool = True,
        augment: Augment | None = None,
        context: DistributedContext | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(loss, EM):
            raise MixzooInputError(f"the two-fold optimisation takes its EM step with loss EM, not {type(loss).__name__}.")
        self.augment = augment if augment is not None else getattr(model, "augment", None)
        if self.augment is None:
            raise MixzooInputError(
                "the two-fold optimisation needs image augmentations: build the model with augment=True (--augment)."
            )
        if not consistency_lr > 0:
            raise MixzooInputError(f"the consistency learning rate must be positive, got {consistency_lr!r}.")
        super().__init__(model, guide, optim, loss, context=context)
        self.model, self.consistency = model, consistency
        self.params = list(model.parameters())
        self.kl_optim = torch.optim.Adam(self.params, lr=consistency_lr)
        gamma = getattr(optim, "gamma", None)
        self.kl_decay = None if gamma is None else torch.optim.lr_scheduler.ExponentialLR(self.kl_optim, gamma)
        self.draws = torch.Generator().manual_seed((0 if seed is None else seed) + 1)
        self.history: dict[str, list[float]] = {"kl": []}
        """Consistency loss (mean KL per point) of each finished epoch."""
        self._kl_total = 0.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, **kwargs: Any) -> float:
        if len(idx) < 2:
            return 0.0  # a batch of one cannot be normalized
        xb = x[idx]
        x_tr = self.augment(xb, self.draws)  # every process draws the whole batch's: the same draws on each
        n = x.shape[0]
        local = torch.nonzero(self.context.mine(idx, n)).flatten() if self.context.world > 1 else \
            torch.arange(len(idx), device=idx.device)  # the positions of this process's rows, as SVIStep shards them
        loss = super().__call__(x, y, idx, x_aug=x_tr[local] if self.context.world > 1 else x_tr)
        if self.consistency:
            kl = consistency_loss(self.model, xb[local], x_tr[local])
            self.kl_optim.zero_grad()
            kl.backward()
            if self.context.world > 1:
                self.context.all_reduce_grads(self.params, len(local) / len(idx))
            self.kl_optim.step()
            self.kl_optim.zero_grad()  # the next EM step must not see this step's gradient
            kl_value = self.context.sum(float(kl.detach()) * len(local) / len(idx))
            if not torch.isfinite(torch.tensor(kl_value)):
                return float("nan")
            self._kl_total += kl_value * len(idx) / n
        return loss

    def end_epoch(self) -> None:
        super().end_epoch()
        if self.kl_decay is not None:
            self.kl_decay.step()
        self.history["kl"].append(self._kl_total)
        self._kl_total = 0.0

    def get_state(self) -> dict[str, Any]:
        return {
            "em": self.optim.get_state(),
            "consistency": self.kl_optim.state_dict(),
            "decay": None if self.kl_decay is None else self.kl_decay.state_dict(),
            "draws": self.draws.get_state(),
            "kl": list(self.history["kl"]),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.optim.set_state(state["em"])
        self._load_own(state)

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state["em"])
        self._load_own(state)

    def _load_own(self, state: dict[str, Any]) -> None:
        self.kl_optim.load_state_dict(state["consistency"])
        if self.kl_decay is not None and state.get("decay") is not None:
            self.kl_decay.load_state_dict(state["decay"])
        self.draws.set_state(state["draws"])
        self.history = {"kl": list(state["kl"])}
        self._kl_total = 0.0

    def scale_lr(self, factor: float) -> None:
        super().scale_lr(factor)
        for group in self.kl_optim.param_groups:
            group["lr"] *= factor
        if self.kl_decay is not None:
            self.kl_decay.base_lrs = [b * factor for b in self.kl_decay.base_lrs]


def two_fold(
    *, consistency_lr: float = 1e-4, consistency: bool = True, augment: Augment | None = None
) -> Callable[..., TwoFoldStep]:
    """A step factory for :func:`mixzoo.fit` (``fit(..., loss=EM(), step=two_fold(consistency_lr=1e-4))``)."""

    def factory(model: Any, guide: Any, optim: PyroOptim, loss: ELBO, **kwargs: Any) -> TwoFoldStep:
        return TwoFoldStep(
            model, guide, optim, loss, consistency_lr=consistency_lr, consistency=consistency, augment=augment, **kwargs
        )

    return factory
