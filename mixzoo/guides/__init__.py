"""Guide families: one per file."""

from .empty import EmptyGuide
from .encoder import ClusterEncoder

__all__ = ["EmptyGuide", "ClusterEncoder"]
