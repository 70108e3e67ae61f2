r"""The ELBO estimated from samples of the guide: Pyro's ``Trace_ELBO`` and ``TraceGraph_ELBO``.

Both draw :math:`y \sim q(y \mid x)` (and the guide's other latents) and estimate

.. math:: \mathcal L(x) = \mathbb E_{q}\bigl[\log p(x, y) - \log q(y \mid x)\bigr] \le \log p(x),

whose gradient for the guide of a discrete :math:`y` is the score function (REINFORCE, Williams 1992)
:math:`\mathbb E_q\bigl[(\log p(x, y) - \log q(y \mid x))\, \nabla \log q(y \mid x)\bigr]`. ``trace-graph`` keeps
only the downstream costs of each site and subtracts a baseline (NVIL, Mnih and Gregor 2014; the guide's
``infer["baseline"]``), which lowers the estimator's variance. With the ``posterior`` guide (no parameters) both are
Monte Carlo EM: the model's gradient at a sampled :math:`y`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from ..contract import ModelCapabilities
from ..options import Options, option
from .registry import Algorithm, GuideFacts, first, needs_normalized, needs_sampled_y, register_algorithm

__all__ = ["SampledTrace_ELBO", "SampledTraceGraph_ELBO", "TraceOptions", "TraceGraphOptions"]


class _SampledY:
    """The guides mark ``"y"`` for enumeration so that ``trace-enum`` can sum it; these losses sample it instead, as
    they should, and Pyro's validation warns about the marking on every trace. The warning is silenced here."""

    def _get_trace(self, *args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(?s).*you need to use TraceEnum_ELBO instead", category=UserWarning)
            return super()._get_trace(*args, **kwargs)  # type: ignore[misc]


class SampledTrace_ELBO(_SampledY, Trace_ELBO):
    """Pyro's :class:`~pyro.infer.Trace_ELBO`, without the warning about guides that mark ``y`` for enumeration."""


class SampledTraceGraph_ELBO(_SampledY, TraceGraph_ELBO):
    """Pyro's :class:`~pyro.infer.TraceGraph_ELBO`, without the warning about guides that mark ``y`` for
    enumeration."""

_PARTICLES = "samples per step, averaged"


@dataclass(frozen=True)
class TraceOptions(Options):
    """Options of ``trace``."""

    particles: int = option(1, _PARTICLES, low=1)


@dataclass(frozen=True)
class TraceGraphOptions(Options):
    """Options of ``trace-graph``."""

    particles: int = option(1, _PARTICLES, low=1)


def _requires(model: ModelCapabilities, guide: GuideFacts) -> str | None:
    return first(needs_sampled_y(guide), needs_normalized(model))


register_algorithm(
    Algorithm(
        name="trace",
        description="the ELBO from samples of the guide, score-function gradient for y",
        cite="Pyro's Trace_ELBO; Williams 1992 (REINFORCE)",
        loss_class=Trace_ELBO,
        make=lambda o, context: SampledTrace_ELBO(max_plate_nesting=1, num_particles=o.particles),
        requires=_requires,
        options=TraceOptions,
    )
)

register_algorithm(
    Algorithm(
        name="trace-graph",
        description="the ELBO from samples of the guide, with Rao-Blackwellized score functions and baselines (NVIL)",
        cite="Pyro's TraceGraph_ELBO; Mnih and Gregor 2014 (NVIL)",
        loss_class=TraceGraph_ELBO,
        make=lambda o, context: SampledTraceGraph_ELBO(max_plate_nesting=1, num_particles=o.particles),
        requires=_requires,
        options=TraceGraphOptions,
    )
)
