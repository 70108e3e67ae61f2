r"""Guides for the Gaussian-mixture VAE (Li et al. 2020).

- :class:`GMVAEGuide` (``structured=True``, the paper's choice):
  :math:`q(y \mid x)\, q(z \mid x, y)`, the z-encoder seeing x and the one-hot y.
- ``structured=False``: the mean-field :math:`q(y \mid x)\, q(z \mid x)`.

``"y"`` is marked for parallel enumeration (used by ``TraceEnum_ELBO``, the
paper's EnumY; other losses sample it) and carries an input-dependent baseline
network for ``TraceGraph_ELBO`` (NVIL, Mnih and Gregor 2014). The
standard deviation of :math:`q(z \mid \cdot)` is bounded below by
:math:`\epsilon_z`, annealed like the decoder's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from ..nets.mlp import ScalarState, mlp

__all__ = ["GMVAEGuide"]


class _Baseline(nn.Module):
    """Input-dependent baseline b(x) of NVIL, one value per point."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = mlp([dim, 64, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class GMVAEGuide(PyroModule):
    """Guide ``guide(x, y=None, subsample=None)`` for :class:`~mixzoo.models.gmvae.GMVAE`."""

    eps_z = ScalarState()
    """Lower bound on the standard deviation of q(z | .) (annealed; saved with the module's state)."""

    def __init__(
        self, dim: int, n_clusters: int, latent: int = 10, hidden: Sequence[int] = (256, 256), structured: bool = True
    ) -> None:
        super().__init__()
        self.n_clusters, self.latent, self.structured = int(n_clusters), int(latent), bool(structured)
        self.encoder_y = mlp([dim, *hidden, n_clusters])
        self.encoder_z = mlp([dim + (n_clusters if structured else 0), *hidden, 2 * latent])
        self.baseline = _Baseline(dim)
        self.eps_z = 1.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) logits of q(y | x)."""
        return self.encoder_y(x)

    def z_params(self, x: torch.Tensor, k: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.structured:
            onehot = F.one_hot(k, self.n_clusters).to(x.dtype)
            batch = torch.broadcast_shapes(onehot.shape[:-1], x.shape[:-1])
            inp = torch.cat([x.expand(batch + x.shape[-1:]), onehot.expand(batch + onehot.shape[-1:])], -1)
        else:
            inp = x
        out = self.encoder_z(inp)
        return out[..., : self.latent], F.softplus(out[..., self.latent :]) + self.eps_z  # additive floor

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            xb = x[idx]
            infer = {
                "enumerate": "parallel",
                "baseline": {"nn_baseline": self.baseline, "nn_baseline_input": xb},
            }
            if y is None:
                k = pyro.sample("y", dist.Categorical(logits=self.logits(xb)), infer=infer)
            else:
                k = y[idx]
            loc, scale = self.z_params(xb, k)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
