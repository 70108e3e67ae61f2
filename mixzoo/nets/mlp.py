"""Small network builders shared by the models and guides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["mlp", "ScalarState"]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ScalarState:
    """A float attribute of a module kept as a 0-d buffer, so that it travels with ``state_dict``.

    Annealed values (an encoder's temperature, the GMVAE's std floors) change during training;
    as plain attributes they would reload at their initial value and a reloaded run would give
    other probabilities. A checkpoint written before the value was kept loads with the current
    value in its place.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.buffer = f"_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return float(obj._buffers[self.buffer])

    def __set__(self, obj: nn.Module, value: float) -> None:
        if self.buffer in obj._buffers:
            obj._buffers[self.buffer].fill_(float(value))
            return
        obj.register_buffer(self.buffer, torch.tensor(float(value), dtype=torch.float64))  # exact floats
        key = self.buffer

        def keep_missing(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
            state.setdefault(prefix + key, module._buffers[key].detach().clone())

        obj._register_load_state_dict_pre_hook(keep_missing, with_module=True)
