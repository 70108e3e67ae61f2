"""Weakly informative priors on a mixture's unconstrained parameters, in the rescaled units a fit sees.

The built-in density families fit features rescaled to a spread of about 1 (:mod:`mixzoo.app.planning`), so one set
of scales serves them all; :meth:`GaussianMixture.parameter_priors <mixzoo.models.gmm.GaussianMixture.parameter_priors>`
states what each means for the weights, means and covariances.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import nn

__all__ = ["PRIOR_SCALES", "weak_priors"]

PRIOR_SCALES: dict[str, float] = {"logits": 1.0, "loc": 3.0, "log_scale": 2.0, "tril": 1.0, "df_logit": 1.5}
"""Standard deviation of the zero-mean Normal prior on each parameter name."""


def weak_priors(module: nn.Module) -> dict[str, dist.Distribution]:
    """An independent zero-mean Normal for every parameter of ``module``, with the scale :data:`PRIOR_SCALES` gives
    its name, batched to the parameter's shape.

    :raises KeyError: for a parameter that :data:`PRIOR_SCALES` does not name.
    """
    out = {}
    for name, p in module.named_parameters():
        scale = PRIOR_SCALES[name]
        out[name] = dist.Normal(p.new_zeros(()), p.new_tensor(scale)).expand(p.shape).to_event(p.dim())
    return out
