r"""Closed-form EM as a step of the training loop (:class:`~mixzoo.inference.exact_em.ExactEM`).

Each minibatch is one chunk of the E-step: the step computes the responsibilities of
the current parameters (observed labels fix them to one-hot), adds the chunk's weighted
sufficient statistics, and returns the chunk's negative log-likelihood, scaled to the
whole data set like :meth:`pyro.infer.SVI.step`. Under a process group each process
takes its shard of the minibatch and the statistics are summed over processes before
the M-step, so every process sets the same parameters. When the epoch has visited every
point, :meth:`ConjugateEMStep.end_epoch` performs the M-step once from the summed
statistics. An epoch is therefore one EM iteration on all of the data, whatever the
batch size (which only bounds memory), and the epoch loss is the exact negative
log-likelihood of the parameters the iteration started from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed
from pyro.infer import ELBO
from pyro.optim import PyroOptim

from ..errors import MixzooInputError, TrainingDivergedError
from .data_parallel import DistributedContext
from .exact_em import ConjugateModel, ExactEM
from .step import SVIStep

__all__ = ["ConjugateEMStep", "conjugate_em"]


class ConjugateEMStep:
    """One EM iteration per epoch: E-step chunk by chunk, M-step at the end of the epoch.

    :param model: a :class:`~mixzoo.inference.exact_em.ConjugateModel`.
    """

    convergence_patience = 1
    """Epochs of change below ``tol`` before training stops: the epoch loss is the exact negative
    log-likelihood and EM never raises it, so one quiet iteration is as good as three (a minibatch
    loss needs three)."""

    def __init__(self, model: ConjugateModel, *, context: DistributedContext | None = None) -> None:
        if not isinstance(model, ConjugateModel):
            raise MixzooInputError(
                f"closed-form EM needs a model with log_joint, em_statistics and em_update; {type(model).__name__} has not."
            )
        self.context = context or DistributedContext()
        self.model = model
        self._stats: dict[str, torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, **kwargs: Any) -> float:
        n_batch = len(idx)
        if self.context.world > 1:  # each process takes its shard; the statistics are summed at the M-step
            idx = self.context.shard(idx)
        with torch.no_grad():
            xb = x.index_select(0, idx)  # about 3x faster than x[idx] for a gather of whole rows
            log_joint = self.model.log_joint(xb)
            log_px = torch.logsumexp(log_joint, -1)
            r = (log_joint - log_px[:, None]).exp()
            if y is not None:
                yb = y.index_select(0, idx)
                seen = yb >= 0
                if seen.any():
                    r[seen] = torch.nn.functional.one_hot(yb[seen], r.shape[-1]).to(r.dtype)
            stats = self.model.em_statistics(xb, r)
            self._stats = stats if self._stats is None else {k: self._stats[k] + v for k, v in stats.items()}
            return -self.context.sum(float(log_px.sum())) * x.shape[0] / n_batch

    def end_epoch(self) -> None:
        if self._stats is None:
            return
        stats, self._stats = self._stats, None
        if self.context.world > 1:
            for value in stats.values():
                torch.distributed.all_reduce(value)
        if not all(bool(torch.isfinite(v).all()) for v in stats.values()):
            raise TrainingDivergedError("EM: the E-step's statistics are not finite; the parameters are those of the last iteration.")
        with torch.no_grad():
            self.model.em_update(stats)

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def restore(self, state: dict[str, Any]) -> None:
        self._stats = None

    def scale_lr(self, factor: float) -> None:
        pass


def conjugate_em(
    model: Any,
    guide: Callable[..., Any],
    optim: PyroOptim,
    loss: ELBO,
    *,
    context: DistributedContext | None = None,
    seed: int | None = None,
) -> ConjugateEMStep | SVIStep:
    """The step for ``loss``: closed-form EM under :class:`ExactEM`, one SVI step under any other loss."""
    if isinstance(loss, ExactEM):
        return ConjugateEMStep(model, context=context)
    return SVIStep(model, guide, optim, loss, context=context, seed=seed)
