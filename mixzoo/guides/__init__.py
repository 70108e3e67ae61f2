"""Guide families: one per file."""

from .empty import EmptyGuide

__all__ = ["EmptyGuide"]
