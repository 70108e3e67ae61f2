"""A guide and a loss given to :func:`~mixzoo.training.loop.fit` by name (``guide="encoder"``, ``loss="vimco"``).

A guide's name builds the registered guide for the model and the data (its start and schedules come with it); a
loss's name builds the registered algorithm's loss, and brings the step it needs (closed-form EM for a model that
offers it). Names are checked against what the model declares (:class:`~mixzoo.contract.ModelCapabilities`) before
anything is built, with the reason in one line; objects are checked by their traces on the first minibatch
(:func:`~mixzoo.inference.pair_check.check_pair`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO

from ..contract import ModelCapabilities
from ..data.shape import DataShape
from ..errors import MixzooInputError
from ..guides.empty import EmptyGuide
from ..guides.registry import Schedule, get_guide
from ..inference.enumeration import enumerated_log_joint
from ..inference.registry import Algorithm, GuideFacts, algorithm_of, get_algorithm
from ..inference.step import StepFactory
from ..inference.trace_enum import TableEnum_ELBO
from ..param_store import isolated_param_store

__all__ = ["Resolved", "resolve"]


@dataclass
class Resolved:
    """The guide and loss objects of a fit, the step the loss needs, and the guide's schedules."""

    guide: Any
    loss: ELBO
    step: StepFactory | None = None
    schedules: list[Schedule] = field(default_factory=list)
    guide_lr: float | None = None
    """The learning rate the guide's registration declares for its own parameters, if any."""


def _facts(guide: Any) -> GuideFacts | None:
    """What a guide object declares of itself, or ``None`` for one that declares nothing (a plain function)."""
    cls = type(getattr(guide, "__self__", guide))
    if not hasattr(cls, "samples_y"):
        return None
    return GuideFacts(cls.__name__, bool(cls.samples_y), bool(getattr(cls, "held_fixed", False)))


def n_clusters_of(model: Callable[..., Any], x: torch.Tensor) -> int:
    """The number of clusters of a model: its ``n_clusters``, else the size of its enumerated ``"y"``."""
    k = getattr(getattr(model, "__self__", model), "n_clusters", None)
    if isinstance(k, int) and not isinstance(k, bool):
        return k
    with torch.no_grad(), isolated_param_store(), poutine.block():
        return int(enumerated_log_joint(model, EmptyGuide(), x[: min(len(x), 2)]).shape[1])


def resolve(
    model: Callable[..., Any],
    guide: Any,
    loss: ELBO | str | None,
    x: torch.Tensor,
    *,
    guide_options: dict[str, Any] | None = None,
    loss_options: dict[str, Any] | None = None,
    seed: int | None = 0,
    lr: float = 1e-2,
) -> Resolved:
    """Build what names name; check the names against the model's declared capabilities.

    :raises MixzooInputError: for an unknown name, options a name does not take, a guide or loss that cannot serve
        the model (the reason), or options given with an object.
    """
    caps = ModelCapabilities.of(getattr(model, "__self__", model))
    family = type(getattr(model, "__self__", model)).__name__
    schedules: list[Schedule] = []
    guide_lr = None
    if isinstance(guide, str):
        spec = get_guide(guide)
        why = spec.reason(caps, family)
        if spec.family is not None:
            why = f"is the {spec.family} family's own guide, built from the family's options: use Family.build_pair"
        if why is not None:
            raise MixzooInputError(f"guide {spec.name!r} {why}.")
        options = spec.make_options(guide_options)
        shape = DataShape(int(x.shape[0]), int(x.shape[1]))
        guide = spec.build(model, n_clusters_of(model, x), shape, options, None)  # type: ignore[arg-type]
        spec.start(guide, model, x, 0 if seed is None else seed, options)
        schedules = list(spec.schedules(guide, options))
        guide_lr = spec.learning_rate(options, lr)
        facts: GuideFacts | None = spec.facts
    elif guide_options:
        raise MixzooInputError("guide_options apply to a guide given by name; this guide is an object.")
    else:
        facts = _facts(guide)
    algorithm: Algorithm | None
    if isinstance(loss, str):
        algorithm = get_algorithm(loss)
        loss = algorithm.loss(loss_options or {})
    elif loss_options:
        raise MixzooInputError("loss_options apply to a loss given by name; this loss is an object.")
    else:
        loss = loss if loss is not None else TableEnum_ELBO(max_plate_nesting=1)
        algorithm = algorithm_of(loss)
    if algorithm is not None and facts is not None:
        why = algorithm.reason(caps, facts)
        if why is not None:
            raise MixzooInputError(f"loss {algorithm.name!r} {why}.")
    step = algorithm.step(caps) if algorithm is not None else None
    return Resolved(guide, loss, step, schedules, guide_lr)
