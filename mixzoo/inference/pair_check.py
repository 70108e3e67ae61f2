"""Checks that a loss can serve a model/guide pair, run on one small batch before training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, TraceEnum_ELBO

from ..contract import CLUSTER_SITE, latent_sites
from ..errors import MixzooInputError

__all__ = ["check_pair"]


def check_pair(
    model: Callable[..., Any], guide: Callable[..., Any], loss: ELBO, x: torch.Tensor, y: torch.Tensor | None
) -> None:
    """Raise :class:`MixzooInputError` if ``loss`` cannot train ``model`` with ``guide``.

    A latent site of the model that the guide does not sample must be summed out by
    enumeration, which only :class:`~pyro.infer.TraceEnum_ELBO` (and losses that say
    so through ``enumerates_model = True``) can do; any other loss would silently
    sample it from the prior. Losses may add their own checks with a
    ``check_pair(model_trace, guide_trace)`` method.
    """
    if not isinstance(loss, ELBO):
        raise MixzooInputError(f"loss must be a pyro.infer.ELBO, got {type(loss).__name__}.")
    with poutine.block():
        guide_tr = poutine.trace(guide).get_trace(x, y)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, y)
    if CLUSTER_SITE not in model_tr.nodes or model_tr.nodes[CLUSTER_SITE]["type"] != "sample":
        raise MixzooInputError(
            f"the model has no sample site {CLUSTER_SITE!r}: a mixzoo model declares its cluster as "
            f"pyro.sample({CLUSTER_SITE!r}, dist.Categorical(...), infer={{'enumerate': 'parallel'}}) inside "
            "pyro.plate('data', len(x), subsample=subsample)."
        )
    enumerates = isinstance(loss, TraceEnum_ELBO) or getattr(loss, "enumerates_model", False)
    for name, site in latent_sites(model_tr):
        if name in guide_tr.nodes:
            continue
        if site["infer"].get("enumerate") and not enumerates:
            raise MixzooInputError(
                f"loss {type(loss).__name__} cannot sum out the model's enumerated site {name!r}; "
                "use TraceEnum_ELBO (--loss trace-enum) or a guide that samples it."
            )
        if not site["infer"].get("enumerate"):
            raise MixzooInputError(
                f"the model's latent site {name!r} is neither sampled by the guide nor enumerated; "
                "add it to the guide or mark it infer={'enumerate': 'parallel'}."
            )
    extra = getattr(loss, "check_pair", None)
    if callable(extra):
        extra(model_tr, guide_tr)
