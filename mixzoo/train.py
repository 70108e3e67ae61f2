r"""The training loop: stochastic variational inference over minibatches.

:func:`fit` runs :class:`pyro.infer.SVI` with any :class:`pyro.infer.ELBO` on a
model/guide pair that follows the mixzoo contract::

    def model(x, y=None, subsample=None): ...
    def guide(x, y=None, subsample=None): ...

where ``subsample`` holds the minibatch indices chosen by the loop and is passed
on to ``pyro.plate("data", len(x), subsample=subsample)``, which scales each
minibatch's log density by :math:`N/B`. An epoch visits every point once in a
seeded random order, so seeded runs repeat exactly.

Per epoch the loop calls each schedule (annealing of temperatures and standard
deviations), steps the learning-rate decay, evaluates a held-out loss when asked
(early stopping keeps the best state), and checks that the loss and every
parameter are finite; on NaN/inf it restores the last good state and raises
:class:`~mixzoo.errors.TrainingDivergedError`.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyro
import torch
from pyro.infer import ELBO, SVI, TraceEnum_ELBO
from pyro.optim import PyroOptim
from pyro.optim.optim import _load_state_dict
from tqdm.auto import tqdm

from .distributed import DistributedContext, DistributedSVI
from .errors import MixzooInputError, TrainingDivergedError
from .inference.compat import check_pair
from .joint_optim import JointOptim
from .params import StateDict, all_finite, isolated_param_store, modules_of, restore, snapshot
from .training_state import (
    FORMAT,
    atomic_save,
    capture_rng,
    data_fingerprint,
    param_store_values,
    restore_rng,
    safe_load,
)
from .validation import check_data, check_labels

__all__ = ["fit", "FitResult", "Schedule", "set_seed", "evaluate_loss"]


class Schedule(Protocol):
    """Called with the epoch index (0-based) before that epoch's first step."""

    def __call__(self, epoch: int) -> None: ...


@dataclass
class FitResult:
    """What a training run produced besides the trained modules."""

    losses: list[float] = field(default_factory=list)
    """Mean training loss per point, one entry per completed epoch."""
    val_losses: list[float] = field(default_factory=list)
    """Held-out loss per point, one entry per epoch when ``val_data`` was given."""
    epochs: int = 0
    best_epoch: int | None = None
    stopped: str = "max_epochs"
    """``"max_epochs"`` or ``"early_stopping"``."""
    seconds: float = 0.0
    device: str = "cpu"
    retries: int = 0
    """How many times a diverged epoch was retried with half the learning rate."""
    param_state: StateDict = field(default_factory=dict)
    """Final param-store state, for parameters declared by bare ``pyro.param`` statements."""

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA) in one call."""
    pyro.set_rng_seed(seed)


def evaluate_loss(
    loss: ELBO, model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor, batch_size: int = 2048
) -> float:
    """The loss per point on all of ``x``, computed in chunks of ``batch_size`` through the data plate.

    Each chunk's loss is scaled by the plate to the whole data set, so the chunks are averaged with
    weights ``len(chunk) / N``; memory stays that of one chunk (an enumerated Gaussian mixture on all of
    MNIST at once would hold K x N x D intermediates, several GiB).
    """
    n = x.shape[0]
    total = 0.0
    with torch.no_grad():
        for idx in torch.arange(n, device=x.device).split(batch_size):
            total += float(loss.loss(model, guide, x, None, idx)) * len(idx) / n
    return total / n


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise MixzooInputError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MixzooInputError("device 'cuda' requested but no CUDA GPU is available; use --device cpu.")
    return dev


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


def fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    *,
    y: Any = None,
    loss: ELBO | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 1e-2,
    lr_decay: float | None = None,
    optim: PyroOptim | None = None,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    schedules: Iterable[Schedule] = (),
    val_data: Any = None,
    patience: int | None = None,
    progress: bool = True,
    param_state: StateDict | None = None,
    callback: Callable[[int, FitResult], None] | None = None,
    retries: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    checkpoint_meta: dict[str, Any] | None = None,
    distributed: bool = False,
) -> FitResult:
    """Train ``model`` and ``guide`` on ``data`` with SVI and return the history.

    :param data: array-like (N, D); checked before training (see :func:`~mixzoo.validation.check_data`).
    :param y: optional observed cluster labels (N,), ``-1`` for unlabelled points, passed to model and guide.
    :param loss: any :class:`pyro.infer.ELBO`; defaults to ``TraceEnum_ELBO(max_plate_nesting=1)``.
    :param batch_size: minibatch size; ``None`` uses the full data set per step.
    :param lr_decay: multiply the learning rate by this factor after every epoch.
    :param optim: a Pyro optimizer to use instead of Adam(lr) (``lr``/``lr_decay`` are then ignored).
    :param seed: seeds torch, NumPy, Python and the minibatch order; ``None`` leaves the RNGs alone.
    :param device: ``"cpu"`` or ``"cuda"``; the modules and data are moved there before the first step.
    :param schedules: callables ``schedule(epoch)`` run before each epoch.
    :param val_data: held-out array-like; its loss per point is recorded each epoch.
    :param patience: with ``val_data``, stop after this many epochs without improvement and restore the best state.
    :param progress: show a tqdm bar with epoch and loss.
    :param param_state: initial param-store state for parameters declared with bare ``pyro.param``.
    :param callback: called as ``callback(epoch, result)`` after each epoch.
    :param retries: on a NaN/inf loss, restore the last good epoch and retry it with half the learning
        rate, at most this many times, before giving up.
    :param checkpoint: file for the resumable training state (see :mod:`mixzoo.training_state`), written
        atomically every ``checkpoint_every`` epochs.
    :param resume: continue from the state in ``checkpoint`` (it must exist); with the same seed the run
        ends with the same parameters as one that was never interrupted.
    :param checkpoint_meta: extra JSON-like entries stored with the training state.
    :param distributed: data-parallel training over the initialised :mod:`torch.distributed` process
        group (see :mod:`mixzoo.distributed`): shards of each minibatch, all-reduced gradients, rank 0
        alone shows progress and writes the checkpoint.
    :raises MixzooInputError: on bad data or options, or a loss that cannot serve the pair.
    :raises TrainingDivergedError: when the loss or a parameter becomes NaN/inf (after the retries); the last
        good state is restored first.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise MixzooInputError(f"epochs must be a positive integer, got {epochs!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise MixzooInputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not lr > 0:
        raise MixzooInputError(f"learning rate must be positive, got {lr!r}.")
    if patience is not None and val_data is None:
        raise MixzooInputError("patience (early stopping) needs val_data to watch.")
    if not isinstance(retries, int) or retries < 0:
        raise MixzooInputError(f"retries must be a non-negative integer, got {retries!r}.")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise MixzooInputError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}.")
    if resume and checkpoint is None:
        raise MixzooInputError("resume=True needs the checkpoint file to continue from.")
    ctx = DistributedContext.current() if distributed else DistributedContext()
    dev = ctx.device(_resolve_device(device))
    x = check_data(data).to(dev)
    y_t = None if y is None else check_labels(y, x.shape[0]).to(dev)
    x_val = None if val_data is None else check_data(val_data, name="val_data", dim=x.shape[1]).to(dev)
    saved = safe_load(checkpoint, "training state") if resume else None
    fingerprint = data_fingerprint(x)
    if saved is not None:
        _check_saved(saved, fingerprint, checkpoint, ctx)
    loss = loss if loss is not None else TraceEnum_ELBO(max_plate_nesting=1)
    modules = modules_of(model, guide)
    for m in modules:
        m.to(dev)
    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    if bs < ctx.world:
        raise MixzooInputError(f"batch_size {bs} is smaller than the number of processes ({ctx.world}).")
    if seed is not None:
        set_seed(seed + ctx.rank)  # independent Monte Carlo draws per process, one minibatch order for all
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    main = ctx.is_main

    result = FitResult(device=str(dev))
    start = time.perf_counter()
    with isolated_param_store(param_state) as store_state:
        check_pair(model, guide, loss, x[: min(n, 8)], None if y_t is None else y_t[: min(n, 8)])
        if optim is None:  # one Adam over all parameters: the updates of pyro.optim.Adam, one step() call
            optim = JointOptim(torch.optim.Adam, {"lr": lr}, gamma=lr_decay)
        if distributed:
            ctx.broadcast(t for m in modules for t in (*m.parameters(), *m.buffers()))
            svi: SVI = DistributedSVI(model, guide, optim, loss, context=ctx)
        else:
            svi = SVI(model, guide, optim, loss)
        best_val, best_state = math.inf, None
        first = 0
        if saved is not None:
            restore(modules, {"modules": saved["modules"], "store": saved["store"]})
            optim.set_state(saved["optim"])
            h = saved["history"]
            result.losses, result.val_losses = list(h["losses"]), list(h["val_losses"])
            result.best_epoch, best_val, result.retries = h["best_epoch"], h["best_val"], h["retries"]
            result.epochs = first = int(saved["epoch"])
            if saved.get("best") is not None:
                best_state = {"modules": saved["best"], "store": {}}
            rng = saved["rng"] if not distributed else saved["rng"][ctx.rank]
            restore_rng(rng, generator)
        good = snapshot(modules)
        good_optim = copy.deepcopy(optim.get_state()) if retries else None
        tries = retries - result.retries
        bar = tqdm(range(first, epochs), disable=not (progress and main), desc="fit", unit="epoch", leave=False)
        for epoch in bar:
            while True:
                try:
                    total = _epoch(svi, schedules, epoch, x, y_t, n, bs, generator, dev, ctx, modules)
                    break
                except _Diverged as d:
                    what = f"training diverged in epoch {epoch + 1}, step {d.step}: {d.what}"
                    restore(modules, good)
                    if tries <= 0:
                        raise TrainingDivergedError(
                            f"{what}; stopped and restored the parameters of the last good epoch ({result.epochs})"
                            + (f" after {result.retries} retries with a halved learning rate" if result.retries else "")
                            + ". Lower the learning rate or check the data scale.",
                            history=result,
                        ) from None
                    tries -= 1
                    result.retries += 1
                    _restore_optim(optim, good_optim)
                    _scale_lr(optim, 0.5)
                    good_optim = copy.deepcopy(optim.get_state())
                    if main:
                        warnings.warn(
                            f"{what}; retrying from epoch {epoch + 1} with half the learning rate.", stacklevel=2
                        )
            if distributed:
                ctx.broadcast(t for m in modules for t in m.buffers())
            good = snapshot(modules)
            if hasattr(optim, "step"):
                optim.step()
            if retries:
                good_optim = copy.deepcopy(optim.get_state())
            result.losses.append(total / n)
            result.epochs = epoch + 1
            postfix = {"loss": f"{total / n:.4g}"}
            stop = False
            if x_val is not None:
                with torch.no_grad():
                    val = ctx.sum(evaluate_loss(loss, model, guide, x_val)) / ctx.world
                result.val_losses.append(val)
                postfix["val"] = f"{val:.4g}"
                if val < best_val:
                    best_val, best_state, result.best_epoch = val, snapshot(modules), epoch
                elif patience is not None and epoch - (result.best_epoch or 0) >= patience:
                    result.stopped = "early_stopping"
                    stop = True
            bar.set_postfix(postfix)
            if callback is not None:
                callback(epoch, result)
            if checkpoint is not None and (result.epochs % checkpoint_every == 0 or stop or result.epochs == epochs):
                rng = capture_rng(generator)
                if distributed:
                    rng = ctx.gather(rng)
                if main:
                    atomic_save(
                        {
                            "format": FORMAT,
                            "epoch": result.epochs,
                            "world": ctx.world,
                            "data": fingerprint,
                            "modules": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in modules],
                            "store": param_store_values(),
                            "optim": optim.get_state(),
                            "rng": rng,
                            "history": {
                                "losses": result.losses,
                                "val_losses": result.val_losses,
                                "best_epoch": result.best_epoch,
                                "best_val": best_val,
                                "retries": result.retries,
                            },
                            "best": None if best_state is None else best_state["modules"],
                            "meta": checkpoint_meta or {},
                        },
                        checkpoint,
                    )
            if stop:
                break
        bar.close()
        if best_state is not None and patience is not None:
            restore(modules, best_state)
    result.param_state = store_state
    result.seconds = time.perf_counter() - start
    return result


class _Diverged(Exception):
    def __init__(self, step: int, what: str) -> None:
        super().__init__(what)
        self.step, self.what = step, what


def _epoch(
    svi: SVI,
    schedules: Iterable[Schedule],
    epoch: int,
    x: torch.Tensor,
    y: torch.Tensor | None,
    n: int,
    bs: int,
    generator: torch.Generator,
    dev: torch.device,
    ctx: DistributedContext,
    modules: list[torch.nn.Module],
) -> float:
    """One pass over the data; returns the summed loss, or raises :class:`_Diverged` naming the step."""
    for schedule in schedules:
        schedule(epoch)
    total = 0.0
    batches = _batches(n, bs, generator)
    if ctx.world > 1 and len(batches) > 1 and len(batches[-1]) < ctx.world:
        batches[-2:] = [torch.cat(batches[-2:])]  # every process gets at least one point
    for step, idx in enumerate(batches, start=1):
        local = ctx.shard(idx).to(dev)
        if isinstance(svi, DistributedSVI):
            svi.weight = len(local) / len(idx)
        try:
            step_loss = svi.step(x, y, local)
        except ValueError:  # distribution argument checks reject NaN parameters
            if all_finite(modules):
                raise
            raise _Diverged(step, "a parameter became NaN/inf") from None
        if not math.isfinite(step_loss):
            raise _Diverged(step, f"the loss became {step_loss}")
        total += step_loss * len(idx) / n
    if not all_finite(modules):
        raise _Diverged(len(batches), "a parameter became NaN/inf")
    return total


def _restore_optim(optim: PyroOptim, state: dict[str, Any] | None) -> None:
    """Load a saved :meth:`PyroOptim.get_state` back into the live per-parameter optimizers."""
    if isinstance(optim, JointOptim):  # also clears the state of parameters the snapshot did not have
        optim.restore(state or {})
        return
    if not state:
        return
    params = dict(pyro.get_param_store().named_parameters())
    for name, st in copy.deepcopy(state).items():
        if name in params and params[name] in optim.optim_objs:
            _load_state_dict(optim.optim_objs[params[name]], st)


def _scale_lr(optim: PyroOptim, factor: float) -> None:
    """Multiply the learning rate of every live and future per-parameter optimizer by ``factor``."""
    if isinstance(optim, JointOptim):
        optim.scale_lr(factor)
        return
    for opt in optim.optim_objs.values():
        inner = getattr(opt, "optimizer", opt)
        for group in inner.param_groups:
            group["lr"] *= factor
        if hasattr(opt, "base_lrs"):
            opt.base_lrs = [b * factor for b in opt.base_lrs]
    args = getattr(optim, "pt_optim_args", None)
    if isinstance(args, dict) and "lr" in args:
        args["lr"] *= factor
    kwargs = getattr(optim, "kwargs", None)
    if isinstance(kwargs, dict) and isinstance(kwargs.get("optim_args"), dict) and "lr" in kwargs["optim_args"]:
        kwargs["optim_args"]["lr"] *= factor


def _check_saved(saved: Any, fingerprint: dict[str, Any], path: Any, ctx: DistributedContext) -> None:
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise MixzooInputError(
            f"{str(path)!r} is not a mixzoo training state; pass the file fit(checkpoint=...) wrote."
        )
    if saved["data"]["shape"] != fingerprint["shape"] or not math.isclose(
        saved["data"]["sum"], fingerprint["sum"], rel_tol=1e-9, abs_tol=1e-6
    ):
        raise MixzooInputError(
            f"the training state in {str(path)!r} was written for other data (shape {saved['data']['shape']}); "
            f"resume with the data it started on (shape {fingerprint['shape']})."
        )
    if saved.get("world", 1) != ctx.world:
        raise MixzooInputError(
            f"the training state in {str(path)!r} was written by {saved.get('world', 1)} process(es); "
            f"resume with the same number, not {ctx.world}."
        )


def _diverged(modules: list[torch.nn.Module], good: dict[str, Any], result: FitResult, epoch: int, what: str) -> None:
    """Restore the last good state and raise :class:`TrainingDivergedError` (for loops without retries)."""
    restore(modules, good)
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}: {what}; stopped and restored the parameters of the last good "
        f"epoch ({result.epochs}). Lower the learning rate or check the data scale.",
        history=result,
    )
