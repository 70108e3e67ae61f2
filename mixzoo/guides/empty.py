"""The empty guide, for models whose only per-point latent, the cluster ``"y"``, is summed out exactly by
enumeration in the model (their globals are module parameters)."""

from __future__ import annotations

import torch
from pyro.nn import PyroModule

from .registry import GuideSpec, register_guide

__all__ = ["EmptyGuide"]


class EmptyGuide(PyroModule):
    """A guide with no sample sites: with ``trace-enum`` the loss is then the exact negative marginal
    log-likelihood of the model (maximum likelihood for its parameters), and ``nce`` contrasts the model with
    noise."""

    samples_y = False
    held_fixed = False

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        return None


register_guide(
    GuideSpec(
        name="empty",
        description="no guide: y summed out exactly in the model (maximum likelihood, or NCE)",
        build=lambda model, k, data, options, family_options: EmptyGuide(),
        samples_y=False,
    )
)
