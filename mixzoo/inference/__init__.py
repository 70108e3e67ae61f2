"""Inference algorithms (each a :class:`pyro.infer.ELBO`) and the loss names of the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO

from ..errors import MixzooInputError
from .closed_form_em import ConjugateEMStep, conjugate_em
from .em import EM
from .exact_em import ExactEM
from .nce import NCE
from .pair_check import check_pair
from .step import Step, StepFactory, SVIStep
from .trace_enum import TableEnum_ELBO
from .two_fold import TwoFoldStep, two_fold
from .vimco import VIMCO

__all__ = ["LOSSES", "PARTICLE_LOSSES", "make_loss", "check_pair", "NCE", "VIMCO", "EM", "ExactEM", "TableEnum_ELBO", "Step", "StepFactory", "SVIStep", "TwoFoldStep", "two_fold", "ConjugateEMStep", "conjugate_em"]

LOSSES: dict[str, Callable[..., ELBO]] = {
    "trace-enum": lambda **kw: TableEnum_ELBO(max_plate_nesting=1, **kw),
    "trace-graph": lambda **kw: TraceGraph_ELBO(max_plate_nesting=1, **kw),
    "trace": lambda **kw: Trace_ELBO(max_plate_nesting=1, **kw),
    "nce": lambda **kw: NCE(**kw),
    "vimco": lambda **kw: VIMCO(**kw),
    "em": lambda **kw: EM(**kw),
}
"""Loss name -> constructor taking keyword options (e.g. ``num_particles``)."""

PARTICLE_LOSSES = ("vimco", "trace-enum", "trace-graph", "trace")
"""Losses that draw samples each step and take ``num_particles`` (``--particles``)."""


def make_loss(name: str, **options: Any) -> ELBO:
    """Build the loss registered under ``name``."""
    if name not in LOSSES:
        raise MixzooInputError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}.")
    return LOSSES[name](**options)
