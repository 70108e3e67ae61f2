"""Build, initialise and train a configured pair once per seed, keeping the best restart.

This is what ``mixzoo fit``, the estimator and ``select`` share: the family builds the model and the guide's
registration its guide under the restart's seed, the plan (:mod:`mixzoo.app.planning`) gives the data-dependent
start, schedules and step (one SVI step, closed-form EM, the two-fold step), and :func:`mixzoo.fit` trains it. The
restart with the lowest final loss on all of the data is kept, or the lowest ``restart_score`` of a plan that states
one (the neural mixture: the most consistent clusters under augmentation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pyro.infer import ELBO
from torch import nn

from ..data.rows import START_POINTS, subsample_rows, take_rows
from ..errors import MixzooInputError
from ..models.family import Plan
from ..param_store import isolated_param_store
from ..training.loop import FitResult, evaluate_loss, fit
from ..training.persistence import atomic_save, safe_load
from .config import FitConfig

__all__ = ["fit_restarts", "build_pair", "load_pair", "TRAIN_STATE", "BEST_RESTART"]

TRAIN_STATE = "train_state.pt"
BEST_RESTART = "best_restart.pt"

Best = tuple[float, nn.Module, nn.Module, FitResult]


def build_pair(config: FitConfig) -> tuple[nn.Module, nn.Module]:
    """Build a fresh (model, guide) for a planned config (with known ``dim`` and ``clusters``): the family builds the
    model, the guide's registration builds the guide for it."""
    assert config.dim is not None and config.clusters is not None and config.guide is not None
    options = config.family_options()
    model = config.family.build(config.dim, config.clusters, options)
    guide = config.guide_spec.build(model, config.clusters, config.data_shape(), config.guide_opts(), options)
    return model, guide


def load_pair(model: nn.Module, guide: nn.Module, state: dict[str, Any], c: FitConfig) -> None:
    """Load saved state dicts into a freshly built pair; a checkpoint of another model or K is a clear error."""
    for name, module in (("model", model), ("guide", guide)):
        try:
            module.load_state_dict(state[name])
        except (RuntimeError, KeyError) as err:
            detail = str(err).strip().splitlines()
            raise MixzooInputError(
                f"the saved {name} does not fit a {c.model!r} model with K={c.clusters}, D={c.dim}, guide {c.guide!r} "
                f"({detail[1].strip() if len(detail) > 1 else detail[0] if detail else type(err).__name__}); "
                "was the checkpoint written by another model or number of clusters?"
            ) from None


def _history(result: FitResult) -> dict[str, Any]:
    return {"losses": result.losses, "val_losses": result.val_losses, "epochs": result.epochs,
            "device": result.device, "retries": result.retries}  # fmt: skip


def _load_best(c: FitConfig, best_file: Path) -> tuple[int, Best, float, list[dict[str, Any]]]:
    saved = safe_load(best_file, "restart record")
    model, guide = build_pair(c)
    load_pair(model, guide, saved, c)
    h = saved["history"]
    result = FitResult(losses=list(h["losses"]), val_losses=list(h["val_losses"]), epochs=int(h["epochs"]),
                       device=str(h["device"]), retries=int(h["retries"]))  # fmt: skip
    best = (float(saved["final"]), model.to(c.device), guide.to(c.device), result)
    trials = [dict(t) for t in saved.get("trials", [])]
    return int(saved["restart"]), best, float(saved.get("score", saved["final"])), trials


def _save_best(best: Best, restart: int, best_file: Path, score: float, trials: list[dict[str, Any]]) -> None:
    final, model, guide, result = best
    atomic_save(
        {
            "restart": restart,
            "final": final,
            "score": score,
            "trials": trials,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "guide": {k: v.detach().cpu() for k, v in guide.state_dict().items()},
            "history": _history(result),
        },
        best_file,
    )


def _state_restart(path: Path | None) -> int | None:
    """The restart index a saved training state belongs to, or ``None`` when there is none."""
    if path is None or not path.is_file():
        return None
    return int(safe_load(path, "training state").get("meta", {}).get("restart", -1))


def train_one(
    c: FitConfig, plan: Plan, x: torch.Tensor, seed: int, *, loss: ELBO, x_train: torch.Tensor, y: Any = None,
    **fit_kwargs: Any,
) -> tuple[nn.Module, nn.Module, FitResult]:
    """One restart: build the pair under ``seed``, start it on the data (the plan's start, on a seeded subsample of
    :data:`~mixzoo.data.rows.START_POINTS` rows where there are more), train it with the plan's and the guide's
    schedules and the step the plan or the algorithm needs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, guide = build_pair(c)
    model.to(c.device)
    guide.to(c.device)
    x_start = take_rows(x, subsample_rows(len(x), START_POINTS, seed)).to(c.device)
    plan.start(model, guide, x_start, seed, loss)
    c.guide_spec.start(guide, model, x_start, seed, c.guide_opts())
    del x_start
    schedules = [*plan.schedules(model, guide), *c.guide_spec.schedules(guide, c.guide_opts())]
    step = plan.step or c.algorithm.step(c.family.capabilities)
    result = fit(
        model, guide, x_train, y=y, loss=loss, step=step, schedules=schedules, epochs=c.epochs, batch_size=c.batch_size,
        lr=c.lr or 1e-3, guide_lr=c.guide_spec.learning_rate(c.guide_opts(), c.lr or 1e-3), lr_decay=c.lr_decay, seed=seed, device=c.device, retries=c.retries, tol=c.tol or None,
        **fit_kwargs,
    )  # fmt: skip
    return model, guide, result


def _restart_score(plan: Plan, model: nn.Module, guide: nn.Module, x: torch.Tensor, final: float) -> float:
    """The plan's ``restart_score`` of a finished restart, or its final loss (also when it diverged)."""
    if plan.restart_score is None or not math.isfinite(final):
        return final
    with torch.no_grad():
        score = plan.restart_score(model, guide, x)
    return final if score is None else float(score)


def fit_restarts(
    c: FitConfig,
    plan: Plan,
    x: torch.Tensor,
    seeds: Sequence[int],
    *,
    loss: ELBO,
    x_train: torch.Tensor | None = None,
    y: Any = None,
    progress: bool = False,
    state_dir: Path | None = None,
    resume: bool = False,
    distributed: bool = False,
    describe: Callable[[nn.Module, nn.Module], dict[str, Any]] | None = None,
) -> Best:
    """Build, initialise and train the pair of a planned config once per seed; keep the lowest final loss
    (or the plan's ``restart_score``).

    Each restart is reproducible from its seed alone. ``x_train``/``y`` (the semi-supervised stream)
    default to ``x`` without labels; the final loss is always measured on ``x``.

    The kept result's ``restarts`` lists every restart (``seed``, ``final_loss``, ``score``, ``kept``, and
    what ``describe(model, guide)`` adds, e.g. its ACC), so a run shows what its choice rested on.

    With ``state_dir`` and ``c.checkpoint_every`` the run is resumable: the restart in progress keeps
    its training state in ``train_state.pt`` and the best finished restart is kept in
    ``best_restart.pt``; ``resume=True`` continues from them.
    """
    x_train = x if x_train is None else x_train
    resumable = state_dir is not None and c.checkpoint_every is not None
    state_file = best_file = None
    best: Best | None = None
    best_score = math.inf
    trials: list[dict[str, Any]] = []
    done = -1
    if resumable:
        state_file, best_file = state_dir / TRAIN_STATE, state_dir / BEST_RESTART  # type: ignore[operator]
        if resume and best_file.is_file():
            done, best, best_score, trials = _load_best(c, best_file)
    main = not distributed or torch.distributed.get_rank() == 0
    for i, seed in enumerate(seeds):
        if i <= done:
            continue
        saving = {"checkpoint": state_file, "checkpoint_every": c.checkpoint_every, "checkpoint_meta": {"restart": i},
                  "resume": resume and _state_restart(state_file) == i} if resumable else {}  # fmt: skip
        model, guide, result = train_one(
            c, plan, x, seed, loss=loss, x_train=x_train, y=y, progress=progress, distributed=distributed, **saving
        )
        with torch.no_grad(), isolated_param_store():
            final = evaluate_loss(loss, model, guide, x.to(result.device))
        score = _restart_score(plan, model, guide, x.to(result.device), final)
        trials.append({"seed": seed, "final_loss": final, "score": score, **(describe(model, guide) if describe else {})})
        if best is None or (math.isfinite(score) and not score >= best_score):
            best, best_score = (final, model, guide, result), score
            for t in trials:
                t["kept"] = t is trials[-1]
        else:
            trials[-1]["kept"] = False
        if best_file is not None and main:
            _save_best(best, i, best_file, best_score, trials)
    assert best is not None
    best[3].restarts = trials
    return best
