r"""Reweighted wake-sleep (Bornschein and Bengio 2015) on minibatches, with per-point importance weights.

With :math:`M` particles :math:`h^{(m)}_n \sim q(h \mid x_n)` per point (drawn without a pathwise gradient) and
log weights :math:`w_{mn} = \log p(x_n, h^{(m)}_n) - \log q(h^{(m)}_n \mid x_n)`, the two wake phases are

.. math::
    \text{wake-}\theta:\quad -\frac{N}{B} \sum_{n \in \text{batch}} \log \frac{1}{M} \sum_m e^{w_{mn}}
    \qquad\qquad
    \text{wake-}\phi:\quad -\frac{N}{B} \sum_{n \in \text{batch}} \sum_m \tilde w_{mn} \log q(h^{(m)}_n \mid x_n),

with :math:`\tilde w_{mn} = e^{w_{mn}} / \sum_{m'} e^{w_{m'n}}` held constant: the model climbs the importance-
weighted bound (IWAE), and the guide is fitted to the model's posterior by self-normalized importance sampling
(the "wake" update of :math:`q`; its gradient estimates that of :math:`\mathrm{KL}(p(h \mid x) \,\|\, q(h \mid x))`).
The discrete :math:`y` needs no score function and no baseline.

Pyro's :class:`~pyro.infer.ReweightedWakeSleep` sums each particle's weight over the whole batch, treating the
batch as one joint latent, and warns that it does not support mini-batches. Here the weights stay per point, so the
particles of one point are compared only with each other and a minibatch, scaled by the data plate's :math:`N/B`,
estimates the data set's objective; on a single point the two coincide (tested). There is no sleep phase (Pyro's
``insomnia=1``): it would need draws of :math:`x` from the model, which a model scored by a factor or a table
cannot give. The loss reported is the wake-:math:`\theta` one, the negative IWAE bound.

References: Bornschein and Bengio, *Reweighted Wake-Sleep* (ICLR 2015); Le et al., *Revisiting Reweighted
Wake-Sleep for Models with Stochastic Control Flow* (UAI 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.trace_struct import Trace
from pyro.util import warn_if_nan

from ..errors import MixzooInputError
from ..options import Options, option
from .particles import point_log_weights
from .registry import Algorithm, first, needs_normalized, needs_sampled_y, register_algorithm

__all__ = ["ReweightedWakeSleep", "RWSOptions"]


class ReweightedWakeSleep(ELBO):
    """Reweighted wake-sleep with per-point weights: ``SVI(model, guide, optim, ReweightedWakeSleep(M))``.

    :param num_particles: particles M per point (at least 2: self-normalized weights need several).
    :param max_plate_nesting: plates in the model besides the particle plate (1 for the mixzoo contract).
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1) -> None:
        if num_particles < 2:
            raise MixzooInputError(f"reweighted wake-sleep needs num_particles >= 2, got {num_particles}.")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=True)

    def _get_trace(self, model: Callable[..., Any], guide: Callable[..., Any], args: Any, kwargs: Any) -> tuple[Trace, Trace]:
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs, detach=True)

    def wake_losses(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(wake_theta, wake_phi)``: the model's and the guide's losses on the minibatch (see the module)."""
        model_trace, guide_trace = self._get_vectorized_trace(model, guide, args, kwargs)
        m = self.num_particles
        w = point_log_weights(model_trace, guide_trace, m)
        log_w = w.log_p - w.log_q.detach()  # (M, B)
        log_sum = torch.logsumexp(log_w, 0)
        wake_theta = -w.scale * (log_sum - math.log(m)).sum()
        normalized = (log_w - log_sum).exp().detach()
        wake_phi = -w.scale * (normalized * w.log_q).sum()
        return wake_theta, wake_phi

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The wake-theta loss: the negative importance-weighted bound (an estimate of it)."""
        with torch.no_grad():
            value = float(self.wake_losses(model, guide, *args, **kwargs)[0])
        warn_if_nan(value, "loss")
        return value

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any):
        """The sum of both wake losses: its gradient trains the model by wake-theta and the guide by wake-phi."""
        theta, phi = self.wake_losses(model, guide, *args, **kwargs)
        return theta + phi

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        theta, phi = self.wake_losses(model, guide, *args, **kwargs)
        total = theta + phi
        if total.requires_grad:
            total.backward()
        value = float(theta.detach())
        warn_if_nan(value, "loss")
        return value


@dataclass(frozen=True)
class RWSOptions(Options):
    """Options of ``rws``."""

    particles: int = option(5, "particles per point", low=2)


register_algorithm(
    Algorithm(
        name="rws",
        description="reweighted wake-sleep: the model on the IWAE bound, the guide on self-normalized importance "
        "weights; per-point weights, so minibatches work",
        cite="Bornschein and Bengio 2015; Le et al. 2019",
        loss_class=ReweightedWakeSleep,
        make=lambda o, context: ReweightedWakeSleep(num_particles=o.particles),
        requires=lambda model, guide: first(needs_sampled_y(guide), needs_normalized(model)),
        options=RWSOptions,
    )
)
