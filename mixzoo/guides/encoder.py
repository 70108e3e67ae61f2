r"""Amortized cluster encoder :math:`q(y \mid x)`: an MLP with a softmax output whose
logits are divided by a temperature T (Pires (2020), section 5: T decays
exponentially during training so that early on every component sees all data).

``"y"`` is enumerated in the guide, so with :class:`~pyro.infer.TraceEnum_ELBO`
the ELBO is the exact sum over clusters of Pires's (2020) eq. (4.3).

Semi-supervised use: labelled points (``y >= 0``) get a near one-hot
:math:`q`, matching the model's treatment, and the encoder learns them through
the supervised term :math:`\alpha \log q(y_n \mid x_n)` added to the ELBO (as a
guide factor, which enters the loss with a minus sign of the ELBO's ``-log q``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule

from ..data.labels import label_logits
from ..data.validation import check_data
from ..nets.mlp import ScalarState, mlp

__all__ = ["ClusterEncoder"]


class ClusterEncoder(PyroModule):
    """Guide ``guide(x, y=None, subsample=None)`` sampling ``"y"`` from softmax(MLP(x) / T).

    :param dim: number of features D.
    :param n_clusters: number of clusters K.
    :param hidden: hidden layer sizes.
    :param temperature: initial temperature T (anneal with :class:`~mixzoo.inference.schedules.ExponentialDecay`).
    :param supervised_weight: weight alpha of the supervised term on labelled points.
    """

    temperature = ScalarState()
    """The softmax temperature T, saved with the module's state (it is annealed while training)."""

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        hidden: Sequence[int] = (64, 64),
        temperature: float = 1.0,
        supervised_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = mlp([dim, *hidden, n_clusters])
        self.temperature = float(temperature)
        self.supervised_weight = float(supervised_weight)
        self.dim = int(dim)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) logits before the temperature."""
        return self.net((x - self.shift) / self.scale)

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log q(y = k \\mid x_n)` at the current temperature, as :meth:`forward` enumerates it
        (:mod:`mixzoo.inference.untraced`)."""
        return F.log_softmax(self.logits(x) / self.temperature, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            raw = self.logits(x[idx])
            yb = None if y is None else y[idx]
            logits = label_logits(raw / self.temperature, yb)
            pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            if yb is not None and bool((yb >= 0).any()):
                log_q = F.log_softmax(raw, -1).gather(-1, yb.clamp(min=0)[:, None]).squeeze(-1)
                term = -self.supervised_weight * log_q * (yb >= 0)
                pyro.factor("y_supervised", term, has_rsample=True)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> ClusterEncoder:
        """Standardise the encoder's inputs with the data's mean and std."""
        x = check_data(x, dim=self.dim).to(self.shift.device)
        sd = x.std(0)
        self.shift.copy_(x.mean(0))
        self.scale.copy_(torch.where(sd > 0, sd, torch.ones_like(sd)))
        return self
