"""The fit and evaluate jobs behind the CLI: names -> data, model, guide, loss -> training -> metrics -> run directory."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyro.infer import ELBO
from torch import nn

from .checkpoint import CONFIG, load_checkpoint, prepare_run_dir, save_checkpoint, write_json
from .data import Dataset, load_dataset
from .errors import MixzooInputError
from .inference import make_loss
from .labels import oversample_labelled, reveal_labels
from .metrics import clustering_report
from .models import get_spec
from .params import isolated_param_store
from .posterior import cluster_proba, has_exact_likelihood
from .train import FitResult, evaluate_loss, fit
from .training_state import atomic_save, safe_load
from .transfer import transfer_split
from .validation import check_data, check_n_clusters

__all__ = ["FitConfig", "run_fit", "run_evaluate", "load_run", "build_pair", "load_pair", "config_from_json"]

TRAIN_STATE = "train_state.pt"
BEST_RESTART = "best_restart.pt"


def config_from_json(raw: Any, where: str | Path) -> FitConfig:
    """A :class:`FitConfig` from a run's ``config.json``; unknown or missing keys are a clear error."""
    known = set(FitConfig.__dataclass_fields__)
    if not isinstance(raw, dict) or not set(raw) <= known:
        extra = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise MixzooInputError(f"{str(where)!r} has a config.json mixzoo cannot read (unknown entries: {extra}).")
    return FitConfig(**raw)


PARTICLE_LOSSES = ("vimco", "trace-enum", "trace-graph", "trace")
"""Losses that take ``num_particles`` (``--particles``)."""


@dataclass
class FitConfig:
    """Everything that defines a CLI fit; saved as the run's ``config.json``."""

    model: str = "gmm"
    data: str = "digits"
    guide: str | None = None
    loss: str | None = None
    clusters: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_decay: float | None = None
    pca: int | None = None
    scale: bool = False
    dequantize: bool = False
    """Images: integer intensities v become (v + U[0, 1)) / levels, seeded (the 004 paper's preprocessing)."""
    subsample: int | None = None
    n_init: int | None = None
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    pretrain_classes: str | None = None
    """Deep transfer (000 paper): train a classifier on these classes (e.g. "0,1,2,3,4"), cluster the
    others on its last hidden layer; with the NCE loss its training data are the noise."""
    classifier_epochs: int = 5
    labels: int | None = None
    """Reveal this many true labels (balanced over classes, seeded) for semi-supervised training."""
    dim: int | None = None
    checkpoint_every: int | None = None
    """Write a resumable training state into the run directory every this many epochs."""
    retries: int = 0
    """Retry a diverged epoch with half the learning rate at most this many times."""
    particles: int | None = None
    """Samples per step of the sampling losses (vimco, trace-enum, trace-graph, trace); the loss's own default
    when ``None`` (VIMCO: 5; the 004 paper uses 15)."""

    def loss_options(self) -> dict[str, Any]:
        """Keyword options of :func:`~mixzoo.inference.make_loss` that the config sets."""
        return {} if self.particles is None else {"num_particles": self.particles}

    def resolved(self) -> FitConfig:
        """Fill the model family's defaults and check the names, before any data is read."""
        spec = get_spec(self.model)
        c = FitConfig(**asdict(self))
        c.guide = c.guide or spec.default_guide
        c.loss = c.loss or spec.default_loss
        if c.guide not in spec.guides:
            raise MixzooInputError(
                f"model {c.model!r} has no guide {c.guide!r}; choose one of: {', '.join(spec.guides)}."
            )
        if c.loss not in spec.losses:
            raise MixzooInputError(
                f"model {c.model!r} cannot be trained with loss {c.loss!r}; use one of: {', '.join(spec.losses)}."
            )
        if c.particles is not None:
            if isinstance(c.particles, bool) or not isinstance(c.particles, int) or c.particles < 1:
                raise MixzooInputError(f"--particles must be a positive integer, got {c.particles!r}.")
            if c.loss not in PARTICLE_LOSSES:
                raise MixzooInputError(
                    f"--particles applies to the losses {', '.join(PARTICLE_LOSSES)}; loss {c.loss!r} draws no particles."
                )
        make_loss(c.loss, **c.loss_options())  # unknown loss names and too few VIMCO particles fail here
        unknown = sorted(set(c.options) - set(spec.options))
        if unknown:
            raise MixzooInputError(
                f"option(s) {', '.join(unknown)} do not apply to model {c.model!r}; its options are: {', '.join(spec.options)}."
            )
        c.options = {**spec.options, **c.options}
        spec.check_options(c.options)
        for name, value in spec.defaults(c.options).items():
            if getattr(c, name) is None:
                setattr(c, name, value)
        if not isinstance(c.retries, int) or c.retries < 0:
            raise MixzooInputError(f"--retries must be a non-negative integer, got {c.retries!r}.")
        if c.n_init < 1:
            raise MixzooInputError(f"--n-init must be at least 1, got {c.n_init}.")
        if c.clusters is not None:
            check_n_clusters(c.clusters)
        return c


def build_pair(config: FitConfig) -> tuple[nn.Module, nn.Module]:
    """Build a fresh (model, guide) for a resolved config with known ``dim`` and ``clusters``."""
    assert config.dim is not None and config.clusters is not None and config.guide is not None
    return get_spec(config.model).build(config.dim, config.clusters, config.guide, config.options)


def _load_data(config: FitConfig) -> tuple[Dataset, dict[str, Any]]:
    """The data set of a config and the loss options it implies (the transfer noise)."""
    data = load_dataset(
        config.data,
        data_dir=config.data_dir,
        scale=config.scale,
        pca=config.pca,
        subsample=config.subsample,
        seed=config.seed,
        dequantize=config.dequantize,
    )
    if not config.pretrain_classes:
        return data, {}
    try:
        classes = [int(v) for v in config.pretrain_classes.split(",") if v.strip()]
    except ValueError:
        raise MixzooInputError(
            f"--pretrain-classes must be comma-separated integers, got {config.pretrain_classes!r}."
        ) from None
    if data.labels is None:
        raise MixzooInputError("--pretrain-classes needs a labelled data set to train the classifier on.")
    td = transfer_split(
        data.x, data.labels, classes, epochs=config.classifier_epochs, seed=config.seed, device=config.device
    )
    rest = int(len(np.unique(td.labels)))
    features = Dataset(f"{data.name}-transfer", td.features, td.labels, rest)
    return features, {"noise": td.noise, "classifier_accuracy": td.classifier_accuracy}


def _metrics(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, labels: np.ndarray | None
) -> tuple[np.ndarray, dict[str, Any]]:
    proba = cluster_proba(model, guide, x).cpu().numpy()
    if labels is None:
        keys = ("acc", "nmi", "ari", "purity", "misclassified")
        return proba, {**dict.fromkeys(keys), "expected_misclassified": float((1 - proba.max(1)).sum())}
    report = clustering_report(labels, proba)
    return proba, report


def fit_restarts(
    c: FitConfig,
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
) -> tuple[float, nn.Module, nn.Module, FitResult]:
    """Build, initialise and train the pair of a resolved config once per seed; keep the lowest final loss.

    Each restart is reproducible from its seed alone: the networks are built under that seed, the
    family's data-dependent initialisation and schedules are applied, and training is seeded with it.
    ``x_train``/``y`` (the semi-supervised stream) default to ``x`` without labels; the final loss is
    always measured on ``x``.

    With ``state_dir`` and ``c.checkpoint_every`` the run is resumable: the restart in
    progress keeps its training state in ``train_state.pt`` and the best finished
    restart is kept in ``best_restart.pt``; ``resume=True`` continues from them.
    """
    spec = get_spec(c.model)
    x_train = x if x_train is None else x_train
    best: tuple[float, nn.Module, nn.Module, FitResult] | None = None
    resumable = state_dir is not None and c.checkpoint_every is not None
    if distributed and c.options.get("two_fold"):
        raise MixzooInputError("the two-fold loop (--two-fold) runs in one process; drop --two-fold or torchrun.")
    if resumable and c.options.get("two_fold"):
        raise MixzooInputError("--checkpoint-every/--resume do not cover the two-fold loop (--two-fold); drop one.")
    state_file = best_file = None
    done = -1
    if resumable:
        state_file, best_file = state_dir / TRAIN_STATE, state_dir / BEST_RESTART  # type: ignore[operator]
        if resume and best_file.is_file():
            saved = safe_load(best_file, "restart record")
            done = int(saved["restart"])
            model, guide = build_pair(c)
            load_pair(model, guide, saved, c)
            h = saved["history"]
            best = (float(saved["final"]), model.to(c.device), guide.to(c.device), FitResult(
                losses=list(h["losses"]), val_losses=list(h["val_losses"]), epochs=int(h["epochs"]),
                device=str(h["device"]), retries=int(h["retries"]),
            ))  # fmt: skip
    for i, seed in enumerate(seeds):
        if i <= done:
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, guide = build_pair(c)
        model.to(c.device)
        guide.to(c.device)
        spec.initialize(model, guide, x.to(c.device), seed, c.options, loss=loss)
        if c.options.get("two_fold"):  # Algorithm 1 of the 001 paper: EM step, then a consistency step
            from .inference.consistency import fit_two_fold

            result: FitResult = fit_two_fold(
                model,
                guide,
                x_train,
                epochs=c.epochs,  # type: ignore[arg-type]
                batch_size=c.batch_size or 128,
                lr=c.lr,  # type: ignore[arg-type]
                consistency_lr=float(c.options["consistency_lr"]),
                seed=seed,
                device=c.device,
                progress=progress,
            )
        else:
            result = fit(
                model,
                guide,
                x_train,
                y=y,
                schedules=spec.schedules(model, guide, c.options),
                loss=loss,
                epochs=c.epochs,  # type: ignore[arg-type]
                batch_size=c.batch_size,
                lr=c.lr,  # type: ignore[arg-type]
                lr_decay=c.lr_decay,
                seed=seed,
                device=c.device,
                progress=progress,
                retries=c.retries,
                distributed=distributed,
                **(
                    {
                        "checkpoint": state_file,
                        "checkpoint_every": c.checkpoint_every,
                        "resume": resume and _state_restart(state_file) == i,
                        "checkpoint_meta": {"restart": i},
                    }
                    if resumable
                    else {}
                ),
            )
        with torch.no_grad(), isolated_param_store():
            final = evaluate_loss(loss, model, guide, x.to(result.device))
        if best is None or (math.isfinite(final) and not final >= best[0]):
            best = (final, model, guide, result)
        if best_file is not None and (not distributed or torch.distributed.get_rank() == 0):
            b_final, b_model, b_guide, b_result = best
            atomic_save(
                {
                    "restart": i,
                    "final": b_final,
                    "model": {k: v.detach().cpu() for k, v in b_model.state_dict().items()},
                    "guide": {k: v.detach().cpu() for k, v in b_guide.state_dict().items()},
                    "history": {
                        "losses": b_result.losses,
                        "val_losses": b_result.val_losses,
                        "epochs": b_result.epochs,
                        "device": b_result.device,
                        "retries": b_result.retries,
                    },
                },
                best_file,
            )
    assert best is not None
    return best


def _state_restart(path: Path | None) -> int | None:
    """The restart index a saved training state belongs to, or ``None`` when there is none."""
    if path is None or not path.is_file():
        return None
    return int(safe_load(path, "training state").get("meta", {}).get("restart", -1))


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


def run_fit(
    config: FitConfig,
    *,
    out: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """Run one CLI fit and return the JSON record (metrics, timing, names).

    :param resume: continue the interrupted run in ``out`` (written with ``checkpoint_every``).
    :param distributed: data-parallel training over the initialised process group; rank 0 alone
        writes ``out``.
    """
    c = config.resolved()
    main = not distributed or torch.distributed.get_rank() == 0
    if c.checkpoint_every is not None and (not isinstance(c.checkpoint_every, int) or c.checkpoint_every < 1):
        raise MixzooInputError(f"--checkpoint-every must be a positive integer, got {c.checkpoint_every!r}.")
    if c.checkpoint_every is not None and not out:
        raise MixzooInputError("--checkpoint-every needs --out DIR to keep the training state in.")
    if resume:
        run_dir: Path | None = Path(out) if out else None
        if run_dir is None or not (run_dir / CONFIG).is_file():
            raise MixzooInputError(f"--resume {out!r} is not a run directory with a {CONFIG}; pass the --out of a fit.")
        if (run_dir / "metrics.json").is_file():
            raise MixzooInputError(f"the run in {out!r} already finished; there is nothing to resume.")
        if not (run_dir / TRAIN_STATE).is_file() and not (run_dir / BEST_RESTART).is_file():
            raise MixzooInputError(
                f"{out!r} holds no training state to resume ({TRAIN_STATE}); was it run with --checkpoint-every?"
            )
    else:
        run_dir = prepare_run_dir(out, overwrite) if out and main else Path(out) if out else None
    data, transfer = _load_data(c)
    x = check_data(data.x)
    if c.clusters is None:
        if data.n_classes is None:
            raise MixzooInputError(f"data {c.data!r} has no known number of classes; pass --clusters K.")
        c.clusters = data.n_classes
    check_n_clusters(c.clusters, x.shape[0])
    c.dim = x.shape[1]
    if "image" in c.options and not c.options["image"] and data.image_shape:
        c.options["image"] = list(data.image_shape)  # image models see the data's own shape
    noise = {"noise": transfer["noise"]} if "noise" in transfer and c.loss == "nce" else {}
    loss = make_loss(c.loss, **noise, **c.loss_options())  # type: ignore[arg-type]
    x_train, y = x, None
    if c.labels:
        x_train, y = oversample_labelled(x, reveal_labels(data.labels, c.labels, c.seed))

    if run_dir is not None and c.checkpoint_every is not None and main and not resume:
        write_json(run_dir / CONFIG, asdict(c))  # what --resume rebuilds the run from
    start = time.perf_counter()
    seeds = [c.seed + i for i in range(c.n_init)]  # type: ignore[arg-type]
    final, model, guide, result = fit_restarts(
        c,
        x,
        seeds,
        loss=loss,
        x_train=x_train,
        y=y,
        progress=progress and main,
        state_dir=run_dir if c.checkpoint_every is not None else None,
        resume=resume,
        distributed=distributed,
    )
    seconds = time.perf_counter() - start
    proba, report = _metrics(model, guide, x.to(result.device), data.labels)
    record = {
        "model": c.model,
        "guide": c.guide,
        "loss": c.loss,
        "data": c.data,
        "n": int(x.shape[0]),
        "dim": c.dim,
        "clusters": c.clusters,
        **report,
        "final_loss": final,
        "epochs": result.epochs,
        "seconds": round(seconds, 3),
        "device": result.device,
        "seed": c.seed,
        "n_init": c.n_init,
        "pca": c.pca,
        "labels": c.labels or 0,
        **({"classifier_accuracy": transfer["classifier_accuracy"]} if transfer else {}),
    }
    if distributed:
        record["processes"] = torch.distributed.get_world_size()
    if run_dir is not None and main:
        save_checkpoint(run_dir, {"model": model, "guide": guide}, asdict(c))
        write_json(run_dir / "metrics.json", record)
        write_json(run_dir / "history.json", {"loss": result.losses, "val_loss": result.val_losses})
        np.save(run_dir / "proba.npy", proba)
        _write_extras(run_dir, model, guide, x, proba, result, data)
        for name in (TRAIN_STATE, BEST_RESTART):  # the finished run's checkpoint supersedes them
            (run_dir / name).unlink(missing_ok=True)
    return record


def _write_extras(
    run_dir: Path,
    model: nn.Module,
    guide: nn.Module,
    x: torch.Tensor,
    proba: np.ndarray,
    result: FitResult,
    data: Dataset,
) -> None:
    """Write the ArviZ summary (``summary.nc``) and the diagnostic plots into a run directory."""
    from .plots import write_fit_plots, write_model_plots
    from .summary import save_summary, summarize

    xd = x.to(result.device)
    # Laplace draws need an exact likelihood; other models are summarised at the point estimate
    # (importance-sampled log-likelihood)
    n_draws = 200 if has_exact_likelihood(model, guide, xd) else 0
    save_summary(summarize(model, guide, xd, n_draws=n_draws), run_dir / "summary.nc")
    write_fit_plots(
        run_dir, x=x.cpu().numpy(), proba=proba, losses=result.losses, labels=data.labels, val_losses=result.val_losses
    )
    write_model_plots(run_dir, model, guide, x.to(result.device), data.image_shape)


def load_run(run_dir: str) -> tuple[nn.Module, nn.Module, FitConfig]:
    """Rebuild the model and guide of a run directory with their trained parameters."""
    state, raw = load_checkpoint(run_dir)
    config = config_from_json(raw, run_dir).resolved()
    try:
        model, guide = build_pair(config)
    except (TypeError, AssertionError, KeyError) as err:
        raise MixzooInputError(f"the config.json of {run_dir!r} cannot rebuild a model ({err}).") from None
    load_pair(model, guide, state, config)
    return model, guide, config


def run_evaluate(
    run_dir: str, *, data: str | None = None, data_dir: str | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Cluster data (the run's own by default) with a saved run and report the metrics."""
    if not Path(run_dir).is_dir():
        raise MixzooInputError(f"run directory {run_dir!r} does not exist; pass the --out of a fit.")
    model, guide, c = load_run(run_dir)
    if data is not None:
        c.data = data
    if data_dir is not None:
        c.data_dir = data_dir
    ds, _ = _load_data(c)
    x = check_data(ds.x, dim=c.dim)
    model.to(device)
    guide.to(device)
    start = time.perf_counter()
    _, report = _metrics(model, guide, x.to(device), ds.labels)
    return {
        "model": c.model,
        "guide": c.guide,
        "loss": c.loss,
        "data": c.data,
        "n": int(x.shape[0]),
        "clusters": c.clusters,
        **report,
        "seconds": round(time.perf_counter() - start, 3),
        "device": device,
        "seed": c.seed,
        "run": str(run_dir),
    }
