"""Guide families: one per file."""

from .empty import EmptyGuide
from .encoder import ClusterEncoder
from .estep import EStepGuide

__all__ = ["EmptyGuide", "ClusterEncoder", "EStepGuide"]
