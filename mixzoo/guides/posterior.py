r"""The E-step as a guide: :math:`q(y \mid x)` is the model's own posterior under its current parameters.

.. math:: q(y_n = k \mid x_n) = p(y_n = k \mid x_n, \theta^t)
    = \frac{p(x_n, y_n = k \mid \theta^t)}{\sum_j p(x_n, y_n = j \mid \theta^t)},

computed without gradient, so that it is held constant while a step changes :math:`\theta` (Dempster, Laird and
Rubin 1977). The guide enumerates ``"y"`` with these probabilities; with the loss ``em`` a step is one EM iteration
on the minibatch (a gradient M-step, or the model's closed form), and with the other losses it is their estimate of
the same gradient (Monte Carlo EM when they sample ``y``).

Where the posterior comes from, in order: the model's :meth:`~mixzoo.contract.StatesPosterior.log_posterior`
(a model may state the E-step its paper uses: the neural mixture's softmax of its normalized scores, Tissera et al.
2022, eq. 5), the normalized :meth:`~mixzoo.contract.StatesLogJoint.log_joint` table, or the model's trace with
``"y"`` enumerated. The guide has no parameters: the model's belong to the model (one copy in checkpoints).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from ..contract import DATA_PLATE, StatesPosterior
from ..data.labels import label_logits
from ..inference.enumeration import enumerated_log_joint
from ..inference.untraced import states
from .empty import EmptyGuide
from .registry import GuideSpec, register_guide

__all__ = ["PosteriorGuide"]


class PosteriorGuide(PyroModule):
    """Guide ``guide(x, y=None, subsample=None, **kwargs)`` enumerating ``"y"`` with the model's posterior.

    :param model: the model whose E-step this is; referenced, not owned.
    """

    samples_y = True
    held_fixed = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: the parameters belong to the model

    @property
    def model(self) -> nn.Module:
        return self._model  # type: ignore[no-any-return]

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        r"""(B, K) :math:`\log p(y = k \mid x_n)` of the minibatch ``x`` under the current parameters, without
        gradient (see the module docstring for where it comes from)."""
        m = self.model
        if isinstance(m, StatesPosterior):  # computed without gradient by the model, in its own mode
            return m.log_posterior(x).detach()
        with torch.no_grad():
            if states(m):
                table = m.log_joint(x)  # type: ignore[operator]
            else:
                with pyro.poutine.block():
                    table = enumerated_log_joint(m, EmptyGuide(), x)
            return torch.log_softmax(table, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None, **kwargs: object) -> None:
        log_r = self.log_posterior(x if subsample is None else x[subsample])  # before the plate: it may trace the model
        with pyro.plate(DATA_PLATE, x.shape[0], subsample=subsample) as idx:
            logits = label_logits(log_r, None if y is None else y[idx])
            pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})


register_guide(
    GuideSpec(
        name="posterior",
        description="the E-step: the model's own posterior p(y|x) under its current parameters, held fixed in a step",
        build=lambda model, k, data, options, family_options: PosteriorGuide(model),
        samples_y=True,
        held_fixed=True,
    )
)
