"""Checkpoints: the modules' ``state_dict`` plus a JSON config that rebuilds them.

A run directory holds ``checkpoint.pt`` (tensors only, loaded with
``torch.load(weights_only=True)``) and ``config.json``. Files are written to a
temporary name and renamed, so an interrupted save never leaves a half-written
checkpoint, and an existing run is never overwritten unless asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MixzooInputError
from ..training.persistence import atomic_save, safe_load

__all__ = ["prepare_run_dir", "save_checkpoint", "load_checkpoint", "write_json", "CHECKPOINT", "CONFIG"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
CALIBRATION = "calibration.json"
"""The temperature of the run's reported probabilities (:class:`mixzoo.analysis.calibration.Calibration`)."""


def prepare_run_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Create ``path`` for a new run; refuse a non-empty directory unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise MixzooInputError(f"--out {str(p)!r} exists and is not a directory; choose another path.")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise MixzooInputError(
            f"--out {str(p)!r} already holds a run; pass --overwrite to replace it or choose another path."
        )
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_checkpoint(run_dir: str | os.PathLike[str], modules: dict[str, nn.Module], config: dict[str, Any]) -> None:
    """Save each module's state_dict (moved to CPU) and the JSON ``config`` into ``run_dir``."""
    d = Path(run_dir)
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    atomic_save(state, d / CHECKPOINT)
    write_json(d / CONFIG, config)


def load_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Return ``(state_dicts, config)`` of a run directory written by :func:`save_checkpoint`."""
    d = Path(run_dir)
    if not (d / CHECKPOINT).is_file() or not (d / CONFIG).is_file():
        raise MixzooInputError(
            f"{str(d)!r} is not a mixzoo run (no {CHECKPOINT} and {CONFIG}); pass the --out of a fit."
        )
    state = safe_load(d / CHECKPOINT, "checkpoint")
    try:
        config = json.loads((d / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise MixzooInputError(f"{str(d / CONFIG)!r} is not valid JSON ({err}).") from None
    return state, config


def run_temperature(run_dir: str | os.PathLike[str]) -> float:
    """The temperature a run divides its log probabilities by (1 for a run written before runs were calibrated)."""
    path = Path(run_dir) / CALIBRATION
    if not path.is_file():
        return 1.0
    try:
        t = float(json.loads(path.read_text()).get("temperature", 1.0))
    except (ValueError, TypeError, AttributeError) as err:
        raise MixzooInputError(f"{str(path)!r} is not a calibration record ({err}); fit the run again.") from None
    if not (t > 0 and t < float("inf")):
        raise MixzooInputError(f"{str(path)!r} gives the temperature {t}, which must be positive and finite.")
    return t

