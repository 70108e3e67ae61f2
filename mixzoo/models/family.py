"""Model families: what a family file registers, the plan that adapts it to data, and how it composes with guides
and losses.

A family is one file under :mod:`mixzoo.models`. It declares its :class:`~mixzoo.options.Options` dataclass and
registers one :class:`Family`::

    register(Family(
        name="student-t",
        description="Student-t mixture, diagonal scales, learned degrees of freedom",
        cite="Peel and McLachlan 2000",
        options=StudentTOptions,
        model=StudentTMixture,
        build=build,                    # (dim, n_clusters, options) -> the model
        default_guide="empty",
        default_loss="trace-enum",
        plan=plan,                      # (options, data, inference) -> Plan: everything that depends on the data
    ))

Which guides and losses serve the family is derived from what its model class declares
(:class:`~mixzoo.contract.ModelCapabilities`), the guides' requirements (:mod:`mixzoo.guides.registry`) and the
algorithms' (:mod:`mixzoo.inference.registry`): :meth:`Family.reason` says why a choice cannot serve it,
:meth:`Family.inference_table` lists every pair. Everything else (the CLI's flags and ``--help``, ``mixzoo
models``, the estimator, ``select``, summaries and the test matrix) discovers the family from the registry, and the
command line, the estimator and ``select`` apply the same plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..contract import ModelCapabilities
from ..data.shape import DataShape
from ..errors import MixzooInputError
from ..guides.registry import GUIDES, GuideSpec, Schedule, get_guide
from ..inference.registry import ALGORITHMS, Algorithm, get_algorithm
from ..inference.step import StepFactory
from ..options import Options

__all__ = [
    "Family",
    "Plan",
    "Training",
    "Inference",
    "DataShape",
    "register",
    "principal_components",
    "MODELS",
    "default_start",
    "CRITERIA",
]


@dataclass(frozen=True)
class Training:
    """Training settings: what ``mixzoo fit`` uses when no flag says otherwise."""

    epochs: int
    lr: float | None
    """Adam's learning rate (``None`` for a loss that sets the parameters in closed form)."""
    lr_decay: float | None = None
    batch_size: int | None = None
    n_init: int = 1
    tol: float | None = None
    """Stop when the relative change of the epoch loss stays below this for 3 epochs (``None``: never)."""


@dataclass(frozen=True)
class Inference:
    """What a plan may know of the chosen inference."""

    guide: str
    loss: str
    closed_form: bool = False
    """The loss sets the parameters in closed form (EM on a model that offers it): no learning rate."""
    given: frozenset[str] = frozenset()
    """The family options the user gave: a plan keeps them as they are."""


Start = Callable[..., None]
"""``start(model, guide, x, seed, loss)``: the data-dependent start of a built pair."""


def default_start(model: nn.Module, guide: nn.Module, x: torch.Tensor, seed: int, loss: Any = None) -> None:
    """Call the model's ``initialize(x, seed=seed)`` where it has one (the guide's start is its registration's)."""
    if callable(getattr(model, "initialize", None)):
        model.initialize(x, seed=seed)


@dataclass(frozen=True)
class Plan:
    """Everything about a fit that depends on the data: a family's recipe for them.

    :param options: the family's options adapted to the data (the user's own left as given).
    :param training: the training settings.
    :param pca: reduce the data to this many principal components first (``None``: keep every feature). The plan
        of the reduced data is then asked again, so ``options`` and ``training`` are those of the data the model
        trains on.
    :param dequantize: turn integer intensities into a continuous density's values first (uniform noise one
        level wide).
    :param rescale: rescale the features before the fit, so that the clusters do not depend on the data's units
        (unless the data are dequantized, or the user chose ``--scale``): each feature to unit variance for a table of
        continuous features, which may each come in its own unit; by one common spread for images and data on a
        common grid of levels, whose features share their unit. The preprocessing is recorded in the run and applied
        to new points.
    :param start: the data-dependent start (:data:`Start`); :func:`default_start` by default.
    :param schedules: ``schedules(model, guide) -> list``: per-epoch schedules of the model (annealing); the
        guide's own come from its registration.
    :param step: the family's own step, in place of the algorithm's (the two-fold step of Tissera et al.).
    :param restart_score: ``restart_score(model, guide, x) -> float | None``: how ``--n-init`` restarts are
        compared, lower is better; the final loss on all of the data where it is ``None``.
    :param restart_rule: what ``restart_score`` keeps, in words, for ``--help``.
    :param laplace_summary: a run's ``summary.nc`` draws from the Laplace approximation (``False`` for network
        families: the diagonal curvature of thousands of weights is neither a posterior one can use nor cheap).
    :param guide_options: ``{guide name: {option: value}}``: the family's recipe for a guide (the flow mixture's
        annealed encoder of Pires 2020); options the user gave are kept.
    """

    options: Options
    training: Training
    pca: int | None = None
    dequantize: bool = False
    rescale: bool = True
    start: Start = default_start
    schedules: Callable[[nn.Module, nn.Module], list[Schedule]] = field(default=lambda model, guide: [])
    step: StepFactory | None = None
    restart_score: Callable[[nn.Module, nn.Module, torch.Tensor], float | None] | None = None
    restart_rule: str = "the lowest final loss"
    laplace_summary: bool = True
    guide_options: dict[str, dict[str, Any]] = field(default_factory=dict)


PlanFunction = Callable[[Any, DataShape, Inference], Plan]

CRITERIA = ("bic", "icl", "heldout", "loo")
"""How ``mixzoo select`` ranks fits: BIC and ICL (lower is better; ICL adds the entropy of the clustering, Biernacki
et al. 2000), the mean log-likelihood of held-out points and PSIS-LOO's expected log predictive density (higher)."""


def principal_components(data: DataShape, above: int = 100, keep: int = 50) -> int | None:
    """The reduction of the density families: data with more than ``above`` features go to ``keep`` principal
    components (``None``: keep every feature).

    On raw MNIST (784 pixels) a Gaussian, Student-t, energy or flow mixture is slow and clusters worse than on 50
    principal components (the flow mixture's MNIST5 tables of docs/benchmarks.md).
    """
    return keep if data.dim > above and min(data.n, data.dim) > keep else None


@dataclass(frozen=True)
class Family:
    """How a model family is built and trained.

    :param name: the name on the command line (``--model NAME``).
    :param description: one line for ``mixzoo models``.
    :param cite: the paper by authors and year (or what the family is, e.g. "the reference").
    :param options: the family's :class:`~mixzoo.options.Options` dataclass.
    :param model: the model class, whose declared capabilities decide which guides and losses serve it.
    :param build: ``build(dim, n_clusters, options) -> model``.
    :param default_guide: the guide of the default recipe.
    :param default_loss: the loss of the default recipe.
    :param plan: ``plan(options, data, inference) -> Plan``.
    :param structure: the option that chooses the model's structure (the Gaussian mixture's ``covariance``), whose
        values ``mixzoo select`` searches beside K.
    :param criteria: what ``mixzoo select`` can rank the family's fits by (:data:`CRITERIA`): every one for a model
        with an exact likelihood and a parameter count, fewer where it lacks them.
    :param criteria_note: why criteria are missing or approximate, said where the family is selected.
    """

    name: str
    description: str
    cite: str
    options: type[Options]
    model: type[nn.Module]
    build: Callable[[int, int, Any], nn.Module]
    default_guide: str
    default_loss: str
    plan: PlanFunction
    structure: str | None = None
    criteria: tuple[str, ...] = ("bic", "icl", "heldout", "loo")
    criteria_note: str = ""

    def structures(self) -> tuple[Any, ...]:
        """The values of :attr:`structure` (its option's choices), or ``()``."""
        if self.structure is None:
            return ()
        info = next(i for i in self.options.infos() if i.name == self.structure)
        return tuple(info.choices or ())

    @property
    def capabilities(self) -> ModelCapabilities:
        """What the family's model class declares."""
        return ModelCapabilities.of(self.model)

    def make_options(self, values: dict[str, Any] | None = None, **more: Any) -> Options:
        """The family's options from a mapping (and keywords), checked; the defaults for the rest."""
        return self.options.from_dict({**(values or {}), **more})

    def reason(self, guide: str | GuideSpec, loss: str | Algorithm) -> str | None:
        """Why ``guide`` and ``loss`` cannot train this family's model (one line), or ``None`` where they can."""
        spec = get_guide(guide) if isinstance(guide, str) else guide
        algorithm = get_algorithm(loss) if isinstance(loss, str) else loss
        caps = self.capabilities
        why = spec.reason(caps, self.name)
        if why is not None:
            return f"guide {spec.name!r} {why}"
        why = algorithm.reason(caps, spec.facts)
        return None if why is None else f"loss {algorithm.name!r} {why}"

    def check(self, guide: str, loss: str) -> None:
        """Refuse a guide and loss that cannot train this family, with the reason."""
        why = self.reason(guide, loss)
        if why is not None:
            raise MixzooInputError(f"model {self.name!r} cannot be trained this way: {why}.")

    def guides(self) -> list[str]:
        """The guides that serve the family's model under at least one loss."""
        return [g for g in GUIDES if any(self.reason(g, a) is None for a in ALGORITHMS)]

    def inference_table(self) -> dict[str, dict[str, str | None]]:
        """``table[guide][loss]``: ``None`` where the pair serves the family, else the reason."""
        return {g: {a: self.reason(g, a) for a in ALGORITHMS} for g in GUIDES}

    def build_pair(self, dim: int, n_clusters: int, guide: str | None = None, options: Any = None,
                   guide_options: Any = None, data: DataShape | None = None) -> tuple[nn.Module, nn.Module]:  # fmt: skip
        """A fresh (model, guide); options may be :class:`Options` or mappings."""
        opts = options if isinstance(options, Options) else self.make_options(options)
        spec = get_guide(guide or self.default_guide)
        gopts = guide_options if isinstance(guide_options, Options) else spec.make_options(guide_options)
        model = self.build(dim, n_clusters, opts)
        return model, spec.build(model, n_clusters, data or DataShape(0, dim), gopts, opts)


MODELS: dict[str, Family] = {}
"""Registered families by name (filled by importing :mod:`mixzoo.models`)."""


def register(family: Family) -> Family:
    """Add a family to :data:`MODELS` and check its defaults compose; its options class learns its name."""
    if family.name in MODELS and MODELS[family.name] is not family:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    if not issubclass(family.options, Options):
        raise TypeError(f"{family.name}: options must derive from mixzoo.options.Options")
    why = family.reason(family.default_guide, family.default_loss)
    if why is not None:
        raise ValueError(f"{family.name}: its default guide and loss do not compose: {why}")
    family.options.owner = f"model {family.name!r}"
    MODELS[family.name] = family
    return family
