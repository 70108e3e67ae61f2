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

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyro
import torch
from pyro.infer import ELBO, SVI, TraceEnum_ELBO
from pyro.optim import Adam, ExponentialLR, PyroOptim
from tqdm.auto import tqdm

from .errors import MixzooInputError, TrainingDivergedError
from .inference.compat import check_pair
from .params import StateDict, all_finite, isolated_param_store, modules_of, restore, snapshot
from .validation import check_data, check_labels

__all__ = ["fit", "FitResult", "Schedule", "set_seed"]


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
    param_state: StateDict = field(default_factory=dict)
    """Final param-store state, for parameters declared by bare ``pyro.param`` statements."""

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA) in one call."""
    pyro.set_rng_seed(seed)


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
    :raises MixzooInputError: on bad data or options, or a loss that cannot serve the pair.
    :raises TrainingDivergedError: when the loss or a parameter becomes NaN/inf; the last good state is restored first.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise MixzooInputError(f"epochs must be a positive integer, got {epochs!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise MixzooInputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not lr > 0:
        raise MixzooInputError(f"learning rate must be positive, got {lr!r}.")
    if patience is not None and val_data is None:
        raise MixzooInputError("patience (early stopping) needs val_data to watch.")
    dev = _resolve_device(device)
    x = check_data(data).to(dev)
    y_t = None if y is None else check_labels(y, x.shape[0]).to(dev)
    x_val = None if val_data is None else check_data(val_data, name="val_data", dim=x.shape[1]).to(dev)
    loss = loss if loss is not None else TraceEnum_ELBO(max_plate_nesting=1)
    modules = modules_of(model, guide)
    for m in modules:
        m.to(dev)
    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    if seed is not None:
        set_seed(seed)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)

    result = FitResult(device=str(dev))
    start = time.perf_counter()
    with isolated_param_store(param_state) as store_state:
        check_pair(model, guide, loss, x[: min(n, 8)], None if y_t is None else y_t[: min(n, 8)])
        if optim is None:
            if lr_decay is None:
                optim = Adam({"lr": lr})
            else:
                optim = ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": lr}, "gamma": lr_decay})
        svi = SVI(model, guide, optim, loss)
        good = snapshot(modules)
        best_val, best_state = math.inf, None
        bar = tqdm(range(epochs), disable=not progress, desc="fit", unit="epoch", leave=False)
        for epoch in bar:
            for schedule in schedules:
                schedule(epoch)
            total = 0.0
            for idx in _batches(n, bs, generator):
                idx = idx.to(dev)
                try:
                    step_loss = svi.step(x, y_t, idx)
                except ValueError:  # distribution argument checks reject NaN parameters
                    if all_finite(modules):
                        raise
                    _diverged(modules, good, result, epoch, "a parameter became NaN/inf")
                if not math.isfinite(step_loss):
                    _diverged(modules, good, result, epoch, f"the loss became {step_loss}")
                total += step_loss * len(idx) / n
            if not all_finite(modules):
                _diverged(modules, good, result, epoch, "a parameter became NaN/inf")
            good = snapshot(modules)
            if hasattr(optim, "step"):
                optim.step()
            result.losses.append(total / n)
            result.epochs = epoch + 1
            postfix = {"loss": f"{total / n:.4g}"}
            if x_val is not None:
                with torch.no_grad():
                    val = float(loss.loss(model, guide, x_val)) / x_val.shape[0]
                result.val_losses.append(val)
                postfix["val"] = f"{val:.4g}"
                if val < best_val:
                    best_val, best_state, result.best_epoch = val, snapshot(modules), epoch
                elif patience is not None and epoch - (result.best_epoch or 0) >= patience:
                    result.stopped = "early_stopping"
                    break
            bar.set_postfix(postfix)
            if callback is not None:
                callback(epoch, result)
        bar.close()
        if best_state is not None and patience is not None:
            restore(modules, best_state)
    result.param_state = store_state
    result.seconds = time.perf_counter() - start
    return result


def _diverged(modules: list[torch.nn.Module], good: dict[str, Any], result: FitResult, epoch: int, what: str) -> None:
    restore(modules, good)
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}: {what}; stopped and restored the parameters of the last good "
        f"epoch ({result.epochs}). Lower the learning rate or check the data scale.",
        history=result,
    )
