"""Which model/guide pairs a loss has validated already, so that Pyro's per-trace checks run once per pair."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["ValidatedPairs"]


class ValidatedPairs:
    """A set of ``(model, guide)`` pairs held by weak references.

    A pair is forgotten when its model or guide is garbage-collected; a callable that cannot be weakly
    referenced is never remembered, so its pair counts as new every time.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()

    def first(self, model: Callable[..., Any], guide: Callable[..., Any]) -> bool:
        """Whether the pair is new; it is remembered from now on."""
        try:
            guides = self._seen.setdefault(model, weakref.WeakSet())
            if guide in guides:
                return False
            guides.add(guide)
        except TypeError:
            return True
        return True
