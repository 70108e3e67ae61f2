"""Checks that a loss can serve a model/guide pair, run on one small batch before training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, TraceEnum_ELBO

from ..contract import CLUSTER_SITE, latent_sites
from ..errors import MixzooInputError
from ..param_store import isolated_param_store

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
    _check_parameter_names(model, guide, x, y)
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


def _own_parameters(program: Callable[..., Any], x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The parameters a program reads from Pyro's store, by name, traced alone in a store of its own."""
    with poutine.block(), isolated_param_store(), poutine.trace(param_only=True) as capture:
        poutine.trace(program).get_trace(x, y)
    return {name: site["value"] for name, site in capture.trace.nodes.items() if site["type"] == "param"}


def _unconstrained(value: torch.Tensor) -> torch.Tensor:
    """The tensor Pyro's store holds for a parameter (a constrained parameter's unconstrained value)."""
    return value.unconstrained() if hasattr(value, "unconstrained") else value


def _check_parameter_names(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor, y: torch.Tensor | None) -> None:
    """Refuse a model and a guide that give different parameters the same name in Pyro's store: there they would be
    one parameter (Pyro names a top-level module's parameters by their attribute paths alone, so a model and a guide
    that both hold a ``net`` collide)."""
    ours, theirs = _own_parameters(model, x, y), _own_parameters(guide, x, y)
    shared = sorted(n for n in ours.keys() & theirs.keys() if _unconstrained(ours[n]) is not _unconstrained(theirs[n]))
    if shared:
        raise MixzooInputError(
            f"the model and the guide both name a parameter {shared[0]!r} in Pyro's parameter store, where they would "
            "be one; give the guide module a name of its own, e.g. PyroModule.__init__(self, name='guide')."
        )
