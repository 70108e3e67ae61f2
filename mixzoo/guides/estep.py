r"""The E-step of Tissera et al.'s (2022) batch-wise EM as a guide (section 6).

For the current parameters :math:`\theta^t` the posterior of the cluster is
approximated by the softmax of the normalized relevance scores,

.. math:: r_{nk} = p(y_n = k \mid x_n, \theta^t) \approx \operatorname{softmax}_k\bigl(a^*_{nk} + \log p(y = k)\bigr),

which is :math:`\operatorname{softmax}(a^*)` for the uniform prior. The guide
enumerates ``"y"`` with these probabilities, computed without gradient: they are
held constant in the M-step, so with :class:`~mixzoo.inference.em.EM` the loss is
eq. (6)/(7), and :func:`~mixzoo.analysis.posterior.cluster_proba` reads :math:`q(y \mid x)`
from it. The guide has no parameters of its own; it evaluates the model's network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from ..data.labels import label_logits

if TYPE_CHECKING:
    from ..models.neural_mixture import NeuralMixture

__all__ = ["EStepGuide"]


class EStepGuide(PyroModule):
    """Guide ``guide(x, y=None, subsample=None, x_aug=None)`` enumerating ``"y"`` with the detached posterior.

    :param model: the :class:`~mixzoo.models.neural_mixture.NeuralMixture` whose E-step this is. It is
        referenced, not owned: its parameters stay the model's (one copy in checkpoints).
    """

    def __init__(self, model: NeuralMixture) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: the network belongs to the model

    @property
    def model(self) -> NeuralMixture:
        return self._model  # type: ignore[no-any-return]

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        subsample: torch.Tensor | None = None,
        x_aug: torch.Tensor | None = None,
    ) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            logits = label_logits(self.log_posterior(x[idx]), None if y is None else y[idx])
            pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        r"""(B, K) :math:`\log r_{nk}` of the minibatch ``x``, without gradient, with the statistics the
        model's own pass uses (the batch's while training)."""
        m = self.model
        batch_stats = m.training and torch.is_grad_enabled()
        with torch.no_grad():
            return torch.log_softmax(m.scores(x, batch_stats=batch_stats) + m.log_prior, -1)
