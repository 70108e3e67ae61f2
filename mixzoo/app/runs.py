"""Fit a configuration into a run directory, and use a run directory again.

``mixzoo fit`` is :func:`run_fit`, ``mixzoo evaluate`` is :func:`run_evaluate`, and
:func:`load_run` rebuilds a run's trained pair. A run directory holds ``config.json``,
``checkpoint.pt`` (state dicts only, read with ``torch.load(weights_only=True)``),
``metrics.json``, ``history.json``, ``proba.npy``, ``summary.nc`` and the plots; with
``checkpoint_every`` it also holds the resumable training state until the run ends.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.calibration import Calibration
from ..analysis.draws import DRAWS_FILE, RelabelledDraws, load_draws, predictive_proba, save_draws, summarize_draws
from ..analysis.metrics import clustering_report, clusters_used
from ..analysis.posterior import cluster_proba, has_exact_likelihood
from ..data import Dataset, load_dataset
from ..data.labels import oversample_labelled, reveal_labels
from ..data.mapped import source
from ..data.transform import PREPROCESSING, Preprocessing
from ..data.validation import check_data, check_device
from ..errors import MixzooInputError
from ..inference.registry import LossContext
from ..training.loop import FitResult
from ..training.threads import choose_threads, torch_threads
from .calibrate import REPLICATE_SEED, calibrate
from .config import FitConfig, config_from_json
from .planning import plan_for
from .restarts import BEST_RESTART, TRAIN_STATE, build_pair, fit_restarts, load_pair
from .run_dir import CALIBRATION, CONFIG, load_checkpoint, prepare_run_dir, run_temperature, save_checkpoint, write_json
from .sampling import check_sampleable, sample_fit
from .transfer import transfer_split
from .user_model import file_digest, is_user_model

__all__ = ["Run", "execute", "run_fit", "run_evaluate", "load_run", "load_data", "resume_config", "run_draws"]


def load_data(config: FitConfig, *, as_read: bool = False) -> tuple[Dataset, dict[str, Any]]:
    """The data set of a config and the loss options it implies (the transfer noise).

    :param as_read: only subsampled, for :func:`~mixzoo.app.planning.plan_for` to preprocess; else with the
        preprocessing the config records (a saved run's own data, exactly as it trained on them).
    """
    stages = (
        {}
        if as_read
        else {"scale": config.scale or "none", "pca": config.pca or None, "dequantize": bool(config.dequantize)}
    )
    data = load_dataset(
        config.data, data_dir=config.data_dir, subsample=config.subsample, seed=config.seed,
        label_column=config.label_column, columns=config.columns, **stages,
    )  # fmt: skip
    if not config.pretrain_classes:
        return data, {}
    classes = _classes(config.pretrain_classes, "--pretrain-classes")
    chosen = None if config.cluster_classes is None else _classes(config.cluster_classes, "--cluster-classes")
    if data.labels is None:
        raise MixzooInputError("--pretrain-classes needs a labelled data set to train the classifier on.")
    epochs = config.classifier_epochs or 5
    td = transfer_split(
        data.x, data.labels, classes, epochs=epochs, seed=config.seed, device=config.device, cluster_classes=chosen,
        classifier=config.classifier, image_shape=data.image_shape,
    )  # fmt: skip
    features = Dataset(f"{data.name}-transfer", td.features, td.labels, int(len(np.unique(td.labels))))
    return features, {"noise": td.noise, "classifier_accuracy": td.classifier_accuracy, "classifier": td.classifier}


def _choose_clusters(c: FitConfig, data: Dataset, *, report: bool) -> tuple[FitConfig, dict[str, Any]]:
    """``--clusters auto``: K (and the family's structure, unless given) by the family's first criterion over
    :data:`~mixzoo.app.selection.AUTO_CLUSTERS`, with the run's own settings; the config with the choice, and the
    selection's record."""
    from .selection import AUTO_CLUSTERS, select_clusters

    ks = [k for k in AUTO_CLUSTERS if k <= len(data.x)]
    params = {name: getattr(c, name) for name in ("epochs", "lr", "batch_size", "tol") if getattr(c, name) is not None}
    sel = select_clusters(data.x, ks, model=c.model, seed=c.seed, loo=False, model_options=dict(c.options),
                          guide=c.guide, loss=c.loss, **params)  # fmt: skip
    if sel.choice is None:
        raise MixzooInputError(f"--clusters auto: no candidate K in 1..{ks[-1]} could be fitted ({sel.rows[0].error}).")
    options = {**c.options, **sel.choice_options}
    if report:
        chosen = "".join(f", {k} {v}" for k, v in sel.choice_options.items() if k not in c.options)
        print(f"mixzoo: --clusters auto chose K={sel.choice}{chosen} by {sel.criterion.upper() if sel.criterion in ('bic', 'icl') else sel.criterion} "
              f"over K = 1..{ks[-1]}", file=sys.stderr, flush=True)  # fmt: skip
    record = {"criterion": sel.criterion, "choice": sel.choice, "choice_options": sel.choice_options,
              "clusters": ks, "table": [asdict(r) for r in sel.rows]}  # fmt: skip
    return replace(c, clusters=sel.choice, options=options), record


def _classes(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MixzooInputError(f"{flag} must be comma-separated integers, got {text!r}.") from None


def _metrics(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, labels: np.ndarray | None, temperature: float = 1.0,
    draws: RelabelledDraws | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The cluster probabilities of ``x`` (the posterior predictive ones with ``draws``) and their metrics."""
    if draws is not None:
        proba = predictive_proba(model, draws, x.cpu())
    else:
        proba = cluster_proba(model, guide, x, temperature=temperature).cpu().numpy()
    if labels is None:
        keys = ("acc", "nmi", "ari", "purity", "misclassified")
        return proba, {**dict.fromkeys(keys), "expected_misclassified": float((1 - proba.max(1)).sum()),
                       "clusters_used": clusters_used(proba)}  # fmt: skip
    return proba, clustering_report(labels, proba)


def resume_config(run_dir: str | Path) -> FitConfig:
    """The config of an interrupted run in ``run_dir``, checked to be resumable."""
    d = Path(run_dir)
    path = d / CONFIG
    if not path.is_file():
        if d.is_dir() and not any(d.iterdir()):
            raise MixzooInputError(
                f"{str(d)!r} is empty: the run was started without --checkpoint-every, so it kept no state to resume "
                "from; start it again with --checkpoint-every N."
            )
        raise MixzooInputError(f"--resume {str(d)!r} is not a run directory with a {CONFIG}; pass the --out of a fit.")
    if (d / "metrics.json").is_file():
        raise MixzooInputError(f"the run in {str(d)!r} already finished; there is nothing to resume.")
    if not (d / TRAIN_STATE).is_file() and not (d / BEST_RESTART).is_file():
        raise MixzooInputError(
            f"{str(d)!r} holds no training state to resume ({TRAIN_STATE}); was it run with --checkpoint-every?"
        )
    try:
        return config_from_json(json.loads(path.read_text()), d)
    except json.JSONDecodeError as err:
        raise MixzooInputError(f"{str(path)!r} is not valid JSON ({err}).") from None


def run_fit(
    config: FitConfig,
    *,
    out: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """Run one fit and return the JSON record (metrics, timing, names): ``mixzoo fit``.

    :param resume: continue the interrupted run in ``out`` (written with ``checkpoint_every``).
    :param distributed: data-parallel training over the initialised process group; rank 0 alone
        writes ``out``.
    """
    return execute(
        config, out=out, overwrite=overwrite, progress=progress, resume=resume, distributed=distributed
    ).record


@dataclass
class Run:
    """A finished fit: what :func:`mixzoo.run` returns.

    :param record: the JSON record ``mixzoo fit --json`` prints (metrics, timing, names).
    :param config: the configuration with everything the family's plan chose, as ``config.json`` holds it.
    :param model: the trained model.
    :param guide: the trained guide.
    :param data: the data the model was trained on (after the plan's preprocessing), with their labels.
    :param proba: (N, K) cluster probabilities of ``data``.
    :param history: the training history of the kept restart.
    """

    record: dict[str, Any]
    config: FitConfig
    model: nn.Module
    guide: nn.Module
    data: Dataset
    proba: np.ndarray
    history: FitResult

    @property
    def temperature(self) -> float:
        """The temperature :attr:`proba` was computed with (:mod:`mixzoo.analysis.calibration`): pass it to
        :func:`mixzoo.cluster_proba` to reproduce them from :attr:`model` and :attr:`guide`."""
        return float((self.record.get("calibration") or {}).get("temperature", 1.0))

    @property
    def metrics(self) -> dict[str, Any]:
        """ACC, NMI, ARI, purity, expected and actual misclassified, their ratio and the expected calibration error,
        clusters used (``None`` without labels)."""
        keys = ("acc", "nmi", "ari", "purity", "expected_misclassified", "misclassified", "calibration_ratio", "ece",
                "clusters_used")  # fmt: skip
        return {k: self.record.get(k) for k in keys}


def execute(
    config: FitConfig,
    *,
    out: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    distributed: bool = False,
) -> Run:
    """:func:`run_fit`, returning the trained pair, the data and the probabilities with the record."""
    c = config.resolved()
    main = not distributed or torch.distributed.get_rank() == 0
    if c.checkpoint_every is not None and not out:
        raise MixzooInputError("--checkpoint-every needs --out DIR to keep the training state in.")
    if resume:
        resume_config(out or "")
        run_dir: Path | None = Path(out) if out else None
    else:
        run_dir = prepare_run_dir(out, overwrite) if out and main else Path(out) if out else None
    data, transfer = load_data(c, as_read=not c.pretrain_classes)  # a transfer run's stages precede its classifier
    if transfer:
        c = replace(c, classifier=transfer["classifier"])  # the run records the classifier it used
    selection = None
    if c.clusters == "auto":
        c, selection = _choose_clusters(c, data, report=progress and main)
    c, data, plan = plan_for(c, data, report=progress and main)
    check_sampleable(c)
    x = check_data(data.x)
    loss = c.algorithm.loss(c.loss_opts(), LossContext(noise=transfer.get("noise")))
    x_train, y = x, None
    if c.labels:
        x_train, y = oversample_labelled(x, reveal_labels(data.labels, c.labels, c.seed))
    if run_dir is not None and c.checkpoint_every is not None and main and not resume:
        write_json(run_dir / CONFIG, c.to_dict())  # what --resume rebuilds the run from
    start = time.perf_counter()
    seeds = [c.seed + i for i in range(c.n_init)]  # type: ignore[arg-type]
    state_dir = run_dir if c.checkpoint_every is not None else None
    threads = choose_threads(c.threads, int(x.shape[0]), int(x.shape[1]), int(c.clusters))  # type: ignore[arg-type]
    with torch_threads(threads):
        describe = None if c.n_init == 1 or data.labels is None else \
            (lambda m, g: {"acc": _metrics(m, g, x.to(c.device), data.labels)[1]["acc"]})  # fmt: skip
        final, model, guide, result = fit_restarts(
            c, plan, x, seeds, loss=loss, x_train=x_train, y=y, progress=progress and main, state_dir=state_dir,
            resume=resume, distributed=distributed, describe=describe,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    with torch_threads(threads):
        calibration = calibrate(
            c, plan, model, guide, x, make_loss=lambda: c.algorithm.loss(c.loss_opts(), LossContext(noise=transfer.get("noise"))),
            seed=c.seed + REPLICATE_SEED, revealed=reveal_labels(data.labels, c.labels, c.seed) if c.labels else None,
            distributed=distributed,
        )  # fmt: skip
    posterior, sampling = sample_fit(c, model, guide, x, threads, report=progress and main) if c.sampler else (None, {})
    proba, report = _metrics(model, guide, x.to(result.device), data.labels, calibration.temperature, posterior)
    record = {
        "model": c.to_dict()["model"], "guide": c.guide, "loss": c.loss, "data": c.data, "n": int(x.shape[0]), "dim": c.dim,
        "clusters": c.clusters, **report, "final_loss": final, "epochs": result.epochs, "converged": result.converged, "seconds": round(seconds, 3),
        "device": result.device, "threads": threads, "seed": c.seed, "n_init": c.n_init, "pca": c.pca, "labels": c.labels or 0,
        **({"classifier": transfer["classifier"], "classifier_accuracy": transfer["classifier_accuracy"]} if transfer else {}),
        **({"restarts": result.restarts} if c.n_init > 1 else {}),
        "temperature": round(calibration.temperature, 4), "calibration": calibration.to_dict(),
        "calibration_seconds": round(time.perf_counter() - start - seconds - sampling.get("sampling_seconds", 0), 3),
        **sampling,
    }  # fmt: skip
    if distributed:
        record["processes"] = torch.distributed.get_world_size()
    if selection is not None:
        record["selection"] = selection
    if progress and main and record["clusters_used"] < c.clusters:
        print(f"mixzoo: warning: {record['clusters_used']} of the {c.clusters} clusters hold points at the end of "
              "training (no point has its largest probability in the others); fewer --clusters, other --n-init seeds "
              "or `mixzoo select` may fit the data better", file=sys.stderr, flush=True)  # fmt: skip
    if run_dir is not None and main:
        with torch_threads(threads):  # the summary's many small passes run as training's did
            _write_run(
                run_dir, c, record, model, guide, x, proba, result, data, report=progress, laplace=plan.laplace_summary,
                posterior=posterior,
            )
    return Run(record, c, model, guide, data, proba, result)


SUMMARY_ENTRIES = 1_000_000
"""Largest number of pointwise log-likelihood values (draws x points) a run's ``summary.nc`` keeps."""


def _write_run(
    run_dir: Path, c: FitConfig, record: dict[str, Any], model: nn.Module, guide: nn.Module, x: torch.Tensor,
    proba: np.ndarray, result: FitResult, data: Dataset, report: bool = False, laplace: bool = True,
    posterior: RelabelledDraws | None = None,
) -> None:  # fmt: skip
    """Write the finished run: checkpoint, config, metrics, history, probabilities, summary and plots.

    The summary's pointwise log-likelihood holds at most :data:`SUMMARY_ENTRIES` values (100 Laplace
    draws for up to 10000 points, fewer draws for more: enough for PSIS-LOO, at a fraction of the cost of 200), on
    at most :data:`~mixzoo.analysis.summary.SUMMARY_POINTS` points (a seeded subsample of larger data). With ``report`` one line says what is written,
    and a note of the summary (e.g. a flat direction of the Laplace approximation) is one plain line. ``laplace``: the
    plan asks for Laplace draws (network families keep the point estimate). ``posterior``: the run's NUTS draws,
    kept in :data:`~mixzoo.analysis.draws.DRAWS_FILE` and summarized instead.
    """
    from ..analysis.summary import SUMMARY_POINTS, save_summary, summarize

    save_checkpoint(run_dir, {"model": model, "guide": guide}, c.to_dict())
    write_json(run_dir / "metrics.json", record)
    write_json(run_dir / "history.json", {"loss": result.losses, "val_loss": result.val_losses, **result.step_history})
    np.save(run_dir / "proba.npy", proba)
    write_json(run_dir / CALIBRATION, record.get("calibration") or Calibration().to_dict())
    if data.preprocessing is not None:
        data.preprocessing.save(run_dir / PREPROCESSING)
    xd = x.to(result.device)
    if posterior is not None:
        save_draws(run_dir / DRAWS_FILE, posterior)
        if report:
            print(f"mixzoo: writing {run_dir}: checkpoint, metrics, probabilities, {DRAWS_FILE} and summary.nc "
                  f"({posterior.samples.chains} NUTS chains) and plots", file=sys.stderr, flush=True)  # fmt: skip
        save_summary(summarize_draws(model, posterior, x.cpu(), proba, max_entries=SUMMARY_ENTRIES), run_dir / "summary.nc")
        _write_plots(run_dir, model, guide, x, xd, proba, result, data)
        return
    # Laplace draws need an exact likelihood and a family that asks for them; others keep the point estimate
    laplace = laplace and has_exact_likelihood(model, guide, xd)
    n_draws = min(100, max(20, SUMMARY_ENTRIES // min(len(xd), SUMMARY_POINTS))) if laplace else 0
    if report:
        draws = f"{n_draws} Laplace draws" if n_draws else "the point estimate"
        if len(xd) > SUMMARY_POINTS:
            draws += f" on {SUMMARY_POINTS} of the {len(xd)} points"
        print(
            f"mixzoo: writing {run_dir}: checkpoint, metrics, probabilities, summary.nc ({draws}) and plots",
            file=sys.stderr,
            flush=True,
        )
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        save_summary(summarize(model, guide, xd, n_draws=n_draws), run_dir / "summary.nc")
    for note in notes:
        if report:
            print(f"mixzoo: note on summary.nc: {note.message}", file=sys.stderr, flush=True)
    _write_plots(run_dir, model, guide, x, xd, proba, result, data)


def _write_plots(
    run_dir: Path, model: nn.Module, guide: nn.Module, x: torch.Tensor, xd: torch.Tensor, proba: np.ndarray,
    result: FitResult, data: Dataset,
) -> None:  # fmt: skip
    from ..analysis.plots import write_fit_plots, write_model_plots

    mapped = source(x)  # a memory-mapped file stays one: its checks read it a block at a time
    write_fit_plots(
        run_dir, x=mapped if mapped is not None else x.cpu().numpy(), proba=proba, losses=result.losses, labels=data.labels, val_losses=result.val_losses
    )
    write_model_plots(run_dir, model, guide, xd, data.image_shape)
    for name in (TRAIN_STATE, BEST_RESTART):  # the finished run's checkpoint supersedes them
        (run_dir / name).unlink(missing_ok=True)


def _check_user_model(config: FitConfig, run_dir: str, model: str | None) -> None:
    """A run made by a user's model file is rebuilt only when the user names that model again."""
    if not is_user_model(config.model):
        if model is not None and model != config.model:
            raise MixzooInputError(f"the run in {run_dir!r} is a {config.model!r} model, not {model!r}; drop --model.")
        return
    if model is None:
        raise MixzooInputError(
            f"the run in {run_dir!r} was made by your model {config.model!r}; mixzoo runs a model file only when you "
            f"name it: pass --model {config.model}."
        )
    if model != config.model:
        raise MixzooInputError(f"the run in {run_dir!r} was made by --model {config.model}, not {model}.")
    digest = file_digest(model)
    if config.model_file_sha256 and digest and digest != config.model_file_sha256:
        raise MixzooInputError(
            f"{model.rsplit(':', 1)[0]!r} changed since the run in {run_dir!r} was made (its SHA-256 differs)."
        )


def load_run(run_dir: str, *, model: str | None = None) -> tuple[nn.Module, nn.Module, FitConfig]:
    """Rebuild the model and guide of a run directory with their trained parameters.

    :param model: for a run made by a user's model file, the same ``FILE.py:CLASS`` (the file is
        imported only when named here).
    """
    if not Path(run_dir).is_dir():
        raise MixzooInputError(f"run directory {run_dir!r} does not exist; pass the --out of a fit.")
    state, raw = load_checkpoint(run_dir)
    config = config_from_json(raw, run_dir)
    _check_user_model(config, run_dir, model)
    config = config.resolved()
    if config.dim is None:
        raise MixzooInputError(f"the config.json of {run_dir!r} does not say the data's dimension; fit the run again.")
    try:
        pair = build_pair(config)
    except (TypeError, AssertionError, KeyError) as err:
        raise MixzooInputError(f"the config.json of {run_dir!r} cannot rebuild a model ({err}).") from None
    load_pair(*pair, state, config)
    return *pair, config


def run_draws(run_dir: str | Path) -> RelabelledDraws | None:
    """The relabelled NUTS draws of a run fitted with ``--sampler nuts``, else ``None``."""
    path = Path(run_dir) / DRAWS_FILE
    return load_draws(path) if path.is_file() else None


def run_evaluate(
    run_dir: str,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    model: str | None = None,
    label_column: str | None = None,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """Cluster data (the run's own by default) with a saved run and report the metrics."""
    check_device(device)
    m, g, c = load_run(run_dir, model=model)
    if data is not None:
        c.data = data
    if data_dir is not None:
        c.data_dir = data_dir
    if label_column is not None or columns is not None:
        c.label_column, c.columns = label_column, columns
    if data is None and data_dir is None and label_column is None and columns is None:
        ds, _ = load_data(c)  # the run's own data, preprocessed exactly as in training
        x = check_data(ds.x, dim=c.dim)
    else:  # other data: the run's own preprocessing, as predict applies it
        raw, _ = load_data(replace(c, subsample=None), as_read=True)
        ds = raw
        prep_path = Path(run_dir) / PREPROCESSING
        x = check_data(Preprocessing.load(prep_path).apply(raw.x) if prep_path.is_file() else raw.x, dim=c.dim)
    m.to(device)
    g.to(device)
    start = time.perf_counter()
    _, report = _metrics(m, g, x.to(device), ds.labels, run_temperature(run_dir), run_draws(run_dir))
    return {
        "model": c.model, "guide": c.guide, "loss": c.loss, "data": c.data, "n": int(x.shape[0]), "clusters": c.clusters,
        **report, "seconds": round(time.perf_counter() - start, 3), "device": device, "seed": c.seed, "run": str(run_dir),
    }  # fmt: skip
