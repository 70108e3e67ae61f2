"""``--sampler nuts`` after a fit: the posterior draws, relabelled to the fit's clusters, and what a run records of
them. :func:`sample_fit` serves ``mixzoo fit`` and the estimator alike."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

from ..analysis.draws import RelabelledDraws, draw_quantities, quantity_convergence, relabel
from ..analysis.posterior import cluster_proba
from ..errors import MixzooInputError
from ..inference.nuts import nuts_refusal, sample_posterior
from ..training.threads import torch_threads
from .config import FitConfig

__all__ = ["sample_fit", "check_sampleable", "R_HAT_OK"]

R_HAT_OK = 1.05
"""Largest R-hat of a run's NUTS draws that passes without a warning."""


def check_sampleable(c: FitConfig) -> None:
    """Refuse ``--sampler nuts`` for a planned config whose model NUTS cannot sample (too many parameter entries for
    these data), before any training: the model is built, not trained, to count them."""
    if not c.sampler:
        return
    model = c.family.build(c.dim, c.clusters, c.family_options())  # type: ignore[arg-type]
    why = nuts_refusal(model)
    if why is not None:
        raise MixzooInputError(f"--sampler nuts cannot apply here: {why}.")


def sample_fit(
    c: FitConfig, model: nn.Module, guide: nn.Module, x: torch.Tensor, threads: int, report: bool
) -> tuple[RelabelledDraws, dict[str, Any]]:
    """``--sampler nuts``: the posterior draws from the fit, relabelled to its clusters, and what the record says of
    them (R-hat, ESS, divergences, seconds)."""
    if report:
        print(f"mixzoo: sampling the posterior with NUTS: {c.chains} chains, {c.warmup} warm-up steps and {c.draws} "
              "draws each", file=sys.stderr, flush=True)  # fmt: skip
    start = time.perf_counter()
    xc = x.cpu()
    try:
        samples = sample_posterior(model, xc, chains=c.chains, warmup=c.warmup, draws=c.draws, seed=c.seed)  # type: ignore[arg-type]
    except ValueError as err:
        raise MixzooInputError(f"--sampler nuts cannot apply here: {err}.") from None
    reference = cluster_proba(model, guide, x).cpu().double().numpy()
    with torch_threads(threads):
        posterior = relabel(model, samples, xc, reference)
        quantities = draw_quantities(model, posterior, xc)
    r_hat, ess = quantity_convergence(quantities)
    if report and not r_hat <= R_HAT_OK:
        print(f"mixzoo: warning: the NUTS chains disagree (largest R-hat {r_hat:.3f} > {R_HAT_OK}); more --warmup and "
              "--draws, or other --seed, may let them mix", file=sys.stderr, flush=True)  # fmt: skip
    return posterior, {
        "sampler": c.sampler, "chains": c.chains, "warmup": c.warmup, "draws": c.draws, "r_hat_max": round(r_hat, 4),
        "ess_min": round(ess, 1), "divergences": int(sum(samples.divergences)),
        "relabelled_fraction": round(posterior.switched, 4), "nuts_rounds": samples.rounds,
        "sampling_seconds": round(time.perf_counter() - start, 3),
    }  # fmt: skip
