"""Model families, one per file; importing this package registers every family file in it.

Each ``mixzoo/models/<family>.py`` holds the model, its :class:`~mixzoo.options.Options`
dataclass and its :func:`~mixzoo.family.register` call (see :mod:`mixzoo.family`).
Adding a family means adding such a file: this package finds it by itself.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..family import MODELS, Family, get_family

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

from .energy_mixture import EnergyMixture  # noqa: E402
from .flow_mixture import FlowMixture  # noqa: E402
from .gmm import GaussianMixture  # noqa: E402
from .gmvae import GMVAE, pretrain_autoencoder  # noqa: E402
from .neural_mixture import NeuralMixture  # noqa: E402

__all__ = [
    "MODELS",
    "Family",
    "get_family",
    "GaussianMixture",
    "FlowMixture",
    "EnergyMixture",
    "NeuralMixture",
    "GMVAE",
    "pretrain_autoencoder",
]
