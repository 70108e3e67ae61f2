"""Guides by name, each with its options, its schedules and what it needs of a model.

Each guide's file registers one :class:`GuideSpec`; a family registers its own guides (the GMVAE's ``qzxy`` and
``mean-field``) from its own file, with ``family`` set. A library guide serves every model whose declared
capabilities (:class:`~mixzoo.contract.ModelCapabilities`) meet its requirement; the losses it can be trained with
follow from the facts it declares (:class:`~mixzoo.inference.registry.GuideFacts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..contract import ModelCapabilities
from ..data.shape import DataShape
from ..errors import MixzooInputError
from ..inference.registry import GuideFacts
from ..options import Options

__all__ = ["GuideSpec", "GUIDES", "GUIDE_PARAMS", "register_guide", "get_guide", "NoGuideOptions", "needs_enumerable_y", "Schedule"]

Schedule = Callable[[int], None]
"""Called with the epoch index (0-based) before that epoch's first step."""

GUIDE_PARAMS = "guide"
"""The prefix of a guide module's parameter names in Pyro's store. Pyro names a top-level module's parameters by their
attribute paths alone, so a model and a guide that both hold a ``net`` would share its parameters there: the guide's
own go under ``guide.``."""


@dataclass(frozen=True)
class NoGuideOptions(Options):
    """A guide without options."""


def initialize(module: nn.Module, x: Any, seed: int) -> None:
    """Call the module's ``initialize(x, seed=...)`` where it has one."""
    if callable(getattr(module, "initialize", None)):
        module.initialize(x, seed=seed)


def needs_enumerable_y(model: ModelCapabilities) -> str | None:
    """The requirement of the library guides: ``y`` is the model's only per-point latent."""
    if not model.enumerable_y:
        return f"covers y alone, and the model also has {', '.join(model.local_latents)} for a guide to sample"
    return None


Builder = Callable[[nn.Module, int, DataShape, Any, Any], nn.Module]
"""``build(model, n_clusters, data, options, family_options) -> guide``."""


@dataclass(frozen=True)
class GuideSpec:
    """A registered guide.

    :param name: the name on the command line (``--guide NAME``).
    :param description: one line for ``mixzoo models``.
    :param build: see :data:`Builder`; ``family_options`` are the model family's (a family guide builds from them).
    :param samples_y: the guide samples (or enumerates) ``"y"``.
    :param held_fixed: its :math:`q(y \\mid x)` is the model's posterior under the current parameters (the E-step).
    :param options: the guide's :class:`~mixzoo.options.Options`.
    :param requires: ``requires(model capabilities) -> reason | None``.
    :param schedules: ``schedules(guide, options)``: per-epoch schedules of the built guide (annealing).
    :param start: ``start(guide, model, x, seed, options)``: the guide's data-dependent start, once the model has
        had its own (an encoder taught the model's posterior); ``initialize(x, seed=...)`` of the guide by default.
    :param learning_rate: ``learning_rate(options, lr) -> lr | None``: Adam's rate for the guide's own parameters
        given the training's ``lr`` (a network learns at another rate than a model's few globals); ``None``: ``lr``.
    :param family: the family whose own guide this is (``None``: a library guide, for every model it suits).
    :param samples_local: it also samples the model's per-point latents besides ``"y"``.
    """

    name: str
    description: str
    build: Builder
    samples_y: bool
    held_fixed: bool = False
    options: type[Options] = NoGuideOptions
    requires: Callable[[ModelCapabilities], str | None] = needs_enumerable_y
    schedules: Callable[[nn.Module, Any], list[Schedule]] = field(default=lambda guide, options: [])
    start: Callable[..., None] = field(default=lambda guide, model, x, seed, options: initialize(guide, x, seed))
    learning_rate: Callable[[Any, float], float | None] = field(default=lambda options, lr: None)
    family: str | None = None
    samples_local: bool = False

    @property
    def facts(self) -> GuideFacts:
        """What the losses may ask of this guide."""
        return GuideFacts(self.name, self.samples_y, self.held_fixed, self.samples_local)

    def reason(self, model: ModelCapabilities, family: str) -> str | None:
        """Why this guide cannot serve a model of ``family`` with these capabilities, or ``None``."""
        if self.family is not None and self.family != family:
            return f"is the {self.family} family's own guide"
        return self.requires(model)

    def make_options(self, values: dict[str, Any] | None = None) -> Options:
        """The guide's options from a mapping, checked; the defaults for the rest."""
        return self.options.from_dict(values or {})


GUIDES: dict[str, GuideSpec] = {}
"""Registered guides by name (the library's when :mod:`mixzoo.guides` is imported; a family's with its family)."""


def register_guide(spec: GuideSpec) -> GuideSpec:
    """Add a guide to :data:`GUIDES`; its options class learns its name for messages."""
    if spec.name in GUIDES and GUIDES[spec.name] is not spec:
        raise ValueError(f"a guide named {spec.name!r} is already registered")
    if spec.options is not NoGuideOptions:
        spec.options.owner = f"guide {spec.name!r}"
    GUIDES[spec.name] = spec
    return spec


def get_guide(name: str) -> GuideSpec:
    """The guide registered as ``name``, or a clear error listing the known names (a family's own guides are
    registered once :mod:`mixzoo.models` is imported, as importing :mod:`mixzoo` does)."""
    if name not in GUIDES:
        raise MixzooInputError(f"unknown guide {name!r}; choose one of: {', '.join(GUIDES)} (see `mixzoo models`).")
    return GUIDES[name]
