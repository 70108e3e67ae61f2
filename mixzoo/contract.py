"""The model/guide contract: the names every pair shares, and the trace filters built on them.

A mixzoo model and guide are Pyro programs ``fn(x, y=None, subsample=None)``:

* the discrete cluster site is named :data:`CLUSTER_SITE` (``"y"``) and can be enumerated
  (``infer={"enumerate": "parallel"}``); passing ``y`` observes it;
* per-point sites live in the plate :data:`DATA_PLATE` (``"data"``), which receives the
  minibatch indices as ``subsample`` and scales each minibatch by :math:`N/B`.

Inference algorithms, the posterior, the summary and the checks read traces only through
the helpers of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from pyro.poutine.subsample_messenger import _Subsample

__all__ = [
    "CLUSTER_SITE",
    "DATA_PLATE",
    "is_subsample",
    "in_data_plate",
    "is_latent",
    "latent_sites",
    "cluster_site",
    "site_log_prob",
]

CLUSTER_SITE = "y"
"""Name of the discrete cluster site."""

DATA_PLATE = "data"
"""Name of the plate over data points."""


def site_log_prob(site: dict[str, Any]) -> torch.Tensor:
    """The site's log density scaled and masked by its plates, as :meth:`Trace.compute_log_prob` stores it, without
    the per-site sums and their checks; computed once and kept in the site (``log_prob`` and ``unscaled_log_prob``)."""
    if "log_prob" not in site:
        log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
        site["unscaled_log_prob"] = log_p
        site["log_prob"] = scale_and_mask(log_p, site["scale"], site["mask"])
    return site["log_prob"]


def is_subsample(site: dict[str, Any]) -> bool:
    """Whether ``site`` is the index sample a subsampled plate records (not a random variable)."""
    return isinstance(site.get("fn"), _Subsample)


def in_data_plate(site: dict[str, Any], plate: str = DATA_PLATE) -> bool:
    """Whether ``site`` sits inside the plate over data points."""
    return any(f.name == plate for f in site.get("cond_indep_stack", ()))


def is_latent(site: dict[str, Any]) -> bool:
    """A sample site that is neither observed nor a plate's index sample."""
    return site["type"] == "sample" and not site["is_observed"] and not is_subsample(site)


def latent_sites(trace: Trace) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, site)`` of every latent sample site of ``trace``, in trace order."""
    return ((name, site) for name, site in trace.nodes.items() if is_latent(site))


def cluster_site(trace: Trace) -> dict[str, Any] | None:
    """The latent cluster site of ``trace`` (sampled, not observed), or ``None``."""
    site = trace.nodes.get(CLUSTER_SITE)
    return site if site is not None and is_latent(site) else None
