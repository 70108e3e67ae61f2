"""Inference algorithms by name, and what each needs of a model and a guide.

Each algorithm's file registers one :class:`Algorithm`: its loss factory (a :class:`pyro.infer.ELBO`), its
typed options, the step it needs where one SVI step is not it (closed-form EM), and its requirements, stated as
a function of the model's declared :class:`~mixzoo.contract.ModelCapabilities` and the guide's
:class:`GuideFacts`. Which losses serve a model and guide is derived from these requirements; nobody keeps a list
of pairs. :func:`~mixzoo.inference.pair_check.check_pair` proves the choice on the first minibatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyro.infer import ELBO

from ..contract import ModelCapabilities
from ..errors import MixzooInputError
from ..options import Options
from .step import StepFactory

__all__ = [
    "Algorithm",
    "GuideFacts",
    "LossContext",
    "ALGORITHMS",
    "register_algorithm",
    "get_algorithm",
    "algorithm_of",
    "NoOptions",
    "needs_normalized",
    "needs_sampled_y",
    "first",
]


@dataclass(frozen=True)
class NoOptions(Options):
    """An algorithm without options."""


@dataclass(frozen=True)
class GuideFacts:
    """What an algorithm may ask of a guide before it is built (a registered guide declares them).

    :param name: the guide's name, for messages.
    :param samples_y: it samples (or enumerates) ``"y"``; ``False`` for the empty guide.
    :param held_fixed: its :math:`q(y \\mid x)` is the model's posterior, computed without gradient (the E-step).
    :param samples_local: it also samples the model's per-point latents besides ``"y"`` (a family's own guide).
    """

    name: str
    samples_y: bool
    held_fixed: bool = False
    samples_local: bool = False


@dataclass(frozen=True)
class LossContext:
    """What the data may hand a loss: the deep-transfer noise (a classifier's training data with their density,
    eq. 28 of Matsuda and Hyvärinen 2019), which NCE uses in place of its default."""

    noise: Any = None


Requirement = Callable[[ModelCapabilities, GuideFacts], str | None]
"""``requires(model, guide)``: ``None`` where the algorithm serves them, else the reason, in words."""


@dataclass(frozen=True)
class Algorithm:
    """A registered inference algorithm.

    :param name: the loss's name (``--loss NAME``).
    :param description: one line for ``mixzoo models``.
    :param cite: the reference.
    :param loss_class: the class of the losses :attr:`make` returns (a loss object given to
        :func:`mixzoo.fit` is matched to its algorithm by it).
    :param make: ``make(options, context) -> ELBO``.
    :param requires: see :data:`Requirement`.
    :param options: the algorithm's :class:`~mixzoo.options.Options` (e.g. ``particles``).
    :param step: ``step(model capabilities) -> StepFactory | None``: the step the algorithm needs for this model,
        ``None`` for one SVI step.
    :param closed_form: ``closed_form(model capabilities) -> bool``: the step sets the parameters in closed form,
        so no learning rate applies.
    :param takes_labels: whether observed cluster labels (``--labels``) mean something to it.
    """

    name: str
    description: str
    cite: str
    loss_class: type[ELBO]
    make: Callable[[Any, LossContext], ELBO]
    requires: Requirement
    options: type[Options] = NoOptions
    step: Callable[[ModelCapabilities], StepFactory | None] = field(default=lambda caps: None)
    closed_form: Callable[[ModelCapabilities], bool] = field(default=lambda caps: False)
    takes_labels: bool = True

    def loss(self, options: Options | dict[str, Any] | None = None, context: LossContext | None = None) -> ELBO:
        """A fresh loss with these options (a mapping is checked by the options class)."""
        opts = options if isinstance(options, Options) else self.options.from_dict(options or {})
        return self.make(opts, context or LossContext())

    def reason(self, model: ModelCapabilities, guide: GuideFacts) -> str | None:
        """Why this algorithm cannot serve the model with the guide, or ``None`` where it can."""
        return self.requires(model, guide)


ALGORITHMS: dict[str, Algorithm] = {}
"""Registered algorithms by name (filled by importing :mod:`mixzoo.inference`)."""


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm to :data:`ALGORITHMS`; its options class learns its name for messages."""
    if algorithm.name in ALGORITHMS and ALGORITHMS[algorithm.name] is not algorithm:
        raise ValueError(f"an algorithm named {algorithm.name!r} is already registered")
    if algorithm.options is not NoOptions:
        algorithm.options.owner = f"loss {algorithm.name!r}"
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered as ``name``, or a clear error listing the known names."""
    if name not in ALGORITHMS:
        raise MixzooInputError(f"unknown loss {name!r}; choose one of: {', '.join(ALGORITHMS)} (see `mixzoo models`).")
    return ALGORITHMS[name]


def algorithm_of(loss: ELBO) -> Algorithm | None:
    """The registered algorithm whose losses are of ``loss``'s class (the most specific one), or ``None``."""
    matches = [a for a in ALGORITHMS.values() if isinstance(loss, a.loss_class)]
    return min(matches, key=lambda a: len(type(loss).__mro__) - len(a.loss_class.__mro__), default=None)


def needs_normalized(model: ModelCapabilities) -> str | None:
    """The requirement of every loss that bounds :math:`\\log p(x)`: a normalized model."""
    if not model.normalized:
        return "needs a normalized model (it bounds log p(x)); this one is known only up to its normalizers: use --loss nce"
    return None


def needs_sampled_y(guide: GuideFacts) -> str | None:
    """The requirement of the losses that draw ``y`` from the guide."""
    if not guide.samples_y:
        return f"draws the cluster from the guide, and guide {guide.name!r} samples none: use --guide encoder or posterior"
    return None


def first(*reasons: str | None) -> str | None:
    """The first failed requirement, or ``None``."""
    return next((r for r in reasons if r is not None), None)
