r"""Expectation-maximization with the exact E-step and closed-form M-step, for conjugate mixtures.

For a mixture whose cluster site ``"y"`` the model enumerates, the E-step needs no guide:
the responsibilities are the exact posterior

.. math::
    r_{nk} = p(y_n = k \mid x_n, \theta^t)
          = \frac{\pi_k \, p(x_n \mid \theta_k^t)}{\sum_j \pi_j \, p(x_n \mid \theta_j^t)},

and when the components are exponential families the M-step maximizes
:math:`\sum_n \sum_k r_{nk} \log \pi_k p(x_n \mid \theta_k)` in closed form from the
weighted sufficient statistics :math:`N_k = \sum_n r_{nk}`, :math:`\sum_n r_{nk} T(x_n)`
(Dempster, Laird and Rubin 1977; Bishop 2006, section 9.2.2, eqs. 9.23-9.27 for the
Gaussian mixture). Each iteration cannot lower the likelihood.

:class:`ExactEM` is the loss a family names ``"em"`` when its model has closed-form
updates (:class:`ConjugateModel`); the step that performs them is
:class:`mixzoo.inference.closed_form_em.ConjugateEMStep`. Its value is that of
:class:`~pyro.infer.TraceEnum_ELBO` with the empty guide, the negative log-likelihood
:math:`-\sum_n \log \sum_k \pi_k p(x_n \mid \theta_k)`, so losses of runs trained by EM
and by gradient steps compare directly. By Fisher's identity its gradient at
:math:`\theta^t` is also the gradient of the EM objective, which is why a gradient step
with this loss is the generalized (gradient) EM step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from ..guides import EmptyGuide
from .trace_enum import TableEnum_ELBO

__all__ = ["ExactEM", "ConjugateModel"]


@runtime_checkable
class ConjugateModel(Protocol):
    """What a model offers for closed-form EM."""

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log \\pi_k + \\log p(x_n \\mid \\theta_k)`."""

    def em_statistics(self, x: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sufficient statistics of a chunk weighted by responsibilities ``r`` (N, K), summed over points."""

    def em_update(self, stats: dict[str, torch.Tensor]) -> None:
        """Set the parameters to the M-step's maximizer given statistics summed over all points."""


class ExactEM(TableEnum_ELBO):
    """The loss of closed-form EM: the exact negative log-likelihood of a model that enumerates ``"y"``.

    :param max_plate_nesting: plates nested in the model (1: the ``"data"`` plate).
    """

    gradient_free = True
    """The step it selects sets the parameters in closed form: no learning rate applies."""

    def __init__(self, max_plate_nesting: int = 1, **kwargs: Any) -> None:
        super().__init__(max_plate_nesting=max_plate_nesting, **kwargs)

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The negative log-likelihood of the minibatch, scaled to the data set; from the model's own
        :meth:`~ConjugateModel.log_joint` where it has one and no labels are observed, else by the trace."""
        x, y, idx = (*args, None, None)[:3]
        if isinstance(model, ConjugateModel) and isinstance(guide, EmptyGuide) and y is None and not kwargs and isinstance(x, torch.Tensor):
            xb = x if idx is None else x[idx]
            with torch.no_grad():
                return -float(torch.logsumexp(model.log_joint(xb), -1).sum()) * x.shape[0] / xb.shape[0]
        return super().loss(model, guide, *args, **kwargs)
