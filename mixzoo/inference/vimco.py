r"""VIMCO: variational inference for Monte Carlo objectives (Mnih and Rezende, 2016).

With :math:`M` particles :math:`h^{(1..M)} \sim q(h \mid x)` and log weights
:math:`w_i = \log p(x, h^{(i)}) - \log q(h^{(i)} \mid x)`, the multi-sample bound
(the IWAE bound) is

.. math:: \hat L = \log \frac{1}{M} \sum_{i=1}^M e^{w_i} \le \log p(x).

Its gradient is estimated by

.. math::
    \nabla \hat L \approx \sum_i \big(\hat L - \hat L_{-i}\big) \nabla \log q(h^{(i)} \mid x)
    + \sum_i \tilde w_i \nabla w_i ,
    \qquad \tilde w_i = \frac{e^{w_i}}{\sum_j e^{w_j}},

where the first sum runs over the sites that cannot be reparameterized (the
discrete cluster ``"y"``) and the leave-one-out baseline replaces :math:`w_i` by
the geometric mean of the other weights,

.. math:: \hat L_{-i} = \log \frac{1}{M} \Big( \sum_{j \ne i} e^{w_j} + \exp\big(\tfrac{1}{M-1} \textstyle\sum_{j \ne i} w_j\big) \Big).

Everything is computed in log space (``logsumexp``), per data point, with the
particles vectorized in a plate. The loss value is :math:`-\hat L` summed over the
data (scaled like the data plate); the gradient is that of a surrogate whose
derivative is the estimator above.

Pyro's ``RenyiELBO(alpha=0)`` computes the same bound but gives no learning
signal to a discrete guide; this class does.

:class:`ScoreFunctionSites` turns continuous guide sites into non-reparameterized ones
(values drawn without a pathwise gradient), so that the learning signal multiplies the
score of the whole :math:`q(z, y \mid x)`, as in Li et al.'s (2020) eq. (6) and their
non-reparameterized VIMCO (eq. 7); ``TraceGraph_ELBO`` (NVIL) reads the same marking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyro.distributions as dist
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace

from ..errors import MixzooInputError
from ..options import Options, option
from .particles import point_log_weights
from .registry import Algorithm, first, needs_normalized, needs_sampled_y, register_algorithm

__all__ = ["VIMCO", "vimco_objective", "importance_log_likelihood", "ScoreFunctionSites", "without_rsample"]


def vimco_objective(log_weights: torch.Tensor, log_q_nonreparam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point multi-sample bound and VIMCO surrogate from (M, N) log weights.

    :param log_weights: :math:`w_{i,n}`, differentiable (reparameterized paths and parameters).
    :param log_q_nonreparam: :math:`\\log q` of the non-reparameterizable sites, (M, N).
    :return: ``(bound, surrogate)``, each (N,): the bound :math:`\\hat L_n`, and a surrogate whose
        gradient is the VIMCO estimator of :math:`\\nabla \\hat L_n`.
    """
    m = log_weights.shape[0]
    if m < 2:
        raise MixzooInputError("VIMCO needs at least 2 particles (num_particles >= 2).")
    log_m = math.log(m)
    bound = torch.logsumexp(log_weights, 0) - log_m
    w = log_weights.detach()
    # leave-one-out with the geometric mean of the others in place of w_i
    mean_others = (w.sum(0, keepdim=True) - w) / (m - 1)  # (M, N)
    eye = torch.eye(m, dtype=torch.bool, device=w.device)[:, :, None]  # (M, M, 1): row i replaces entry i
    replaced = torch.where(eye, mean_others[:, None, :], w[None, :, :])  # (M, M, N)
    loo = torch.logsumexp(replaced, 1) - log_m  # (M, N)
    signal = bound.detach()[None, :] - loo
    surrogate = bound + (signal * log_q_nonreparam).sum(0)
    return bound, surrogate


_SCORE_CLASSES: dict[type, type] = {}


def without_rsample(fn: dist.TorchDistribution) -> dist.TorchDistribution:
    """The same distribution with ``has_rsample`` off: its draws carry no pathwise gradient and inference
    algorithms give it a score-function term instead.

    The flag lives on a subclass, so it survives the ``expand`` of plates (an instance attribute would not,
    and ``Independent`` cannot hold one).
    """
    if isinstance(fn, dist.Independent):
        return dist.Independent(without_rsample(fn.base_dist), fn.reinterpreted_batch_ndims)
    cls = type(fn)
    if cls not in _SCORE_CLASSES:
        _SCORE_CLASSES[cls] = cls if not fn.has_rsample else type(f"Score{cls.__name__}", (cls,), {"has_rsample": False})
    new = object.__new__(_SCORE_CLASSES[cls])
    new.__dict__.update(fn.__dict__)
    return new


class ScoreFunctionSites(Messenger):
    """Mark the named latent sites non-reparameterized (see :func:`without_rsample`).

    :param sites: names of the sites.
    :param baseline_from: a site whose ``infer["baseline"]`` (NVIL's :math:`C_\\psi(x) + c`) the marked
        sites share when they have none: eq. (6) subtracts one baseline from the signal of
        :math:`\\nabla \\log q(z, y \\mid x)`.
    """

    def __init__(self, sites: Iterable[str], baseline_from: str | None = None) -> None:
        super().__init__()
        self.sites, self.baseline_from = frozenset(sites), baseline_from
        self._baseline: dict[str, Any] | None = None

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        if msg["name"] == self.baseline_from:
            self._baseline = msg["infer"].get("baseline")
        if msg["name"] in self.sites:
            msg["fn"] = without_rsample(msg["fn"])
            if self._baseline is not None and "baseline" not in msg["infer"]:
                msg["infer"] = {**msg["infer"], "baseline": self._baseline}


class VIMCO(ELBO):
    """VIMCO loss: ``pyro.infer.SVI(model, guide, optim, VIMCO(num_particles=M))``.

    :param num_particles: number of particles M (>= 2), vectorized in a plate.
    :param max_plate_nesting: plates in the model besides the particle plate (1 for the mixzoo contract).
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1) -> None:
        if num_particles < 2:
            raise MixzooInputError(f"VIMCO needs num_particles >= 2, got {num_particles}.")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=True)

    def _get_trace(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[Trace, Trace]:
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def _terms(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        model_trace, guide_trace = self._get_vectorized_trace(model, guide, args, kwargs)
        w = point_log_weights(model_trace, guide_trace, self.num_particles)
        bound, surrogate = vimco_objective(w.log_w, w.log_q_score)
        return -w.scale * bound.sum(), -w.scale * surrogate.sum()

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The negative multi-sample bound :math:`-\\sum_n \\hat L_n` (an estimate of it)."""
        with torch.no_grad():
            return float(self._terms(model, guide, args, kwargs)[0])

    def differentiable_loss(
        self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The VIMCO surrogate loss: its gradient is the VIMCO estimator (its value is not the bound)."""
        return self._terms(model, guide, args, kwargs)[1]

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        loss, surrogate = self._terms(model, guide, args, kwargs)
        surrogate.backward()
        return float(loss.detach())


def importance_log_likelihood(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    num_samples: int = 100,
    batch_size: int = 1024,
) -> torch.Tensor:
    r"""(N,) importance-sampling estimate of :math:`\log p(x_n)` with the guide as proposal:
    :math:`\log \frac{1}{S} \sum_s p(x_n, h_s) / q(h_s \mid x_n)` (the S-sample IWAE bound,
    which tends to :math:`\log p(x_n)` as S grows)."""
    from ..param_store import isolated_param_store

    loss = VIMCO(num_particles=num_samples)
    out = []
    with torch.no_grad(), isolated_param_store():
        for xb in x.split(batch_size):
            model_trace, guide_trace = loss._get_vectorized_trace(model, guide, (xb,), {})
            log_w = sum(
                sign * site["unscaled_log_prob"]
                for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0))
                for site in trace.nodes.values()
                if site["type"] == "sample" and "unscaled_log_prob" in site
            )
            out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.cat(out)


@dataclass(frozen=True)
class VIMCOOptions(Options):
    """Options of ``vimco``."""

    particles: int = option(5, "particles per point (Li et al. 2020 use 15)", low=2)


register_algorithm(
    Algorithm(
        name="vimco",
        description="the multi-sample (IWAE) bound with leave-one-out baselines for the score function of y",
        cite="Mnih and Rezende 2016",
        loss_class=VIMCO,
        make=lambda o, context: VIMCO(num_particles=o.particles),
        requires=lambda model, guide: first(needs_sampled_y(guide), needs_normalized(model)),
        options=VIMCOOptions,
    )
)
