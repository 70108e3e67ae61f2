r"""Losses scored from a model's stated table of :math:`\log p(x_n, y_n = k)`, without tracing.

A mixture whose only latent is the enumerated cluster site ``"y"`` scores a minibatch :math:`B` through
the (B, K) table

.. math:: T_{nk} = \log p(y_n = k) + \textstyle\sum_s \log p_s(x_n \mid y_n = k)

of its data-plate sites :math:`s`. The losses of such a model are functions of :math:`T` alone:
:class:`~pyro.infer.TraceEnum_ELBO` with the empty guide is
:math:`-\frac{N}{B} \sum_n \log \sum_k \exp T_{nk}`, the EM objective of
:class:`~mixzoo.inference.em.EM` is :math:`-\frac{N}{B} \sum_{n,k} r_{nk} T_{nk}`, and NCE needs
:math:`\log \sum_k \exp T_{nk}` on data and noise. For small models the two traces of an SVI step
(messengers, plates, enumeration, one ``pyro.param`` per parameter access) cost as much as the arithmetic
itself (section ``step-speed-cpu`` of docs/benchmarks.md).

A model states :math:`T` as a method ``log_joint(x)``, computed the way its ``forward`` scores the
minibatch ``x`` (training mode included: batch statistics, random transforms). A loss then computes its
value from the table once the traced loss has confirmed the pair, which :class:`StatedTable` tracks:

1. On the first evaluation of each model/guide pair, the traced loss runs once without gradient (Pyro's
   checks of the pair run in it) and records the parameter sites; one trace of the model and one of the guide
   confirm the structure: an enumerated ``"y"``, every other sample site observed inside the ``"data"``
   plate, and no latent in the guide but ``"y"``.
2. Every evaluation of a confirmed pair, the first included, computes the loss from ``log_joint`` and
   restates the recorded parameters with ``pyro.param``, so that :class:`~pyro.infer.SVI` optimizes exactly
   the parameters the trace would give it.

The traced evaluation stays the definition. It is used whenever the table may not be the model's: labels
are observed, keyword arguments are passed, a subclass redefines ``forward`` without ``log_joint``, the
pair is new, a recorded parameter left the parameter store, or a Pyro handler other than SVI's parameter
capture is active around the loss. Each family's table is tested against its traced loss and gradients.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from pyro.util import warn_if_nan

from ..contract import CLUSTER_SITE, in_data_plate, is_subsample

__all__ = ["StatedTable", "states", "backward_value"]

TABLE_METHOD = "log_joint"
"""The method by which a model states its (B, K) table."""


def _owner(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def states(module: Any, method: str = TABLE_METHOD) -> bool:
    """Whether a model (or guide) states what its ``forward`` scores by ``method``, defined by the class that
    defines its ``forward`` (a subclass that rescored the data in ``forward`` alone would make it wrong)."""
    cls = type(module)
    owner = _owner(cls, method)
    return owner is not None and owner is _owner(cls, "forward")


def _outside_handlers_only_capture_params() -> bool:
    """No Pyro handler but SVI's parameter capture is active: the untraced loss would bypass any other."""
    return all(isinstance(m, TraceMessenger) and m.param_only for m in _PYRO_STACK)


def minibatch(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(x, idx)`` of a call ``loss(model, guide, x, y=None, idx=None)`` with no labels and no keyword arguments,
    else ``None`` (the traced loss handles it)."""
    if kwargs or not 1 <= len(args) <= 3 or not isinstance(args[0], torch.Tensor):
        return None
    x, y, idx = (*args, None, None)[:3]
    if y is not None or not (idx is None or isinstance(idx, torch.Tensor)):
        return None
    return x, idx


def backward_value(loss: torch.Tensor) -> float:
    """Backpropagate a loss scored from the table (where it has a gradient) and return its value, as
    ``loss_and_grads`` does; a NaN or infinite value is warned about like Pyro's own losses."""
    if loss.requires_grad:
        loss.backward()
    value = float(loss.detach())
    warn_if_nan(value, "loss")
    return value


def _structure_ok(model: Callable[..., Any], guide: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """One trace of each without gradient. The model: an enumerated ``"y"``, every other sample site observed in
    the data plate. The guide: no sample site but ``"y"``, enumerated in the data plate."""
    with torch.no_grad():
        trace = poutine.trace(poutine.enum(model, first_available_dim=-2)).get_trace(*args)
        guide_trace = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(*args)
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or is_subsample(site):
            continue
        if name != CLUSTER_SITE or site["infer"].get("enumerate") != "parallel" or not in_data_plate(site):
            return False
    y = trace.nodes.get(CLUSTER_SITE)
    if y is None or y["type"] != "sample" or y["is_observed"] or y["infer"].get("enumerate") != "parallel":
        return False
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or is_subsample(site):
            continue
        if not in_data_plate(site) or (name != CLUSTER_SITE and not site["is_observed"]):
            return False
    return True


class StatedTable:
    """Which model/guide pairs a loss may score from ``model.log_joint``, and the parameters to restate for them.

    Pairs are held by weak references, like :class:`~mixzoo.inference.validated.ValidatedPairs`.

    :param guide_ok: whether a guide is one the table's loss is written for (e.g. the empty guide).
    """

    def __init__(self, guide_ok: Callable[[Any, Any], bool]) -> None:
        self.guide_ok = guide_ok
        self._pairs: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, tuple[str, ...] | None]] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"guide_ok": self.guide_ok}  # the confirmed pairs are live objects: an unpickled loss confirms anew

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["guide_ok"])  # type: ignore[misc]

    def _known(self, model: Any, guide: Any) -> tuple[bool, tuple[str, ...] | None]:
        try:
            guides = self._pairs.get(model)
            if guides is None or guide not in guides:
                return False, None
            return True, guides[guide]
        except TypeError:  # not weakly referenceable
            return False, None

    def batch(
        self, model: Any, guide: Any, args: tuple[Any, ...], kwargs: dict[str, Any], check: Callable[[], object]
    ) -> tuple[int, torch.Tensor] | None:
        """``(N, x_b)``: the data set's size and the minibatch to score from the table, or ``None`` where this
        evaluation is traced. Confirms a new pair first, and restates the parameters when the table is used.

        :param check: the loss's traced evaluation, run once without gradient on a new pair: Pyro's checks of
            the pair run in it, and it records the parameter sites.
        """
        call = minibatch(args, kwargs)
        if call is None or not _outside_handlers_only_capture_params():
            return None
        known, names = self._known(model, guide)
        if not known:
            if not self._candidate(model, guide):
                return None
            names = self._confirm(model, guide, args, check)
        if names is None:
            return None
        store = pyro.get_param_store()
        if not all(n in store for n in names):
            return None
        for n in names:
            pyro.param(n)
        x, idx = call
        return x.shape[0], (x if idx is None else x[idx])

    def _confirm(self, model: Any, guide: Any, args: tuple[Any, ...], check: Callable[[], object]) -> tuple[str, ...] | None:
        """Run ``check`` and the structure trace, and remember the pair's parameter names (``None``: not usable).
        Every evaluation of a confirmed pair, the first included, is then scored from the table, so that a run
        resumed from a checkpoint repeats the same arithmetic."""
        x = args[0]
        devices = [x.device] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # the checks draw nothing from the run's random stream
            with torch.no_grad(), poutine.trace(param_only=True) as capture:
                check()
            names = tuple(name for name, site in capture.trace.nodes.items() if site["type"] == "param")
            result = names if _structure_ok(model, guide, args[:1] + (None,) + args[2:3]) else None
        try:
            self._pairs.setdefault(model, weakref.WeakKeyDictionary())[guide] = result
        except TypeError:
            pass
        return result

    def _candidate(self, model: Any, guide: Any) -> bool:
        return states(model) and self.guide_ok(model, guide)
