"""Model families: what a family file registers, and the registry the CLI, the estimator and ``select`` read.

A family is one file under :mod:`mixzoo.models`. It declares its :class:`~mixzoo.options.Options`
dataclass and registers one :class:`Family`::

    register(Family(
        name="gmm",
        description="Gaussian mixture, diag/full covariance, maximum likelihood with y enumerated",
        cite="the reference",
        options=GMMOptions,
        build=build,                    # (dim, n_clusters, guide, options) -> (model, guide)
        guides=("empty",),
        losses=("trace-enum",),
        recipe=recipe,                  # (options, data, loss) -> Training: the default recipe
    ))

Everything else (the CLI's flags and ``--help``, ``mixzoo models``, the estimator's
``model_options``, ``select``, summaries and the test matrix) discovers it from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro.infer import ELBO
from torch import nn

from ..inference import make_loss
from ..options import Options

__all__ = ["Family", "Training", "DataShape", "register", "principal_components", "MODELS"]


@dataclass(frozen=True)
class DataShape:
    """What a recipe may know of the data before training: its size, and whether it is an image."""

    n: int
    dim: int
    image_shape: tuple[int, ...] | None = None
    levels: int | None = None
    """Integer intensity levels (e.g. 256 for raw MNIST), ``None`` for continuous data."""
    learned_features: bool = False
    """The data are a trained network's features (deep transfer, ``--pretrain-classes``), not measurements."""


@dataclass(frozen=True)
class Training:
    """A family's training defaults (the recipe): what ``mixzoo fit`` uses when no flag says otherwise."""

    epochs: int
    lr: float | None
    """Adam's learning rate (``None`` for a loss that sets the parameters in closed form)."""
    lr_decay: float | None = None
    batch_size: int | None = None
    n_init: int = 1
    tol: float | None = None
    """Stop when the relative change of the epoch loss stays below this for 3 epochs (``None``: never)."""


Builder = Callable[[int, int, str, Any], tuple[nn.Module, nn.Module]]
Recipe = Callable[[Any, "DataShape | None", str], Training]
Adapt = Callable[[Any, frozenset[str], DataShape], Any]
Schedules = Callable[[nn.Module, nn.Module, Any], list[Callable[[int], None]]]
Initializer = Callable[..., None]
StepChoice = Callable[[Any], Callable[..., Any] | None]


def _same(options: Any, given: frozenset[str], data: DataShape) -> Any:
    return options


def _no_schedules(model: nn.Module, guide: nn.Module, options: Any) -> list[Callable[[int], None]]:
    return []


def _initialize_each(model: nn.Module, guide: nn.Module, x: Any, seed: int, options: Any, loss: Any = None) -> None:
    for module in (model, guide):
        if hasattr(module, "initialize"):
            module.initialize(x, seed=seed)


def _svi_step(options: Any) -> None:
    return None


def _keep_features(data: DataShape, options: Any = None) -> int | None:
    return None


def principal_components(above: int = 100, keep: int = 50) -> Callable[..., int | None]:
    """A ``reduce`` rule: data with more than ``above`` features go to ``keep`` principal components.

    The rule of the density families on images: on raw MNIST (784 pixels) a Gaussian, Student-t, energy or
    flow mixture is slow and clusters worse than on 50 principal components (the flow mixture's MNIST5 table:
    0.42 raw against 0.97 on PCA 50), and the flow and energy mixtures do not finish in 25 minutes.
    """

    def rule(data: DataShape, options: Any = None) -> int | None:
        return keep if data.dim > above and min(data.n, data.dim) > keep else None

    return rule


@dataclass(frozen=True)
class Family:
    """How a model family is built and trained.

    :param name: the name on the command line (``--model NAME``).
    :param description: one line for ``mixzoo models``.
    :param cite: the paper by authors and year (or what the family is, e.g. "the reference").
    :param options: the family's :class:`~mixzoo.options.Options` dataclass.
    :param build: ``build(dim, n_clusters, guide_name, options) -> (model, guide)``.
    :param guides: guide names, the default first.
    :param losses: loss names, the default first.
    :param recipe: ``recipe(options, data, loss) -> Training``; ``data`` is ``None`` when unknown, ``loss``
        is the loss's name (a recipe may differ by loss, as the Gaussian mixture's does for ``em``).
    :param adapt: ``adapt(options, given, data) -> options``: data-dependent option choices for the
        options the user did not give (``given``), e.g. the image shape of a convolutional network.
    :param schedules: per-epoch schedules (annealing) of a built pair.
    :param initialize: ``initialize(model, guide, x, seed, options, loss=None)``: data-dependent start.
    :param step: ``step(options)``: a step factory for :func:`mixzoo.fit` (``None``: one SVI step).
    :param continuous: the family models densities of continuous data, so integer-intensity images
        (digits, MNIST) are dequantized before training, as with ``--dequantize``; a callable
        ``continuous(options)`` decides by the options (``--dequantize-noise epoch`` wants the integers).
    :param reduce: ``reduce(data, options) -> D``: the principal components the recipe reduces the data to when
        ``--pca`` is not given (``None``: every feature is kept); see :func:`principal_components`.
    :param laplace_summary: a run's ``summary.nc`` draws from the Laplace approximation (mixtures of
        Gaussians, Student-t's, energies). ``False`` for network families: the diagonal curvature of thousands
        of weights is neither a posterior one can use (the neural mixture's draws scatter its cluster shares by
        about 0.25) nor cheap (a minute or more on a CPU), so their runs keep the point estimate;
        :func:`~mixzoo.analysis.summary.summarize` still draws when asked.
    :param loss_makers: losses the family builds itself, by name, over the shared ones of
        :data:`mixzoo.inference.LOSSES` (the Gaussian mixture's ``"em"`` is closed-form EM).
    :param restart_score: ``restart_score(model, guide, x, options) -> float | None``: how ``--n-init``
        restarts are compared, lower is better; without it, or where it returns ``None``, the final loss on
        all of the data.
    :param restart_rule: what ``restart_score`` keeps, in words, for ``--help``.
    :param quick: a small configuration that trains in a second or two (:class:`~mixzoo.app.config.FitConfig`
        keywords such as ``data``, ``epochs``, ``subsample``, ``options``): the test matrix runs every
        family with it (determinism, resume, bad input).
    """

    name: str
    description: str
    cite: str
    options: type[Options]
    build: Builder
    guides: tuple[str, ...]
    losses: tuple[str, ...]
    recipe: Recipe
    adapt: Adapt = _same
    schedules: Schedules = _no_schedules
    initialize: Initializer = _initialize_each
    step: StepChoice = _svi_step
    loss_makers: dict[str, Callable[..., ELBO]] = field(default_factory=dict)
    continuous: bool | Callable[[Any], bool] = False
    reduce: Callable[[DataShape, Any], int | None] = _keep_features
    laplace_summary: bool = True
    restart_score: Callable[[nn.Module, nn.Module, torch.Tensor, Any], float | None] | None = None
    restart_rule: str = "the lowest final loss"
    quick: dict[str, Any] = field(default_factory=lambda: {"data": "moons", "epochs": 3, "subsample": 300})

    @property
    def default_guide(self) -> str:
        return self.guides[0]

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def training(self, options: Any, data: DataShape | None, loss: str | None = None) -> Training:
        """The recipe for these options, data and loss (the family's default loss when ``None``)."""
        return self.recipe(options, data, loss or self.default_loss)

    def dequantizes(self, options: Any) -> bool:
        """Whether integer-intensity images are dequantized before training under these options."""
        return self.continuous(options) if callable(self.continuous) else bool(self.continuous)

    def make_loss(self, name: str, **options: Any) -> ELBO:
        """The loss ``name`` as this family trains with it."""
        if name in self.loss_makers:
            return self.loss_makers[name](**options)
        return make_loss(name, **options)

    def make_options(self, values: dict[str, Any] | None = None, **more: Any) -> Options:
        """The family's options from a mapping (and keywords), checked; the defaults for the rest."""
        return self.options.from_dict({**(values or {}), **more})

    def build_pair(self, dim: int, n_clusters: int, guide: str | None = None, options: Any = None) -> tuple[nn.Module, nn.Module]:
        """A fresh (model, guide); ``options`` may be an :class:`Options` or a mapping."""
        opts = options if isinstance(options, Options) else self.make_options(options)
        return self.build(dim, n_clusters, guide or self.default_guide, opts)


MODELS: dict[str, Family] = {}
"""Registered families by name (filled by importing :mod:`mixzoo.models`)."""


def register(family: Family) -> Family:
    """Add a family to :data:`MODELS`; its options class learns the family's name for messages."""
    if family.name in MODELS and MODELS[family.name] is not family:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    if not issubclass(family.options, Options):
        raise TypeError(f"{family.name}: options must derive from mixzoo.options.Options")
    family.options.family = family.name
    MODELS[family.name] = family
    return family
