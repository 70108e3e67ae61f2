"""Guide families: one per file."""

from .empty import EmptyGuide
from .encoder import ClusterEncoder
from .estep import EStepGuide
from .gmvae import GMVAEGuide

__all__ = ["EmptyGuide", "ClusterEncoder", "GMVAEGuide", "EStepGuide"]
