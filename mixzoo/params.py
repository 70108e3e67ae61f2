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

__all__ = ["isolated_param_store", "modules_of", "snapshot", "restore", "all_finite", "StateDict"]

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


def snapshot(modules: list[torch.nn.Module]) -> dict[str, Any]:
    """A detached copy of the modules' state and the current param store's unconstrained values."""
    store_params = pyro.get_param_store().get_state()["params"]
    return {
        "modules": [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules],
        "store": {k: v.detach().clone() for k, v in store_params.items()},
    }


def restore(modules: list[torch.nn.Module], snap: dict[str, Any]) -> None:
    """Copy a :func:`snapshot` back, in place, into the modules and the current param store."""
    with torch.no_grad():
        for m, state in zip(modules, snap["modules"], strict=False):
            m.load_state_dict(state)
        store_params = pyro.get_param_store().get_state()["params"]
        for name, value in snap["store"].items():
            if name in store_params:
                store_params[name].copy_(value)


def all_finite(modules: list[torch.nn.Module]) -> bool:
    """Whether every parameter of the modules and of the current param store is finite."""
    tensors = [p for m in modules for p in m.parameters()]
    tensors += list(pyro.get_param_store().get_state()["params"].values())
    return all(bool(torch.isfinite(t).all()) for t in tensors)
