"""A :class:`torch.utils.data.Dataset` as the (N, D) array a fit trains on, written once, a chunk of items at a time.

Training draws its minibatches by row index from one (N, D) array, so a map-style dataset (``len(ds)`` and ``ds[i]``,
as :class:`~torch.utils.data.TensorDataset` and torchvision's datasets are) is read once into one: in memory where it is
small, else into a :func:`~mixzoo.data.mapped.scratch` file, which the fit then reads as it reads a memory-mapped
``.npy``. An item is a tensor, array or list of features, or a tuple whose first element is (the features and a
label, as the field's datasets give them); each is flattened, so images become rows of pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MixzooInputError
from .mapped import SCRATCH_BYTES, release, scratch

__all__ = ["is_torch_dataset", "dataset_rows"]

CHUNK = 4096
"""Items read and written at a time."""


def is_torch_dataset(x: Any) -> bool:
    """Whether ``x`` is a map-style :class:`torch.utils.data.Dataset` (not a tensor or an array)."""
    return isinstance(x, torch.utils.data.Dataset) and hasattr(x, "__len__")


def _features(item: Any, i: int, name: str) -> np.ndarray:
    value = item[0] if isinstance(item, tuple) else item  # (features, label); a list is the features
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise MixzooInputError(f"{name}[{i}] holds {type(value).__name__}, not numbers; its items must be tensors.")
    return arr.reshape(-1)


def dataset_rows(ds: Any, *, name: str = "data") -> np.ndarray:
    """The items of the dataset ``ds`` as one float32 (N, D) array; a :func:`~mixzoo.data.mapped.scratch` file from
    :data:`~mixzoo.data.mapped.SCRATCH_BYTES` on.

    :raises MixzooInputError: if it is empty, an item is not numbers, or items differ in size (row named).
    """
    n = len(ds)
    if n == 0:
        raise MixzooInputError(f"{name} is an empty dataset; pass at least one item.")
    first = _features(ds[0], 0, name)
    dim = first.size
    out = scratch((n, dim), np.float32) if n * dim * 4 >= SCRATCH_BYTES else np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, CHUNK):
        rows = [first if i == 0 else _features(ds[i], i, name) for i in range(s, min(s + CHUNK, n))]
        for j, row in enumerate(rows):
            if row.size != dim:
                raise MixzooInputError(
                    f"{name}[{s + j}] has {row.size} values but {name}[0] has {dim}; every item must be the same size."
                )
        out[s : s + len(rows)] = np.stack(rows)
        release(out[s : s + len(rows)])
    return out
