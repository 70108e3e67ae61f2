r"""Posterior draws of a mixture's parameters, relabelled, summarized and averaged into cluster probabilities.

A mixture's likelihood does not change when its clusters are permuted, so draws from its posterior (NUTS chains,
:mod:`mixzoo.inference.nuts`) may name the same cluster differently: across chains, and within one where clusters
overlap. Before anything is summarized each draw :math:`s` is matched to a reference partition :math:`R` (the fit's
responsibilities, (N, K)) by the permutation :math:`\sigma_s` that maximizes the agreement
:math:`\sum_n \sum_j R_{nj}\, p_s(y_n = \sigma_s(j) \mid x_n)`, solved as an assignment problem (the
Hungarian method), as in Stephens (2000, JRSS B 62, 795-809) with the fit as the fixed reference.

Relabelled, the draws give

* the **posterior predictive cluster probabilities** :math:`p(y_n = j \mid x_n, \text{data}) \approx
  \frac1S \sum_s p(y_n = \sigma_s(j) \mid x_n, \theta_s)`: confidences that carry the parameters' uncertainty,
  which ``predict``, ``evaluate`` and the metrics of a run fitted with ``--sampler nuts`` report;
* ArviZ data (:func:`summarize_draws`) with chain x draw of the model's natural quantities (``summary_quantities()``,
  each permuted along its leading cluster axis), so that :func:`arviz.summary` gives R-hat and the effective sample
  size, and the pointwise log-likelihood of the draws for :func:`arviz.loo`.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from ..inference.nuts import PosteriorSamples, log_joint_at
from .arviz_adapter import ArvizData, convergence, to_arviz

__all__ = ["RelabelledDraws", "relabel", "predictive_proba", "draw_quantities", "quantity_convergence", "summarize_draws", "save_draws", "load_draws", "DRAWS_FILE"]

DRAWS_FILE = "posterior.pt"
"""The file of a run directory that keeps its relabelled draws (``torch.load(weights_only=True)``)."""


@dataclass
class RelabelledDraws:
    """NUTS draws with the permutation that matches each to the fit's clusters.

    :param samples: the draws as sampled.
    :param perms: (chains, draws, K) integers: reference cluster ``j`` is cluster ``perms[c, s, j]`` of draw ``(c, s)``.
    """

    samples: PosteriorSamples
    perms: np.ndarray

    @property
    def switched(self) -> float:
        """Fraction of draws whose labels were permuted to match the reference."""
        k = self.perms.shape[-1]
        return float((self.perms != np.arange(k)).any(-1).mean())


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself where it lives on the CPU, as the draws do; else a copy moved there."""
    if all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()]):
        return model
    return copy.deepcopy(model).cpu()


def _draw_tables(model: nn.Module, samples: PosteriorSamples, x: torch.Tensor) -> Any:
    """``(c, s, table)`` for every draw: the (N, K) table :math:`\\log p(x_n, y_n = k \\mid \\theta_s)`, on the CPU."""
    model, x = _on_cpu(model), x.cpu()
    with torch.no_grad():
        for c in range(samples.chains):
            for s in range(samples.draws):
                yield c, s, log_joint_at(model, samples.draw(c, s), x).double()


def relabel(model: nn.Module, samples: PosteriorSamples, x: torch.Tensor, reference: np.ndarray) -> RelabelledDraws:
    """Match every draw to ``reference`` (N, K) cluster probabilities of ``x`` (module docstring)."""
    ref = torch.as_tensor(reference, dtype=torch.float64)
    perms = np.empty((samples.chains, samples.draws, ref.shape[1]), dtype=np.int64)
    for c, s, table in _draw_tables(model, samples, x):
        agreement = (ref.T @ torch.softmax(table, dim=-1)).numpy()  # (K ref, K draw)
        _, cols = linear_sum_assignment(-agreement)
        perms[c, s] = cols
    return RelabelledDraws(samples, perms)


def predictive_proba(model: nn.Module, draws: RelabelledDraws, x: torch.Tensor) -> np.ndarray:
    """(N, K) posterior predictive cluster probabilities of ``x``, averaged over the relabelled draws."""
    total = torch.zeros(x.shape[0], draws.perms.shape[-1], dtype=torch.float64)
    for c, s, table in _draw_tables(model, draws.samples, x):
        total += torch.softmax(table, dim=-1)[:, torch.as_tensor(draws.perms[c, s])]
    return (total / (draws.samples.chains * draws.samples.draws)).numpy()


class _Quantities(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        natural = getattr(self.model, "summary_quantities", None)
        if not callable(natural):
            return dict(self.model.named_parameters())
        return natural(x) if inspect.signature(natural).parameters else natural()


def draw_quantities(model: nn.Module, draws: RelabelledDraws, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Chain x draw of the model's natural quantities (its raw parameters where it names none), each permuted along
    its leading axis where that axis has one entry per cluster."""
    samples, k = draws.samples, draws.perms.shape[-1]
    model, x = _on_cpu(model), x.cpu()
    out: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        wrapper = _Quantities(model)
        for c in range(samples.chains):
            for s in range(samples.draws):
                values = functional_call(wrapper, {f"model.{n}": v for n, v in samples.draw(c, s).items()}, (x[:2],))
                for name, v in values.items():
                    arr = v.detach().cpu().double().numpy()
                    if arr.ndim and arr.shape[0] == k:
                        arr = arr[draws.perms[c, s]]
                    out.setdefault(name, []).append(arr)
    shape = (samples.chains, samples.draws)
    return {name: np.stack(v).reshape(*shape, *v[0].shape) for name, v in out.items()}


def _posterior_dims(quantities: dict[str, np.ndarray]) -> dict[str, list[str]]:
    return {
        f"posterior/{name}": ["chain", "draw"] + [f"{name}_dim_{i}" for i in range(v.ndim - 2)]
        for name, v in quantities.items()
    }


def quantity_convergence(quantities: dict[str, np.ndarray]) -> tuple[float, float]:
    """The largest R-hat and the smallest bulk ESS of chain x draw quantities (:func:`draw_quantities`), as
    :func:`arviz.summary` reports them (:func:`~mixzoo.analysis.arviz_adapter.convergence`)."""
    return convergence(to_arviz({"posterior": quantities}, _posterior_dims(quantities)))


def summarize_draws(
    model: nn.Module, draws: RelabelledDraws, x: torch.Tensor, proba: np.ndarray, *, max_entries: int = 1_000_000
) -> ArvizData:
    """ArviZ data of the relabelled draws: ``posterior`` (chain x draw of the natural quantities), ``sample_stats``
    (divergences per chain), ``cluster_posterior`` (the posterior predictive probabilities ``proba``),
    ``log_likelihood`` (pointwise :math:`\\log p(x_n \\mid \\theta_s)` of every chain's draws, thinned evenly so that
    draws x points stays within ``max_entries``) and ``observed_data``. Attributes: ``mixzoo_loglik_draws="nuts"``,
    chains, draws, ``mixzoo_r_hat_max`` and ``mixzoo_ess_min``."""
    samples = draws.samples
    model, x = _on_cpu(model), x.cpu()
    n, d = x.shape
    k = proba.shape[1]
    quantities = draw_quantities(model, draws, x)
    dims = _posterior_dims(quantities)
    thin = max(1, -(-samples.chains * samples.draws * n // max_entries))
    kept = list(range(0, samples.draws, thin))
    loglik = np.empty((samples.chains, len(kept), n))
    with torch.no_grad():
        for c in range(samples.chains):
            for i, s in enumerate(kept):
                table = log_joint_at(model, samples.draw(c, s), x)
                loglik[c, i] = torch.logsumexp(table, dim=-1).double().numpy()
    divergent = np.zeros((samples.chains, samples.draws), dtype=bool)
    for c, count in enumerate(samples.divergences):
        divergent[c, :count] = True  # Pyro reports the count; its positions are not kept
    groups = {
        "posterior": quantities,
        "sample_stats": {"diverging": divergent},
        "cluster_posterior": {"responsibility": proba[None, None]},
        "log_likelihood": {"x": loglik},
        "observed_data": {"x": x.cpu().double().numpy()},
    }
    dims.update({
        "sample_stats/diverging": ["chain", "draw"],
        "cluster_posterior/responsibility": ["chain", "draw", "obs", "cluster"],
        "log_likelihood/x": ["chain", "draw", "obs"],
        "observed_data/x": ["obs", "feature"],
    })  # fmt: skip
    coords = {"obs": np.arange(n), "cluster": np.arange(k), "feature": np.arange(d)}
    r_hat, ess = quantity_convergence(quantities)
    attrs = {"mixzoo_loglik_draws": "nuts", "mixzoo_chains": samples.chains, "mixzoo_n_draws": samples.draws,
             "mixzoo_loglik_thin": thin, "mixzoo_r_hat_max": r_hat, "mixzoo_ess_min": ess,
             "mixzoo_relabelled_fraction": draws.switched}  # fmt: skip
    return to_arviz(groups, dims, coords, attrs)


def save_draws(path: str | Path, draws: RelabelledDraws) -> None:
    """Write the draws and their permutations (plain tensors) to ``path``."""
    tensors = {f"param.{name}": v for name, v in draws.samples.params.items()}
    torch.save({**tensors, "perms": torch.from_numpy(draws.perms)}, Path(path))


def load_draws(path: str | Path) -> RelabelledDraws:
    """Read what :func:`save_draws` wrote (``torch.load(weights_only=True)``)."""
    state = torch.load(Path(path), weights_only=True)
    params = {name[len("param.") :]: v for name, v in state.items() if name.startswith("param.")}
    return RelabelledDraws(PosteriorSamples(params), state["perms"].numpy())
