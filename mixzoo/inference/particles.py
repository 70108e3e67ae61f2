r"""Per-point log weights of vectorized particles, the quantity VIMCO and reweighted wake-sleep share.

With :math:`M` particles :math:`h^{(1..M)} \sim q(h \mid x_n)` drawn in a vectorized plate, each data point has its
own weights :math:`w_{mn} = \log p(x_n, h^{(m)}_n) - \log q(h^{(m)}_n \mid x_n)`, kept apart per point rather than
summed over the minibatch: the particles of one point are compared with each other, never with another point's. The
data plate's :math:`N/B` scale is returned separately, to be applied once to the per-point objective, so that
minibatches are unbiased estimates of the whole data set's objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro.poutine.trace_struct import Trace

from ..contract import in_data_plate
from ..errors import MixzooInputError

__all__ = ["PointWeights", "point_log_weights"]


@dataclass
class PointWeights:
    """(M, B) terms of the particles of a minibatch, and the data plate's scale."""

    log_p: torch.Tensor
    """:math:`\\log p(x_n, h^{(m)}_n)`."""
    log_q: torch.Tensor
    """:math:`\\log q(h^{(m)}_n \\mid x_n)`."""
    log_q_score: torch.Tensor
    """The part of ``log_q`` from sites without a pathwise gradient (the discrete ``y``)."""
    scale: float

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q


def _per_point(lp: torch.Tensor, m: int) -> torch.Tensor:
    if lp.dim() == 0:
        return lp.expand(m, 1)
    if lp.dim() == 1:
        return lp[:, None] if lp.shape[0] == m else lp[None, :]
    return lp


def point_log_weights(model_trace: Trace, guide_trace: Trace, m: int) -> PointWeights:
    """The (M, B) terms of vectorized traces (each site's ``unscaled_log_prob`` computed, as
    :func:`pyro.infer.enum.get_importance_trace` leaves them).

    :raises MixzooInputError: where the traces have no sample sites to weight.
    """
    terms: dict[str, torch.Tensor | float] = {"p": 0.0, "q": 0.0, "score": 0.0}
    scale = None
    for trace, key in ((model_trace, "p"), (guide_trace, "q")):
        for site in trace.nodes.values():
            if site["type"] != "sample" or "unscaled_log_prob" not in site:
                continue
            lp = _per_point(site["unscaled_log_prob"], m)  # the data plate's N/B scale is applied once, later
            terms[key] = terms[key] + lp
            if key == "q" and not site["fn"].has_rsample:
                terms["score"] = terms["score"] + lp
            if in_data_plate(site):
                scale = site["scale"]
    log_p, log_q = terms["p"], terms["q"]
    if not isinstance(log_p, torch.Tensor) and not isinstance(log_q, torch.Tensor):
        raise MixzooInputError("found no sample sites to weight.")
    ref = log_p if isinstance(log_p, torch.Tensor) else log_q
    width = ref.shape[-1]  # type: ignore[union-attr]

    def full(t: torch.Tensor | float) -> torch.Tensor:
        t = t if isinstance(t, torch.Tensor) else ref.new_zeros(())  # type: ignore[union-attr]
        return t.expand(m, width) if t.dim() < 2 or t.shape[0] == 1 else t

    return PointWeights(full(log_p), full(log_q), full(terms["score"]), 1.0 if scale is None else float(scale))
