"""Reader for the idx format of the MNIST files (optionally gzip-compressed), and MNIST from a folder of them."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from ..errors import MixzooInputError
from .dataset import Dataset

__all__ = ["read_idx", "find_idx_file", "read_mnist_dir", "MNIST_IDX_STEMS"]

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


MNIST_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def read_mnist_dir(path: str, name: str = "mnist") -> Dataset:
    """MNIST from the four idx files (:data:`MNIST_IDX_STEMS`, gz or not) in the directory ``path``."""
    xs, ys = [], []
    for split in ("train", "t10k"):
        xs.append(read_idx(find_idx_file(path, f"{split}-images-idx3-ubyte")))
        ys.append(read_idx(find_idx_file(path, f"{split}-labels-idx1-ubyte")))
    for images, labels in zip(xs, ys, strict=True):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise MixzooInputError(
                f"the idx files in {path} hold images of shape {images.shape} and labels of shape {labels.shape}; "
                "MNIST-format data needs (N, 28, 28) images and N labels."
            )
    x = np.concatenate(xs).reshape(-1, 28 * 28).astype(np.float32) / 255.0
    return Dataset(name, x, np.concatenate(ys).astype(np.int64), 10, (28, 28), levels=256, top=1.0)
