"""Guides, one per file, each registered by name with its options and what it needs of a model.

- ``empty`` (:class:`EmptyGuide`): ``y`` summed out in the model;
- ``posterior`` (:class:`PosteriorGuide`): the model's own posterior, held fixed in a step (the E-step of EM);
- ``encoder`` (:class:`ClusterEncoder`): an amortized :math:`q(y \\mid x)`, an MLP or, on images, convolutions.

A family registers its own guides from its own file (the GMVAE's ``qzxy`` and ``mean-field``).
"""

from .empty import EmptyGuide
from .encoder import ClusterEncoder, EncoderOptions
from .posterior import PosteriorGuide
from .registry import GUIDES, GuideSpec, get_guide, register_guide

__all__ = ["EmptyGuide", "PosteriorGuide", "ClusterEncoder", "EncoderOptions", "GUIDES", "GuideSpec", "get_guide", "register_guide"]
