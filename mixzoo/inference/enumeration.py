r"""A model's table :math:`\log p(x_n, y_n = k)` from its trace, with the cluster site enumerated.

The model is traced with ``"y"`` enumerated in parallel and every site in the ``"data"`` plate contributes its log
density, giving the (N, K) table from which the exact posterior and the marginal likelihood follow,

.. math:: p(y=k \mid x_n) = \operatorname{softmax}_k \log p(x_n, y=k),
   \qquad \log p(x_n) = \operatorname{logsumexp}_k \log p(x_n, y=k).

This is always a trace: Pyro sees every parameter the model reads (losses rely on it to find the parameters of a
pair; :mod:`mixzoo.inference.untraced`). Where only the values matter, :func:`table_log_joint` asks a model that
states its table directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch

from ..contract import CLUSTER_SITE, guide_samples_nothing, in_data_plate, site_log_prob
from .untraced import states

__all__ = ["enumerated_log_joint", "table_log_joint"]


def enumerated_log_joint(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor) -> torch.Tensor:
    r"""(N, K) :math:`\log p(x_n, y=k)`, differentiable, from one enumerated trace of the model on all of ``x``.

    Global latents the guide samples are replayed into the model; the guide's own value of ``"y"`` is not (``y`` is
    enumerated).

    :raises ValueError: if the model has no enumerated site ``"y"``.
    """
    empty = guide_samples_nothing(guide)
    enum_model = poutine.enum(model, first_available_dim=-2)
    if not empty:  # the empty guide has no sites to replay
        guide_tr = poutine.trace(guide).get_trace(x)
        if CLUSTER_SITE in guide_tr.nodes:  # an amortized guide's sample of y must not be replayed: y is enumerated
            guide_tr.remove_node(CLUSTER_SITE)
        enum_model = poutine.replay(enum_model, trace=guide_tr)
    tr = poutine.trace(enum_model).get_trace(x)
    if CLUSTER_SITE not in tr.nodes:
        raise ValueError(f"the model has no sample site named {CLUSTER_SITE!r}; the mixzoo contract needs one")
    y_site = tr.nodes[CLUSTER_SITE]
    if y_site["infer"].get("enumerate") != "parallel" or y_site["value"].dim() < 2:
        raise ValueError(
            f"the model's site {CLUSTER_SITE!r} is not enumerated; declare it with infer={{'enumerate': 'parallel'}}"
        )
    n = x.shape[0]
    k = y_site["value"].shape[0]
    total = x.new_zeros(k, n)
    for site in tr.nodes.values():
        if site["type"] == "sample" and in_data_plate(site):
            total = total + site_log_prob(site)  # (K, 1) or (K, N) or (N,), broadcast to (K, N)
    return total.t()


def table_log_joint(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor) -> torch.Tensor:
    """The same (N, K) table, from the model's own ``log_joint`` where it states one and the guide samples nothing
    (no trace: Pyro does not see the parameters), else :func:`enumerated_log_joint`."""
    if guide_samples_nothing(guide) and states(model):
        return getattr(model, "__self__", model).log_joint(x)
    return enumerated_log_joint(model, guide, x)
