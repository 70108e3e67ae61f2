"""Model families, one per file; importing this package registers every family file in it.

Each ``mixzoo/models/<family>.py`` holds the model, its :class:`~mixzoo.options.Options`
dataclass and its :func:`~mixzoo.models.family.register` call (see :mod:`mixzoo.models.family`).
Adding a family means adding such a file: this package finds it by itself.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import MixzooInputError
from .family import MODELS, Family

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

from .energy_mixture import EnergyMixture  # noqa: E402
from .flow_mixture import FlowMixture  # noqa: E402
from .gmm import GaussianMixture  # noqa: E402
from .gmvae import GMVAE, pretrain_autoencoder  # noqa: E402
from .neural_mixture import NeuralMixture  # noqa: E402
from .student_t import StudentTMixture  # noqa: E402


def get_family(name: str) -> Family:
    """The registered family ``name``, or a clear error listing the known names."""
    if name not in MODELS:
        raise MixzooInputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (see `mixzoo models`).")
    return MODELS[name]


__all__ = [
    "MODELS",
    "Family",
    "get_family",
    "GaussianMixture",
    "FlowMixture",
    "EnergyMixture",
    "NeuralMixture",
    "StudentTMixture",
    "GMVAE",
    "pretrain_autoencoder",
]
