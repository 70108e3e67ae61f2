r""":class:`~pyro.infer.TraceEnum_ELBO` that scores a model from its stated table.

With the empty guide and ``"y"`` enumerated in the model, the ELBO is the exact log-likelihood of the
minibatch, scaled to the data set,

.. math:: \mathcal L = \frac{N}{B} \sum_{n \in \text{batch}} \log \sum_{k=1}^K \exp T_{nk},
    \qquad T_{nk} = \log p(x_n, y_n = k),

(Pyro's enumeration tutorial; Bishop 2006, eq. 9.14 for the Gaussian mixture). With ``"y"`` enumerated in a
guide :math:`q(y \mid x)` it is

.. math:: \mathcal L = \frac{N}{B} \sum_{n \in \text{batch}} \sum_{k=1}^K q(k \mid x_n)
    \bigl[T_{nk} - \log q(k \mid x_n)\bigr],

the exact expectation over the enumerated site, differentiable through :math:`q` (Pires 2020, eq. 4.3 for the
variational mixture of flows). For a model that states
:math:`T` as ``log_joint`` (:mod:`mixzoo.inference.untraced`) the loss is computed from it once the
traced loss has confirmed the pair; every other pair, and every call with labels, is traced as
:class:`~pyro.infer.TraceEnum_ELBO` does. Values and gradients are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import TraceEnum_ELBO
from pyro.util import warn_if_nan

from ..contract import ModelCapabilities, guide_samples_nothing
from ..options import Options, option
from .registry import Algorithm, GuideFacts, first, needs_normalized, register_algorithm
from .untraced import StatedTable, backward_value, states

__all__ = ["TableEnum_ELBO"]


def _guide_ok(model: Any, guide: Any) -> bool:
    """The empty guide (``"y"`` summed out in the model) or one that states its :math:`\\log q(y \\mid x)`."""
    return guide_samples_nothing(guide) or states(guide, "log_posterior")


class TableEnum_ELBO(TraceEnum_ELBO):
    """The ``trace-enum`` loss: :class:`~pyro.infer.TraceEnum_ELBO`, computed from the model's stated table
    under the empty guide or a guide that states :math:`\\log q(y \\mid x)` (``log_posterior``).

    :param max_plate_nesting: plates nested in the model (1: the ``"data"`` plate).
    """

    def __init__(self, max_plate_nesting: int = 1, **kwargs: Any) -> None:
        super().__init__(max_plate_nesting=max_plate_nesting, **kwargs)
        self.table = StatedTable(_guide_ok)

    def _negative_elbo(self, model: Any, guide: Any, n: int, xb: torch.Tensor) -> torch.Tensor:
        if guide_samples_nothing(guide):
            return -(n / xb.shape[0]) * torch.logsumexp(model.log_joint(xb), -1).sum()
        log_q = guide.log_posterior(xb)  # guide first, as in the trace
        return -(n / xb.shape[0]) * (log_q.exp() * (model.log_joint(xb) - log_q)).sum()

    def _batch(self, model: Any, guide: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, torch.Tensor] | None:
        return self.table.batch(model, guide, args, kwargs, lambda: TraceEnum_ELBO.loss(self, model, guide, *args, **kwargs))

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        batch = self._batch(model, guide, args, kwargs)
        if batch is not None:
            with torch.no_grad():
                value = float(self._negative_elbo(model, guide, *batch))
            warn_if_nan(value, "loss")
            return value
        return super().loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any):
        batch = self._batch(model, guide, args, kwargs)
        if batch is not None:
            return self._negative_elbo(model, guide, *batch)
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        batch = self._batch(model, guide, args, kwargs)
        if batch is not None:
            return backward_value(self._negative_elbo(model, guide, *batch))
        return super().loss_and_grads(model, guide, *args, **kwargs)


@dataclass(frozen=True)
class TraceEnumOptions(Options):
    """Options of ``trace-enum``."""

    particles: int = option(1, "samples per step of the guide's other latents (y itself is summed exactly)", low=1)


def _requires(model: ModelCapabilities, guide: GuideFacts) -> str | None:
    if not guide.samples_y and not model.enumerable_y:
        return f"sums y out in the model under guide {guide.name!r}, but the model also has {', '.join(model.local_latents)}"
    return first(needs_normalized(model))


register_algorithm(
    Algorithm(
        name="trace-enum",
        description="the ELBO with y summed exactly, in the model (empty guide: the exact log-likelihood) or in the guide",
        cite="Pyro's TraceEnum_ELBO (Obermeyer et al. 2019); Pires 2020, eq. 4.3",
        loss_class=TraceEnum_ELBO,
        make=lambda o, context: TableEnum_ELBO(num_particles=o.particles),
        requires=_requires,
        options=TraceEnumOptions,
    )
)
