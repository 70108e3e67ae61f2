r"""The two-fold optimisation of the 001 paper (Algorithm 1, section 7).

For each minibatch :math:`x` and one random transformation :math:`x^{tr} = T(x)`:

1. **EM step** - one :class:`pyro.infer.SVI` step with :class:`~mixzoo.inference.em.EM`
   on eq. (7): the E-step guide gives :math:`p = \operatorname{softmax}(a^*)` (held
   constant) and the model scores :math:`\log\sigma(a^*/\gamma) + \log\sigma(a^{tr*}/\gamma)`.
2. **Consistency step** - with the updated parameters, :math:`p_i` is computed afresh
   (held constant) and one step of a separate optimizer, with its own learning rate,
   lowers eq. (8):

   .. math:: D_{KL}(p_i \,\|\, q_i) = \sum_k p_{ik} \log \frac{p_{ik}}{q_{ik}},
      \qquad q_i = \operatorname{softmax}(a^{tr*}_i).

With ``consistency=False`` only step 1 runs: the paper's "EM optimization (eq. 7)"
row of Table 3. Both steps normalize the scores with the batch's statistics, as in
training; only the EM step updates the running statistics.

The minibatch order, the transformations and the initial state are seeded, and a
NaN/inf loss or parameter stops training after restoring the last good epoch, as
in :func:`mixzoo.fit`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pyro.infer import SVI
from tqdm.auto import tqdm

from ..errors import MixzooInputError
from ..joint_optim import JointOptim
from ..params import all_finite, isolated_param_store, modules_of, snapshot
from ..train import FitResult, _batches, _diverged, _resolve_device, set_seed
from ..validation import check_data
from .compat import check_pair
from .em import EM

__all__ = ["fit_two_fold", "TwoFoldResult", "consistency_loss"]


@dataclass
class TwoFoldResult(FitResult):
    """:class:`~mixzoo.train.FitResult` plus the consistency loss (mean KL per point) per epoch."""

    kl: list[float] = field(default_factory=list)


def consistency_loss(model: Any, x: torch.Tensor, x_aug: torch.Tensor) -> torch.Tensor:
    """Eq. (8) averaged over the batch, with :math:`p` from the original inputs held constant."""
    with torch.no_grad():
        log_p = F.log_softmax(model.scores(x, batch_stats=True), -1)
    log_q = F.log_softmax(model.scores(x_aug, batch_stats=True), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def fit_two_fold(
    model: Any,
    guide: Callable[..., Any],
    data: Any,
    *,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 5e-5,
    consistency_lr: float = 1e-4,
    consistency: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    callback: Callable[[int, TwoFoldResult], None] | None = None,
) -> TwoFoldResult:
    """Train a neural mixture with Algorithm 1 (EM step on eq. 7, then a KL consistency step).

    :param model: a model with ``scores(x, batch_stats)`` and an ``x_aug`` argument
        (:class:`~mixzoo.models.neural_mixture.NeuralMixture`).
    :param guide: its E-step guide (:class:`~mixzoo.guides.estep.EStepGuide`).
    :param augment: ``augment(x_batch, generator) -> x_tr``; defaults to the model's own ``augment``.
    :param lr: Adam learning rate of the EM step (the paper: 5e-5).
    :param consistency_lr: Adam learning rate of the consistency step (the paper: 1e-4).
    :param consistency: run the consistency step (``False``: EM on eq. 7 only).
    :raises MixzooInputError: on bad data or options.
    :raises TrainingDivergedError: on a NaN/inf loss or parameter, after restoring the last good epoch.
    """
    augment = augment if augment is not None else getattr(model, "augment", None)
    if augment is None:
        raise MixzooInputError(
            "the two-fold optimisation needs image augmentations: build the model with augment=True."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise MixzooInputError(f"epochs must be a positive integer, got {epochs!r}.")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise MixzooInputError(f"batch_size must be an integer of at least 2, got {batch_size!r}.")
    if not (lr > 0 and consistency_lr > 0):
        raise MixzooInputError(f"learning rates must be positive, got {lr!r} and {consistency_lr!r}.")
    dev = _resolve_device(device)
    x = check_data(data).to(dev)
    modules = modules_of(model, guide)
    for m in modules:
        m.to(dev)
    n = x.shape[0]
    set_seed(seed)
    order = torch.Generator().manual_seed(seed)
    draws = torch.Generator().manual_seed(seed + 1)
    loss = EM()
    result = TwoFoldResult(device=str(dev))
    start = time.perf_counter()
    with isolated_param_store():
        check_pair(model, guide, loss, x[: min(n, 8)], None)
        svi = SVI(model, guide, JointOptim(torch.optim.Adam, {"lr": lr}), loss)
        kl_optim = torch.optim.Adam(model.parameters(), lr=consistency_lr)
        good = snapshot(modules)
        bar = tqdm(range(epochs), disable=not progress, desc="two-fold", unit="epoch", leave=False)
        for epoch in bar:
            total, total_kl = 0.0, 0.0
            for idx in _batches(n, batch_size, order):
                if len(idx) < 2:
                    continue  # a batch of one cannot be normalized
                idx = idx.to(dev)
                xb = x[idx]
                x_tr = augment(xb, draws)
                step = svi.step(x, None, idx, x_aug=x_tr)
                if not math.isfinite(step):
                    _diverged(modules, good, result, epoch, f"the EM loss became {step}")
                total += step * len(idx) / n
                if consistency:
                    kl = consistency_loss(model, xb, x_tr)
                    kl_optim.zero_grad()
                    kl.backward()
                    kl_optim.step()
                    kl_optim.zero_grad()  # the next EM step must not see this step's gradient
                    total_kl += kl.item() * len(idx) / n
            if not all_finite(modules) or not math.isfinite(total_kl):
                _diverged(modules, good, result, epoch, "a parameter or the consistency loss became NaN/inf")
            good = snapshot(modules)
            result.losses.append(total / n)
            result.kl.append(total_kl)
            result.epochs = epoch + 1
            bar.set_postfix({"loss": f"{total / n:.4g}", "kl": f"{total_kl:.3g}"})
            if callback is not None:
                callback(epoch, result)
        bar.close()
    result.seconds = time.perf_counter() - start
    return result
