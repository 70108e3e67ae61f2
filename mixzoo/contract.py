"""The model/guide contract: the names every pair shares, what a model and a guide can declare, and the trace
helpers built on them.

A mixzoo model and guide are Pyro programs ``fn(x, y=None, subsample=None)``:

* the discrete cluster site is named :data:`CLUSTER_SITE` (``"y"``) and can be enumerated
  (``infer={"enumerate": "parallel"}``); passing ``y`` observes it (``-1`` marks an unlabelled point);
* per-point sites live in the plate :data:`DATA_PLATE` (``"data"``), which receives the
  minibatch indices as ``subsample`` and scales each minibatch by :math:`N/B`.

**What a model can do** is declared by the Protocols of this module, checked on the model's class (so before any
data are read): :class:`StatesLogJoint` (its (B, K) table of :math:`\\log p(x_n, y_n = k)`),
:class:`StatesPosterior` (its own :math:`p(y \\mid x)`), :class:`ClosedFormEM`, :class:`SamplesData`,
:class:`SummaryQuantities`, :class:`Initializable`, :class:`CountsParameters` and :class:`ParameterPriors`; two class attributes say what
the contract cannot see from the methods: :attr:`LocalLatents.local_latents` (per-point latents besides ``y``,
which a guide must sample) and :attr:`Unnormalized.normalized` (``False`` for a model known only up to its
normalizers). :class:`ModelCapabilities` gathers them. A guide declares :class:`GuideTraits`. Which guides and
losses serve a model is derived from these declarations (:mod:`mixzoo.inference.registry`); a check of the
traces (:func:`mixzoo.inference.pair_check.check_pair`) proves it on the first minibatch.

Inference algorithms, the posterior, the summary and the checks read traces only through the helpers of this
module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from pyro.poutine.subsample_messenger import _Subsample

__all__ = [
    "CLUSTER_SITE",
    "DATA_PLATE",
    "StatesLogJoint",
    "StatesPosterior",
    "ClosedFormEM",
    "SamplesData",
    "SummaryQuantities",
    "Initializable",
    "CountsParameters",
    "ParameterPriors",
    "LocalLatents",
    "Unnormalized",
    "GuideTraits",
    "ModelCapabilities",
    "cluster_draws",
    "guide_samples_nothing",
    "is_subsample",
    "in_data_plate",
    "is_latent",
    "latent_sites",
    "cluster_site",
    "site_log_prob",
]

CLUSTER_SITE = "y"
"""Name of the discrete cluster site."""

DATA_PLATE = "data"
"""Name of the plate over data points."""


# ---------------------------------------------------------------------------------------------- model capabilities


@runtime_checkable
class StatesLogJoint(Protocol):
    """A model that states its table: ``log_joint(x)`` is the (B, K) tensor of :math:`\\log p(x_n, y_n = k)`,
    computed as its ``forward`` scores the minibatch ``x``. Losses may then score it without tracing
    (:mod:`mixzoo.inference.untraced`)."""

    def log_joint(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class StatesPosterior(Protocol):
    """A model that states the (B, K) :math:`\\log p(y_n = k \\mid x_n)` its E-step uses, computed without gradient
    and without side effects (no running statistics, no random draws). The ``posterior`` guide uses it where it
    exists; otherwise it normalizes ``log_joint`` or the enumerated trace."""

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ClosedFormEM(Protocol):
    """A model whose M-step has a closed form (Dempster, Laird and Rubin 1977): weighted sufficient statistics of a
    chunk of points, and the update from their sums. With it the ``em`` algorithm takes one exact EM iteration per
    epoch instead of gradient steps."""

    def log_joint(self, x: torch.Tensor) -> torch.Tensor: ...

    def em_statistics(self, x: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def em_update(self, stats: dict[str, torch.Tensor]) -> None: ...


@runtime_checkable
class SamplesData(Protocol):
    """A model that draws points and their clusters: ``sample(n, generator=None, clusters=None) -> (x, y)``; with
    ``clusters`` (n,), the points of those clusters (the plots draw each component's)."""

    def sample(
        self, n: int, generator: torch.Generator | None = None, clusters: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def cluster_draws(weights: torch.Tensor, n: int, generator: torch.Generator | None, clusters: Any = None) -> torch.Tensor:
    """The clusters of ``n`` draws of a mixture, on the CPU: ``clusters`` (checked), or drawn from ``weights``."""
    k = len(weights)
    if clusters is None:
        return torch.multinomial(weights.detach().cpu(), n, replacement=True, generator=generator)
    c = torch.as_tensor(clusters, dtype=torch.long).cpu()
    if c.shape != (n,) or bool(((c < 0) | (c >= k)).any()):
        raise ValueError(f"clusters must be {n} integers in [0, {k}), got shape {tuple(c.shape)}")
    return c


@runtime_checkable
class SummaryQuantities(Protocol):
    """A model that names its globals in their natural form (weights, means, scales) for the ArviZ summary."""

    def summary_quantities(self) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class ParameterPriors(Protocol):
    """A model that states a proper prior for each of its (unconstrained) module parameters, keyed as
    ``named_parameters()`` names them: what sampling its posterior with NUTS (:mod:`mixzoo.inference.nuts`) needs."""

    def parameter_priors(self) -> dict[str, Any]: ...


@runtime_checkable
class Initializable(Protocol):
    """A model (or guide) with a data-dependent start, called before training: ``initialize(x, seed=...)``."""

    def initialize(self, x: torch.Tensor, seed: int = 0) -> Any: ...


@runtime_checkable
class CountsParameters(Protocol):
    """A model that counts its free parameters, for BIC and AIC."""

    def n_parameters(self) -> int: ...


class LocalLatents(Protocol):
    """A model with per-point latents besides ``y`` (the GMVAE's ``z``) declares them; a guide must sample them, so
    the model cannot sum ``y`` out on its own. Without the attribute: none (the contract's default)."""

    local_latents: ClassVar[tuple[str, ...]]


class Unnormalized(Protocol):
    """A model known only up to its normalizers (an energy-based mixture) declares ``normalized = False``: only a
    loss that does not need :math:`\\log p(x)` itself (noise-contrastive estimation) can train it."""

    normalized: ClassVar[bool]


class GuideTraits(Protocol):
    """What a guide class declares of itself (read by the losses and the registry).

    * ``samples_y``: the guide samples (or enumerates) the cluster site; ``False`` for the empty guide, whose
      model sums ``y`` out.
    * ``held_fixed``: :math:`q(y \\mid x)` is the model's posterior under the current parameters, computed without
      gradient: an E-step, with no parameters of its own.
    """

    samples_y: ClassVar[bool]
    held_fixed: ClassVar[bool]


def guide_samples_nothing(guide: Any) -> bool:
    """Whether ``guide`` declares that it samples nothing (``samples_y = False``: the empty guide)."""
    return getattr(type(getattr(guide, "__self__", guide)), "samples_y", None) is False


@dataclass(frozen=True)
class ModelCapabilities:
    """What a model class declares (see the Protocols above); computed without building the model."""

    local_latents: tuple[str, ...] = ()
    normalized: bool = True
    states_log_joint: bool = False
    states_posterior: bool = False
    closed_form_em: bool = False
    samples: bool = False
    summary_quantities: bool = False
    counts_parameters: bool = False
    parameter_priors: bool = False

    @property
    def enumerable_y(self) -> bool:
        """``y`` is the model's only per-point latent, which it can sum out by enumeration."""
        return not self.local_latents

    @classmethod
    def of(cls, model: type | Any) -> ModelCapabilities:
        """The capabilities a model class (or an instance's class) declares."""
        kind = model if isinstance(model, type) else type(model)

        def has(protocol: type) -> bool:
            return issubclass(kind, protocol)

        return cls(
            local_latents=tuple(getattr(kind, "local_latents", ())),
            normalized=bool(getattr(kind, "normalized", True)),
            states_log_joint=has(StatesLogJoint),
            states_posterior=has(StatesPosterior),
            closed_form_em=has(ClosedFormEM),
            samples=has(SamplesData),
            summary_quantities=has(SummaryQuantities),
            counts_parameters=has(CountsParameters),
            parameter_priors=has(ParameterPriors),
        )

    def names(self) -> list[str]:
        """The declared capabilities in words, for ``mixzoo models``."""
        out = ["enumerable y" if self.enumerable_y else f"local latents {', '.join(self.local_latents)}"]
        if not self.normalized:
            out.append("unnormalized")
        flags = (
            (self.states_log_joint, "log_joint"),
            (self.states_posterior, "log_posterior"),
            (self.closed_form_em, "closed-form EM"),
            (self.samples, "sample"),
            (self.summary_quantities, "summary quantities"),
            (self.counts_parameters, "n_parameters"),
            (self.parameter_priors, "parameter priors"),
        )
        return out + [name for on, name in flags if on]


# ---------------------------------------------------------------------------------------------- traces


def site_log_prob(site: dict[str, Any]) -> torch.Tensor:
    """The site's log density scaled and masked by its plates, as :meth:`Trace.compute_log_prob` stores it, without
    the per-site sums and their checks; computed once and kept in the site (``log_prob`` and ``unscaled_log_prob``)."""
    if "log_prob" not in site:
        log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
        site["unscaled_log_prob"] = log_p
        site["log_prob"] = scale_and_mask(log_p, site["scale"], site["mask"])
    return site["log_prob"]


def is_subsample(site: dict[str, Any]) -> bool:
    """Whether ``site`` is the index sample a subsampled plate records (not a random variable)."""
    return isinstance(site.get("fn"), _Subsample)


def in_data_plate(site: dict[str, Any], plate: str = DATA_PLATE) -> bool:
    """Whether ``site`` sits inside the plate over data points."""
    return any(f.name == plate for f in site.get("cond_indep_stack", ()))


def is_latent(site: dict[str, Any]) -> bool:
    """A sample site that is neither observed nor a plate's index sample."""
    return site["type"] == "sample" and not site["is_observed"] and not is_subsample(site)


def latent_sites(trace: Trace) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, site)`` of every latent sample site of ``trace``, in trace order."""
    return ((name, site) for name, site in trace.nodes.items() if is_latent(site))


def cluster_site(trace: Trace) -> dict[str, Any] | None:
    """The latent cluster site of ``trace`` (sampled, not observed), or ``None``."""
    site = trace.nodes.get(CLUSTER_SITE)
    return site if site is not None and is_latent(site) else None
