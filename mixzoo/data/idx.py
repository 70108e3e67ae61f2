"""Reader for the idx format of the MNIST files (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from ..errors import MixzooInputError

__all__ = ["read_idx", "find_idx_file"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) into an array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise MixzooInputError(f"{path} is not an idx file (bad magic number).")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[data[2]])
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise MixzooInputError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {body.size}.")
    return body.reshape(shape)


def find_idx_file(data_dir: str | os.PathLike[str], stem: str) -> str:
    """Locate ``stem`` in ``data_dir`` under the usual MNIST spellings (``-idx3-ubyte`` or ``.idx3-ubyte``, gz or not)."""
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in (".gz", ""):
            path = os.path.join(data_dir, name + suffix)
            if os.path.isfile(path):
                return path
    raise MixzooInputError(
        f"{stem}(.gz) not found in {data_dir}; point --data-dir or MIXZOO_DATA at the MNIST idx files."
    )
