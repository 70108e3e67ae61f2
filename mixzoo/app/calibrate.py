"""The temperature of a fit's reported probabilities, for ``mixzoo fit`` and the estimator alike.

:mod:`mixzoo.analysis.calibration` says what the replicate temperature is and why; here the refit is made with the
run's own plan, seeds and loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.calibration import Calibration, align_labels, bootstrap_indices, fit_temperature
from ..analysis.posterior import cluster_log_proba, has_exact_likelihood
from ..data.mapped import source
from ..data.rows import subsample_rows, take_rows
from .config import FitConfig
from .restarts import fit_restarts

__all__ = ["calibrate", "exact_posterior", "REPLICATE_SEED", "TEMPERATURE_POINTS"]

REPLICATE_SEED = 7919
"""Added to a run's seed for its calibrating refit, so that the refit is none of the run's own restarts."""

TEMPERATURE_POINTS = 200_000
"""Points whose labels by the fit and by the refit fit the temperature at most: one number is estimated, and on
millions of points the log probabilities of all would cost memory for no gain."""


def exact_posterior(c: FitConfig, model: nn.Module, guide: nn.Module, x: torch.Tensor) -> bool:
    """Whether the reported probabilities are the model's exact posterior given its parameters: a normalized model
    whose only per-point latent is the enumerated ``y``, with the empty guide or the posterior guide, and no E-step of
    its own (the neural mixture's batch-normalized scores)."""
    caps, spec = c.family.capabilities, c.guide_spec
    return (
        caps.normalized
        and not caps.states_posterior
        and (not spec.samples_y or spec.held_fixed)
        and has_exact_likelihood(model, guide, x[:2].to(next(iter(model.parameters()), x).device))
    )


def calibrate(
    c: FitConfig, plan: Any, model: nn.Module, guide: nn.Module, x: torch.Tensor, *, make_loss: Callable[[], Any],
    seed: int, revealed: np.ndarray | None = None, distributed: bool = False,
) -> Calibration:  # fmt: skip
    """The temperature of the fit's probabilities (:mod:`mixzoo.analysis.calibration`): fitted to the labels of one
    refit on a bootstrap replicate drawn with ``seed`` (the refit's restarts take ``seed``, ``seed + 1``, ... as the
    fit's took theirs, with a fresh loss from ``make_loss``), compared with the fit on every point, or on a seeded
    subsample of :data:`TEMPERATURE_POINTS` of them on larger data; or to the revealed labels (``revealed``: the class
    of each revealed point, -1 elsewhere)."""
    if c.calibration == "none":
        return Calibration()
    device = next(iter(model.parameters()), x).device
    floor = 1.0 if exact_posterior(c, model, guide, x) else None
    if revealed is not None:  # the clusters of a semi-supervised fit are the classes
        known = np.flatnonzero(revealed >= 0)
        log_proba = cluster_log_proba(model, guide, take_rows(x, known).to(device)).cpu().double().numpy()
        t = fit_temperature(log_proba, revealed[known], floor)
        return Calibration(temperature=t, method="labels", floor=floor, points=int(len(known)))
    rows = bootstrap_indices(len(x), seed)
    if source(x) is not None:  # from a memory-mapped file, in the file's order: read forward, kept in a file
        rows = np.sort(rows)
    x_rep = take_rows(x, rows)
    once = replace(c, checkpoint_every=None)
    _, m_rep, g_rep, _ = fit_restarts(
        once, plan, x_rep, [seed + i for i in range(c.n_init or 1)], loss=make_loss(), x_train=x_rep, y=None,
        progress=False, state_dir=None, resume=False, distributed=distributed, describe=None,
    )  # fmt: skip
    scored = take_rows(x, subsample_rows(len(x), TEMPERATURE_POINTS, seed)).to(device)  # all rows up to the limit
    log_proba = cluster_log_proba(model, guide, scored).cpu().double().numpy()
    other = cluster_log_proba(m_rep, g_rep, scored).argmax(dim=-1).cpu().numpy()
    reference = log_proba.argmax(axis=1)
    aligned = align_labels(reference, other, log_proba.shape[1])
    t = fit_temperature(log_proba, aligned, floor)
    return Calibration(temperature=t, method="replicate", floor=floor, points=len(rows), seed=seed,
                       disagreement=float(np.mean(aligned != reference)))  # fmt: skip
