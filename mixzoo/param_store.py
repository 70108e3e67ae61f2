"""Isolation from Pyro's global parameter store.

mixzoo never reads or leaves anything in the user's global param store: every
training run and every evaluation runs inside :func:`isolated_param_store`, so two
models fitted in one process cannot see each other's parameters even when their
parameter names coincide. Parameters live in the modules; parameters declared
with bare ``pyro.param`` statements travel as a param-store state dict.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pyro
import torch

__all__ = ["isolated_param_store", "modules_of", "StateDict"]

StateDict = dict[str, Any]


@contextlib.contextmanager
def isolated_param_store(state: StateDict | None = None) -> Iterator[StateDict]:
    """Run the body with a private param store holding ``state`` (empty by default).

    The yielded dict is updated with the private store's final state on a clean
    exit; the global store is restored whatever happens.
    """
    with pyro.get_param_store().scope(state=copy.copy(state) if state else None) as s:
        yield s


def modules_of(*fns: Callable[..., Any] | None) -> list[torch.nn.Module]:
    """The distinct ``torch.nn.Module`` objects behind models and guides (modules or bound methods)."""
    out: list[torch.nn.Module] = []
    for fn in fns:
        obj = getattr(fn, "__self__", fn)
        if isinstance(obj, torch.nn.Module) and all(obj is not m for m in out):
            out.append(obj)
    return out
