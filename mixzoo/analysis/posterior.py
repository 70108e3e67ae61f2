r"""Cluster posteriors and pointwise likelihoods of any model/guide pair that follows
the mixzoo contract.

Where the guide does not sample ``"y"``, the model's own enumeration gives the exact
posterior: the model is traced with ``"y"`` enumerated in parallel and every site in
the ``"data"`` plate contributes its log density, giving the log joint
:math:`\log p(x_n, y=k)` as an (N, K) tensor, so that

.. math:: p(y=k \mid x_n) = \operatorname{softmax}_k \log p(x_n, y=k),
   \qquad \log p(x_n) = \operatorname{logsumexp}_k \log p(x_n, y=k).

Where the guide samples ``"y"`` (an amortized encoder), the cluster probabilities are
the guide's :math:`q(y \mid x)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace

from ..contract import CLUSTER_SITE, cluster_site, in_data_plate, latent_sites
from ..data.mapped import Reader
from ..data.validation import check_data
from ..errors import MixzooInputError
from ..guides.empty import EmptyGuide
from ..inference.enumeration import table_log_joint
from ..param_store import StateDict, isolated_param_store

__all__ = [
    "has_exact_likelihood",
    "cluster_log_joint",
    "cluster_log_proba",
    "cluster_proba",
    "log_likelihood",
]


def as_input(x: Any, *modules: Any) -> torch.Tensor:
    """Data as :func:`mixzoo.fit` takes them (NumPy, pandas, lists or tensors), checked, as a float tensor on
    the device of the modules' parameters.

    The first module is the model; where it states its feature count as an integer ``dim``, data with
    another number of features are refused.

    :raises MixzooInputError: on data :func:`~mixzoo.data.validation.check_data` refuses.
    """
    dim = getattr(getattr(modules[0], "__self__", modules[0]), "dim", None) if modules else None
    usable = isinstance(dim, (int, np.integer)) and not isinstance(dim, bool)
    t = check_data(x, dim=int(dim) if usable else None)
    for m in modules:
        params = list(getattr(getattr(m, "__self__", m), "parameters", lambda: [])())
        if params:
            return t.to(params[0].device)
    return t


def _guide_trace(guide: Callable[..., Any], x: torch.Tensor) -> Trace:
    return poutine.trace(guide).get_trace(x)


def _of_globals(guide: Callable[..., Any]) -> Callable[..., Any]:
    """The guide whose global latents the model is replayed against: a guide held fixed at the model's posterior (the
    E-step) has none of its own, only a function of the model, so the empty guide stands for it."""
    held = getattr(type(getattr(guide, "__self__", guide)), "held_fixed", False)
    return EmptyGuide() if held else guide


def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn`` on ``x`` a chunk of rows at a time, the pages of a memory-mapped ``x`` given back as they are read."""
    reader, out = Reader(x), None
    for i in range(0, x.shape[0], batch_size):
        part = fn(x[i : i + batch_size])
        if out is None:  # one result array, filled in place: no list of chunks beside their concatenation
            out = part.new_empty((x.shape[0], *part.shape[1:]))
        out[i : i + len(part)] = part
        reader.read(len(part), contiguous=True)
    reader.done()
    return out if out is not None else fn(x)


def cluster_log_joint(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: Any,
    *,
    param_state: StateDict | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """The (N, K) log joint :math:`\\log p(x_n, y=k)` by enumerating ``"y"`` in the model."""
    x = as_input(x, model, guide)
    source = _of_globals(guide)
    with torch.no_grad(), isolated_param_store(param_state):
        return _in_chunks(lambda xb: table_log_joint(model, source, xb), x, batch_size)


def cluster_log_proba(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: Any,
    *,
    param_state: StateDict | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """(N, K) log cluster probabilities: exact where the model enumerates ``"y"``, else log q(y|x)."""
    x = as_input(x, model, guide)
    with torch.no_grad(), isolated_param_store(param_state):
        return _in_chunks(lambda xb: _log_proba(model, guide, xb), x, batch_size)


def _log_proba(model: Callable[..., Any], guide: Callable[..., Any], xb: torch.Tensor) -> torch.Tensor:
    guide_tr = _guide_trace(guide, xb)
    site = cluster_site(guide_tr)
    if site is not None:
        return torch.log_softmax(site["fn"].logits, dim=-1).reshape(xb.shape[0], -1)
    return torch.log_softmax(table_log_joint(model, guide, xb), dim=-1)


def cluster_proba(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: Any,
    *,
    temperature: float = 1.0,
    param_state: StateDict | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    r"""(N, K) cluster probabilities; see :func:`cluster_log_proba`. Computed a chunk of points at a time, so that
    millions of points hold the result and one chunk's temporaries, not several (N, K) arrays.

    :param temperature: :math:`T`: the probabilities :math:`\operatorname{softmax}(\log p / T)`, as a run reports
        them (its ``calibration.json``; :mod:`mixzoo.analysis.calibration`); 1 gives the model's own.
    :raises MixzooInputError: for points whose probabilities cannot be computed (every cluster's
        density underflows or overflows, e.g. data far outside the training range), instead of NaN rows.
    """

    def one(xb: torch.Tensor) -> torch.Tensor:
        log_proba = _log_proba(model, guide, xb)
        if temperature != 1.0:
            log_proba = torch.log_softmax(log_proba / temperature, dim=-1)
        return log_proba.exp()

    x = as_input(x, model, guide)
    with torch.no_grad(), isolated_param_store(param_state):
        proba = _in_chunks(one, x, batch_size)
    bad = ~torch.isfinite(proba.sum(dim=-1))  # a NaN or an infinity in a row makes its sum one (no (N, K) mask)
    if bad.any():
        rows = torch.nonzero(bad).flatten()
        raise MixzooInputError(
            f"the cluster probabilities of {len(rows)} point(s) (first: row {int(rows[0])}) are not finite: every "
            "cluster's density under- or overflows there. Scale the data like the training data, or lower the "
            "learning rate if training diverged."
        )
    return proba


def has_exact_likelihood(
    model: Callable[..., Any], guide: Callable[..., Any], x: Any, *, param_state: StateDict | None = None
) -> bool:
    """Whether the model's only per-point latent is an enumerated ``"y"``, so that :func:`log_likelihood`
    is exact (given the guide's values of any global latents).

    :param param_state: param-store state for parameters declared with bare ``pyro.param``."""
    x = as_input(x, model, guide)
    with torch.no_grad(), isolated_param_store(param_state):
        guide_tr = _guide_trace(_of_globals(guide), x[:2])
        guide_tr.nodes.pop(CLUSTER_SITE, None)
        tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x[:2])
    for name, site in latent_sites(tr):
        if not in_data_plate(site):  # global latents are replayed from the guide: the sum over y stays exact given them
            continue
        if name != CLUSTER_SITE or site["infer"].get("enumerate") != "parallel":
            return False
    return True


def log_likelihood(
    model: Callable[..., Any], guide: Callable[..., Any], x: Any, num_samples: int = 100, **kwargs: Any
) -> torch.Tensor:
    """(N,) marginal log-likelihood :math:`\\log p(x_n)`: exact by enumeration when the model's only
    latent is ``"y"``; otherwise an importance-sampling estimate with the guide as proposal
    (``num_samples`` samples; see :func:`mixzoo.inference.vimco.importance_log_likelihood`)."""
    x = as_input(x, model, guide)
    param_state = kwargs.get("param_state")
    if has_exact_likelihood(model, guide, x, param_state=param_state):
        return torch.logsumexp(cluster_log_joint(model, guide, x, **kwargs), dim=-1)
    from ..inference.vimco import importance_log_likelihood

    if param_state is None:  # the store as it is
        return importance_log_likelihood(model, guide, x, num_samples=num_samples)
    with isolated_param_store(param_state):
        return importance_log_likelihood(model, guide, x, num_samples=num_samples)
