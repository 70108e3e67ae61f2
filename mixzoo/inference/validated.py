"""Which model/guide pairs a loss has validated already, so that Pyro's per-trace checks run once per pair."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pyro
from pyro.infer.util import is_validation_enabled

__all__ = ["ValidatedPairs"]


class ValidatedPairs:
    """A set of ``(model, guide)`` pairs held by weak references.

    A pair is forgotten when its model or guide is garbage-collected; a callable that cannot be weakly
    referenced is never remembered, so its pair counts as new every time.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a cache of live objects: a copy (or an unpickled loss) starts with none remembered

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

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

    @contextlib.contextmanager
    def checks(self, model: Callable[..., Any], guide: Callable[..., Any]) -> Iterator[bool]:
        """Pyro's validation for one evaluation of the pair: on for its first evaluation (distribution argument and
        support checks, site checks), off afterwards, and restored on exit; nothing while Pyro's validation is off.
        Yields whether this evaluation is the validated one (validation on and the pair new).

        The first evaluation turns torch's argument checks on explicitly: Pyro's flag and torch's default can
        disagree (torch's starts off in a fresh process and Pyro's context managers leave it on), and the first fit
        of a process would otherwise check less than the next.

        Validation only checks; it changes no value, so the losses are the same with and without it.
        A pair that cannot be remembered (see :meth:`first`) is validated every time.
        """
        if not is_validation_enabled():
            yield False
        elif self.first(model, guide):
            with pyro.validation_enabled(True):
                yield True
        else:
            with pyro.validation_enabled(False):
                yield False
