"""The empty guide, for models whose globals are parameters and whose only latent,
the cluster ``"y"``, is summed out exactly by enumeration in the model."""

from __future__ import annotations

import torch
from pyro.nn import PyroModule

__all__ = ["EmptyGuide"]


class EmptyGuide(PyroModule):
    """A guide with no sample sites: with TraceEnum_ELBO the loss is then the exact
    negative marginal log-likelihood of the model (maximum likelihood for its parameters)."""

    samples_y = False
    held_fixed = False

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        return None
