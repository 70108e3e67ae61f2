"""Snapshots of the modules' state and the param store's values, for the divergence guard and resume."""

from __future__ import annotations

from typing import Any

import pyro
import torch

__all__ = ["snapshot", "restore", "all_finite"]


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
