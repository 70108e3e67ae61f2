"""Inference algorithms, one per file, each a :class:`pyro.infer.ELBO` registered by name with what it needs.

=============== ===================================================== =============================================
name            algorithm                                             needs
=============== ===================================================== =============================================
``trace-enum``  :class:`TableEnum_ELBO` (Pyro's ``TraceEnum_ELBO``)    y summed in the model or enumerated in a guide
``trace``       Pyro's ``Trace_ELBO``                                 a guide that samples y
``trace-graph`` Pyro's ``TraceGraph_ELBO`` (NVIL)                     a guide that samples y
``vimco``       :class:`VIMCO`                                        a guide that samples y
``rws``         :class:`ReweightedWakeSleep`                          a guide that samples y
``em``          :class:`EM` (closed form where the model offers it)   the ``posterior`` guide (the E-step)
``nce``         :class:`NCE`                                          the empty guide; any normalization
=============== ===================================================== =============================================

Every loss but NCE bounds :math:`\\log p(x)` and so needs a normalized model. :mod:`.registry` holds the
requirements; :func:`check_pair` proves a pair on its first minibatch. The step a loss needs (one SVI step, or
closed-form EM) is in :mod:`.step` and with its algorithm.
"""

from __future__ import annotations

from typing import Any

from pyro.infer import ELBO

# isort: off
# importing the algorithm files registers them, in the order mixzoo models lists them
from . import trace_enum as _trace_enum
from . import score_function as _score_function
from . import vimco as _vimco
from . import rws as _rws
from . import em as _em
from . import nce as _nce

# isort: on
from .em import EM, ClosedFormEMStep, em_step
from .nce import NCE
from .pair_check import check_pair
from .registry import ALGORITHMS, Algorithm, GuideFacts, LossContext, algorithm_of, get_algorithm
from .rws import ReweightedWakeSleep
from .step import Step, StepFactory, SVIStep
from .trace_enum import TableEnum_ELBO
from .two_fold import TwoFoldStep, two_fold
from .vimco import VIMCO

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "GuideFacts",
    "LossContext",
    "get_algorithm",
    "algorithm_of",
    "make_loss",
    "check_pair",
    "TableEnum_ELBO",
    "VIMCO",
    "ReweightedWakeSleep",
    "EM",
    "NCE",
    "ClosedFormEMStep",
    "em_step",
    "Step",
    "StepFactory",
    "SVIStep",
    "TwoFoldStep",
    "two_fold",
]

_REGISTERED = (_trace_enum, _score_function, _vimco, _rws, _em, _nce)


def make_loss(name: str, **options: Any) -> ELBO:
    """A fresh loss of the algorithm registered as ``name``, with its options (e.g. ``particles=15``)."""
    return get_algorithm(name).loss(options)
