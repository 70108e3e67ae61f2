r"""The training loop: stochastic optimisation of a model/guide pair over minibatches.

:func:`fit` runs any :class:`pyro.infer.ELBO` on a model/guide pair that follows the
mixzoo contract (:mod:`mixzoo.contract`)::

    def model(x, y=None, subsample=None): ...
    def guide(x, y=None, subsample=None): ...

where ``subsample`` holds the minibatch indices chosen by the loop and is passed on to
``pyro.plate("data", len(x), subsample=subsample)``, which scales each minibatch's log
density by :math:`N/B`. An epoch visits every point once in a seeded random order, so
seeded runs repeat exactly.

The loop itself is short; its collaborators live in :mod:`mixzoo.training`: the step (one
:class:`~pyro.infer.SVI` step, or a family's own step such as the two-fold EM +
consistency step), the divergence guard with its retries, the resumable checkpoint and
early stopping on held-out data. Per epoch the loop calls each schedule (annealing),
runs the steps, lets the step decay its learning rate, and records the losses.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyro
import torch
from pyro.infer import ELBO
from pyro.optim import PyroOptim

from ..data.mapped import Reader
from ..data.validation import check_data, check_device, check_labels
from ..errors import MixzooInputError
from ..inference.data_parallel import DistributedContext
from ..inference.optimizer import JointOptim
from ..inference.pair_check import check_pair
from ..inference.step import Step, StepFactory, SVIStep
from ..param_store import StateDict, isolated_param_store, modules_of
from .convergence import Convergence
from .divergence import Diverged, DivergenceGuard
from .early_stopping import EarlyStopping
from .module_state import restore
from .named import resolve
from .persistence import restore_rng
from .progress import Progress
from .resumable import TrainingCheckpoint

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
    """``"max_epochs"``, ``"early_stopping"`` or ``"converged"``."""
    seconds: float = 0.0
    device: str = "cpu"
    retries: int = 0
    """How many times a diverged epoch was retried with half the learning rate."""
    param_state: StateDict = field(default_factory=dict)
    """Final param-store state, for parameters declared by bare ``pyro.param`` statements."""
    step_history: dict[str, list[float]] = field(default_factory=dict)
    """Per-epoch records of the step itself (the two-fold step: ``"kl"``, the consistency loss)."""
    restarts: list[dict[str, Any]] = field(default_factory=list)
    """Every restart of :func:`~mixzoo.app.restarts.fit_restarts` (seed, final loss, score, kept), on the kept result."""
    guide: Any = field(default=None, repr=False)
    """The guide that was trained (built from its name where :func:`fit` was given a name)."""
    loss: Any = field(default=None, repr=False)
    """The loss that trained it."""

    @property
    def converged(self) -> bool:
        """Whether training stopped because the loss no longer changed (``tol``)."""
        return self.stopped == "converged"

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan

    def history(self, best_val: float = math.inf) -> dict[str, Any]:
        """The JSON-like record a checkpoint keeps of this result."""
        return {
            "losses": self.losses,
            "val_losses": self.val_losses,
            "best_epoch": self.best_epoch,
            "best_val": best_val,
            "retries": self.retries,
        }


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
    total, reader = 0.0, Reader(x)
    with torch.no_grad():
        for idx in torch.arange(n, device=x.device).split(batch_size):
            total += float(loss.loss(model, guide, x, None, idx)) * len(idx) / n
            reader.read(len(idx), contiguous=True)
    reader.done()
    return total / n


def _check_options(
    epochs: Any, batch_size: Any, lr: Any, patience: Any, val_data: Any, retries: Any, resume: bool, checkpoint: Any
) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise MixzooInputError(f"epochs must be a positive integer, got {epochs!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise MixzooInputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not lr > 0:
        raise MixzooInputError(f"learning rate must be positive, got {lr!r}.")
    if patience is not None and val_data is None:
        raise MixzooInputError("patience (early stopping) needs val_data to watch.")
    if not isinstance(retries, int) or retries < 0:
        raise MixzooInputError(f"retries must be a non-negative integer, got {retries!r}.")
    if resume and checkpoint is None:
        raise MixzooInputError("resume=True needs the checkpoint file to continue from.")


def fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Any,
    *,
    y: Any = None,
    loss: ELBO | str | None = None,
    guide_options: dict[str, Any] | None = None,
    loss_options: dict[str, Any] | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 1e-2,
    guide_lr: float | None = None,
    lr_decay: float | None = None,
    optim: PyroOptim | None = None,
    step: StepFactory | None = None,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    schedules: Iterable[Schedule] = (),
    val_data: Any = None,
    patience: int | None = None,
    tol: float | None = None,
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
    """Train ``model`` and ``guide`` on ``data`` and return the history.

    :param data: array-like (N, D), a NumPy memmap (float32 data are read in place, a span at a time; other dtypes
        are converted to float32 in memory) or a map-style :class:`torch.utils.data.Dataset` (read once into one
        array); checked before training (see :func:`~mixzoo.data.validation.check_data`).
    :param y: optional observed cluster labels (N,), ``-1`` for unlabelled points, passed to model and guide.
    :param guide: a guide (a Pyro program or module), or the name of a registered guide (``"empty"``,
        ``"posterior"``, ``"encoder"``), built for the model and the data, started on them, with its schedules; the
        trained guide is :attr:`FitResult.guide`.
    :param loss: any :class:`pyro.infer.ELBO`, or the name of a registered algorithm (``"trace-enum"``, ``"em"``,
        ``"vimco"``, ``"rws"``, ...; ``mixzoo models`` lists them); defaults to
        :class:`~mixzoo.inference.TableEnum_ELBO` (Pyro's ``TraceEnum_ELBO``, scored from a model's stated table where
        it has one). A registered algorithm brings the step it needs unless ``step`` is given: closed-form EM for
        ``"em"`` (or an :class:`~mixzoo.inference.EM` object) on a model that offers it.
    :param guide_options: options of a guide given by name (e.g. ``{"temperature": 2.0}``).
    :param loss_options: options of a loss given by name (e.g. ``{"particles": 15}``).
    :param batch_size: minibatch size; ``None`` uses the full data set per step.
    :param guide_lr: Adam's learning rate for the guide's own parameters (an amortized encoder's network);
        ``None``: ``lr``, or the rate a guide given by name declares.
    :param lr_decay: multiply the learning rate by this factor after every epoch.
    :param optim: a Pyro optimizer to use instead of Adam(lr) (``lr``/``lr_decay`` are then ignored).
    :param step: a step factory ``step(model, guide, optim, loss, context=, seed=)`` (see
        :mod:`mixzoo.inference.step`); one :class:`~pyro.infer.SVI` step by default, e.g.
        :func:`mixzoo.inference.two_fold` for Tissera et al.'s (2022) EM + consistency step.
    :param seed: seeds torch, NumPy, Python and the minibatch order; ``None`` leaves the RNGs alone.
    :param device: ``"cpu"`` or ``"cuda"``; the modules and data are moved there before the first step.
    :param schedules: callables ``schedule(epoch)`` run before each epoch.
    :param val_data: held-out array-like; its loss per point is recorded each epoch.
    :param patience: with ``val_data``, stop after this many epochs without improvement and restore the best state.
    :param tol: stop when the relative change of the epoch loss stays below ``tol`` for 3 epochs
        (:mod:`mixzoo.training.convergence`); ``None`` trains all ``epochs``.
    :param progress: report epoch and loss: a bar on a terminal, else a plain line every few seconds
        (:mod:`mixzoo.training.progress`).
    :param param_state: initial param-store state for parameters declared with bare ``pyro.param``.
    :param callback: called as ``callback(epoch, result)`` after each epoch.
    :param retries: on a NaN/inf loss, restore the last good epoch and retry it with half the learning
        rate, at most this many times, before giving up.
    :param checkpoint: file for the resumable training state (see :mod:`mixzoo.training.resumable`),
        written atomically every ``checkpoint_every`` epochs.
    :param resume: continue from the state in ``checkpoint`` (it must exist); with the same seed the run
        ends with the same parameters as one that was never interrupted.
    :param checkpoint_meta: extra JSON-like entries stored with the training state.
    :param distributed: data-parallel training over the initialised :mod:`torch.distributed` process
        group (see :mod:`mixzoo.inference.data_parallel`): shards of each minibatch, all-reduced gradients, rank 0
        alone shows progress and writes the checkpoint.
    :raises MixzooInputError: on bad data or options, or a loss that cannot serve the pair.
    :raises TrainingDivergedError: when the loss or a parameter becomes NaN/inf (after the retries); the last
        good state is restored first.
    """
    _check_options(epochs, batch_size, lr, patience, val_data, retries, resume, checkpoint)
    ctx = DistributedContext.current() if distributed else DistributedContext()
    dev = ctx.device(check_device(device))
    x = check_data(data).to(dev)
    y_t = None if y is None else check_labels(y, x.shape[0]).to(dev)
    x_val = None if val_data is None else check_data(val_data, name="val_data", dim=x.shape[1]).to(dev)
    saver = None if checkpoint is None else TrainingCheckpoint(checkpoint, checkpoint_every, x, ctx, checkpoint_meta)
    saved = saver.load() if saver is not None and resume else None
    if seed is not None:
        set_seed(seed)  # a guide given by name is built here: its starting weights follow the seed
    named = resolve(model, guide, loss, x, guide_options=guide_options, loss_options=loss_options, seed=seed, lr=lr)
    guide, loss = named.guide, named.loss
    step = step or named.step
    schedules = [*schedules, *named.schedules]
    modules = modules_of(model, guide)
    for m in modules:
        m.to(dev)
        m.zero_grad(set_to_none=True)  # a start (e.g. pretraining) may leave gradients the first step would add
    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    if bs < ctx.world:
        raise MixzooInputError(f"batch_size {bs} is smaller than the number of processes ({ctx.world}).")
    if seed is not None:
        set_seed(seed + ctx.rank)  # independent Monte Carlo draws per process, one minibatch order for all
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    result = FitResult(device=str(dev), guide=guide, loss=loss)
    start = time.perf_counter()
    with isolated_param_store(param_state) as store_state:
        check_pair(model, guide, loss, x[: min(n, 8)], None if y_t is None else y_t[: min(n, 8)])
        if optim is None:  # one Adam over all parameters: the updates of pyro.optim.Adam, one step() call
            own_lr = guide_lr if guide_lr is not None else named.guide_lr
            optim = JointOptim(torch.optim.Adam, {"lr": lr}, gamma=lr_decay, lr_of=_guide_rate(model, guide, own_lr))
        if distributed:
            ctx.broadcast(t for m in modules for t in (*m.parameters(), *m.buffers()))
        stepper = (step or SVIStep)(model, guide, optim, loss, context=ctx, seed=seed)
        stopper = EarlyStopping(evaluate_loss, loss, model, guide, x_val, patience, ctx)
        converging = Convergence(tol, patience=getattr(stepper, "convergence_patience", Convergence.patience))
        if saved is not None:
            _resume(saved, modules, stepper, stopper, generator, result, ctx)
        guard = DivergenceGuard(modules, stepper, retries, used=result.retries, warn=ctx.is_main)
        passes = _Epochs(guard, stepper, schedules, x, y_t, bs, generator, ctx, Reader(x))
        report = Progress(result.epochs, epochs, enabled=progress and ctx.is_main)
        for epoch in range(result.epochs, epochs):
            total = passes.run(epoch, result)
            if distributed:
                ctx.broadcast(t for m in modules for t in m.buffers())
            stepper.end_epoch()
            guard.mark_good()
            result.losses.append(total / n)
            result.epochs = epoch + 1
            val, early = stopper.update(epoch, modules)
            if val is not None:
                result.val_losses.append(val)
                result.best_epoch = stopper.best_epoch
            if early:
                result.stopped = "early_stopping"
            elif converging.update(result.losses):
                result.stopped = "converged"
            stop = result.stopped != "max_epochs"
            report.update(epoch, total / n, val)
            if callback is not None:
                callback(epoch, result)
            if saver is not None and saver.due(result.epochs, last=stop or result.epochs == epochs):
                saver.save(
                    result.epochs,
                    modules,
                    stepper.get_state(),
                    generator,
                    result.history(stopper.best_val),
                    stopper.best_modules(),
                )
            if stop:
                break
        report.close()
        stopper.finish(modules)
    result.step_history = dict(getattr(stepper, "history", {}))
    result.param_state = store_state
    result.seconds = time.perf_counter() - start
    return result


def _guide_rate(model: Any, guide: Any, lr: float | None) -> Callable[[torch.Tensor], float | None] | None:
    """``lr`` for the parameters of the guide that are not the model's, else ``None``."""
    if lr is None:
        return None
    own = {id(p) for m in modules_of(guide) for p in m.parameters()} - {
        id(p) for m in modules_of(model) for p in m.parameters()
    }
    return lambda p: lr if id(p) in own else None


def _resume(
    saved: dict[str, Any],
    modules: list[torch.nn.Module],
    stepper: Step,
    stopper: EarlyStopping,
    generator: torch.Generator,
    result: FitResult,
    ctx: DistributedContext,
) -> None:
    """Put a saved training state back into the modules, the step, early stopping and the generators."""
    restore(modules, {"modules": saved["modules"], "store": saved["store"]})
    stepper.set_state(saved["optim"])
    h = saved["history"]
    result.losses, result.val_losses = list(h["losses"]), list(h["val_losses"])
    result.best_epoch, result.retries, result.epochs = h["best_epoch"], h["retries"], int(saved["epoch"])
    stopper.set_state({"best_val": h["best_val"], "best_epoch": h["best_epoch"], "best": saved.get("best")})
    restore_rng(saved["rng"] if ctx.world == 1 else saved["rng"][ctx.rank], generator)


@dataclass
class _Epochs:
    """One pass over the data in a seeded order, guarded against divergence."""

    guard: DivergenceGuard
    stepper: Step
    schedules: Iterable[Schedule]
    x: torch.Tensor
    y: torch.Tensor | None
    batch_size: int
    generator: torch.Generator
    ctx: DistributedContext
    reader: Reader
    """Gives a memory-mapped ``x``'s pages back as the steps read it (:class:`~mixzoo.data.mapped.Reader`)."""

    def run(self, epoch: int, result: FitResult) -> float:
        """The summed loss of one epoch; on divergence the guard restores and retries it (or raises)."""
        while True:
            try:
                return self._once(epoch)
            except Diverged as d:
                self.guard.recover(d, epoch, result.epochs, result)
                result.retries = self.guard.used

    def _once(self, epoch: int) -> float:
        for schedule in self.schedules:
            schedule(epoch)
        n = self.x.shape[0]
        batches = list(torch.randperm(n, generator=self.generator).split(self.batch_size))
        by_range = getattr(self.stepper, "shards_by_range", False)  # closed-form EM: each process its own rows
        batches = self.ctx.cover(batches, n, by_range)  # every process gets at least one row of each batch
        total = 0.0
        for i, idx in enumerate(batches, start=1):
            try:
                step_loss = self.stepper(self.x, self.y, idx.to(self.x.device))
            except ValueError:  # distribution argument checks reject NaN parameters
                self.guard.check_parameters(i)
                raise
            except torch.linalg.LinAlgError as err:  # a covariance that lost positive-definiteness
                raise Diverged(
                    i, f"a covariance matrix is no longer positive-definite ({str(err).splitlines()[0]})"
                ) from None
            self.reader.read(len(idx))
            self.guard.check_loss(step_loss, i)
            total += step_loss * len(idx) / n
        self.reader.done()
        self.guard.check_parameters(len(batches))
        return total
