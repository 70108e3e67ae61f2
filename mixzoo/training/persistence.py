"""Resumable training state: everything :func:`mixzoo.fit` needs to continue an interrupted run.

A training state holds the modules' ``state_dict``, the param store's unconstrained
values, the optimizer's state, every random number generator the loop draws from
(torch, CUDA, NumPy, Python, the minibatch order) and the history so far. Resuming
from the state saved after epoch ``e`` and training on gives the same parameters
as the uninterrupted run, bit for bit on the same device.

Files hold tensors, numbers, strings, lists and dicts only: they are written to a
temporary name and renamed (an interrupted write never leaves half a file), and
read with ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ..data.mapped import Reader
from ..errors import MixzooInputError

__all__ = ["capture_rng", "restore_rng", "atomic_save", "safe_load", "data_fingerprint", "param_store_values", "FORMAT"]

FORMAT = "mixzoo-training-state-v1"


def capture_rng(batches: torch.Generator) -> dict[str, Any]:
    """The state of every random number generator the training loop uses."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "batches": batches.get_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], batches: torch.Generator) -> None:
    """Put back generator states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    batches.set_state(state["batches"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename it over ``path``."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, p)


def safe_load(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """Load a file written by :func:`atomic_save` with ``weights_only=True``.

    :raises MixzooInputError: if the file is missing, truncated, or holds anything but
        tensors and plain containers (a pickle that would run code is refused unread).
    """
    p = Path(path)
    if not p.is_file():
        raise MixzooInputError(f"{what} {str(p)!r} does not exist.")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        named = [line for line in lines if "GLOBAL" in line]  # the class or function the pickle would call
        if not named:  # bytes no weights-only pickle holds: not a refusal of code, a damaged or foreign file
            raise MixzooInputError(f"{what} {str(p)!r} cannot be read; it is damaged or not a torch file.") from None
        first = named[0]
        raise MixzooInputError(
            f"{what} {str(p)!r} was refused: it holds objects other than tensors and plain containers "
            f"({first}); mixzoo loads checkpoints with weights_only=True and never runs pickled code."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise MixzooInputError(
            f"{what} {str(p)!r} cannot be read ({err}); it is damaged or not a torch file."
        ) from None


def data_fingerprint(x: torch.Tensor) -> dict[str, Any]:
    """A cheap summary that tells whether a resumed run sees the data it started on: the shape, the sum and the sum of
    squares, in float64 a block of rows at a time (no copy of the data)."""
    total = square = 0.0
    flat = x.detach().reshape(len(x), -1) if x.ndim else x.detach().reshape(1, 1)
    reader = Reader(x)  # a memory-mapped file's pages are given back as the blocks are read
    for s in range(0, len(flat), FINGERPRINT_ROWS):
        block = flat[s : s + FINGERPRINT_ROWS].to("cpu", torch.float64)
        total += float(block.sum())
        square += float((block * block).sum())
        reader.read(len(block), contiguous=True)
    reader.done()
    return {"shape": list(x.shape), "sum": total, "sq": square}


FINGERPRINT_ROWS = 65_536


def param_store_values() -> dict[str, torch.Tensor]:
    """Detached copies of the current param store's unconstrained values."""
    return {k: v.detach().cpu().clone() for k, v in pyro.get_param_store().get_state()["params"].items()}
