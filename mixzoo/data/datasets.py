"""Named data sets and user data files, and their preprocessing (dequantization, scaling, PCA, subsampling).

Labels travel with the data for evaluation only; no model sees them unless a
semi-supervised fit asks for them explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from ..errors import MixzooInputError
from .dataset import Dataset
from .files import SUFFIXES, load_file
from .idx import read_mnist_dir
from .levels import detect_feature_levels, detect_levels
from .mapped import SCRATCH_BYTES, is_mapped, release, row_blocks, scratch
from .toys import moons, pinwheel, two_circles
from .transform import Preprocessing

__all__ = [
    "Dataset",
    "DATASETS",
    "SCALES",
    "load_dataset",
    "resolve_data_dir",
    "preprocess",
    "read_mnist_dir",
    "is_data_path",
    "scale_mode",
    "common_spread",
    "with_levels",
]

DATA_ENV = "MIXZOO_DATA"


def is_data_path(name: str) -> bool:
    """Whether ``--data name`` means a file: a supported suffix, or an existing file or folder.

    The built-in names (:data:`~mixzoo.data.datasets.DATASETS`) stay names even if a file of
    that name exists in the working directory.
    """
    if name in DATASETS:
        return False
    return name.lower().endswith(SUFFIXES) or os.path.exists(os.path.expanduser(name))


def resolve_data_dir(data_dir: str | None) -> str:
    """The idx directory from the argument or ``MIXZOO_DATA``, checked to exist."""
    path = data_dir or os.environ.get(DATA_ENV)
    if not path:
        raise MixzooInputError(
            f"this data set is read from MNIST idx files: pass --data-dir PATH or set {DATA_ENV}=PATH."
        )
    if not os.path.isdir(path):
        raise MixzooInputError(f"data directory {path!r} does not exist; check --data-dir or {DATA_ENV}.")
    return path


def _digits(data_dir: str | None, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset("digits", d.data.astype(np.float32), d.target.astype(np.int64), 10, (8, 8), levels=17, top=16.0)


def _mnist(data_dir: str | None, seed: int) -> Dataset:
    return read_mnist_dir(resolve_data_dir(data_dir))


def _mnist5(data_dir: str | None, seed: int) -> Dataset:
    d = _mnist(data_dir, seed)
    keep = d.labels < 5
    return Dataset("mnist5", d.x[keep], d.labels[keep], 5, d.image_shape, levels=d.levels, top=d.top)


def _mnist1d(data_dir: str | None, seed: int) -> Dataset:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:  # pragma: no cover - depends on the environment
        raise MixzooInputError("data 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return Dataset("mnist1d", x, y, 10)


def _toy(fn: Callable[..., tuple[np.ndarray, np.ndarray]], name: str, k: int) -> Callable[[str | None, int], Dataset]:
    def load(data_dir: str | None, seed: int) -> Dataset:
        x, y = fn(seed=seed)
        return Dataset(name, x, y, k)

    return load


DATASETS: dict[str, Callable[[str | None, int], Dataset]] = {
    "digits": _digits,
    "mnist": _mnist,
    "mnist5": _mnist5,
    "mnist1d": _mnist1d,
    "pinwheel": _toy(pinwheel, "pinwheel", 5),
    "two-circles": _toy(two_circles, "two-circles", 2),
    "moons": _toy(moons, "moons", 2),
}


_STAGES = (("dequantize", "levels"), ("scale", "mean"), ("pca", "pca_mean"))
"""The preprocessing stages in the order :meth:`Preprocessing.apply` runs them, by the array each one saves."""


def _continued(d: Dataset, **adding: bool) -> Preprocessing:
    """The preprocessing of ``d`` (or none), copied, to which the stages in ``adding`` will be appended.

    :raises ValueError: when a stage would come before one ``d`` already had (it would apply in the wrong order).
    """
    if d.preprocessing is None:
        return Preprocessing(int(d.x.shape[1]), d.features)
    had = d.preprocessing.arrays
    for i, (stage, _) in enumerate(_STAGES):
        later = [key for _, key in _STAGES[i + 1 :] if key in had]
        if adding[stage] and later:
            raise ValueError(f"{stage} cannot follow the preprocessing {d.name!r} already had ({', '.join(later)})")
    return Preprocessing(d.preprocessing.dim_in, d.preprocessing.features, dict(had))


def with_levels(d: Dataset) -> Dataset:
    """``d`` with the levels :func:`~mixzoo.data.levels.detect_levels` finds in it (or, where its features share no
    grid, :func:`~mixzoo.data.levels.detect_feature_levels`), when it has none yet and has not been preprocessed: a
    user's integer table is then dequantized as the built-in images are."""
    if d.levels is not None or d.preprocessing is not None:
        return d
    found = detect_levels(d.x) or detect_feature_levels(d.x)
    release(d.x)  # its sample touched pages all over a memory-mapped file
    return d if found is None else replace(d, levels=found.count, top=found.top, bottom=found.bottom)


SCALES = ("none", "common", "features")
"""How :func:`preprocess` rescales features: not at all; by one common spread (each feature centred, images and
quantized data not); each feature to unit variance."""


def scale_mode(scale: bool | str | None) -> str:
    """``scale`` as one of :data:`SCALES` (``True`` is ``"features"``, ``False`` and ``None`` are ``"none"``)."""
    if scale is None or scale is False:
        return "none"
    if scale is True:
        return "features"
    if scale not in SCALES:
        raise MixzooInputError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}.")
    return str(scale)


def common_spread(x: np.ndarray) -> float:
    """The root mean square of the features' standard deviations: one spread for all features, so that dividing by
    it makes the data's units (a common factor on every feature) disappear; 1 for constant data."""
    x = np.asarray(x)
    return _spread(_moments(_blocks(x), x.shape[1])[1])


def _spread(var: np.ndarray) -> float:
    s = float(np.sqrt(np.mean(var)))
    return s if s > 0 and np.isfinite(s) else 1.0


_BLOCK = 1 << 20
"""Values (rows x features) :func:`preprocess` handles at a time: its float64 temporaries take 8 MB each, not the data's
size in float64 several times over."""


def _block_rows(x: np.ndarray) -> int:
    return max(1, _BLOCK // max(1, x.shape[1]))


def _blocks(x: np.ndarray, dequantize: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """``x`` a block of rows at a time, as float64 (dequantized by ``dequantize`` first where given)."""
    for block in row_blocks(x, _block_rows(x)):  # a memory-mapped file's pages are given back block by block
        yield dequantize(block) if dequantize is not None else block.astype(np.float64)


def _moments(blocks: Iterable[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance (ddof 0) in float64, the blocks' combined by Chan et al.'s pairwise update: exact
    to float64 rounding where float32 sums over millions of rows drift (12M rows of 10.0 have a float32 mean of 8.6);
    NaN for no rows."""
    n, mean, m2 = 0, np.full(dim, np.nan), np.full(dim, np.nan)
    for block in blocks:
        nb = len(block)
        mb = block.mean(axis=0)
        m2b = np.square(block - mb).sum(axis=0)
        if n == 0:
            n, mean, m2 = nb, mb, m2b
            continue
        delta, total = mb - mean, n + nb
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + np.square(delta) * (n * nb / total)
        n = total
    return mean, m2 / max(n, 1)


def preprocess(
    d: Dataset,
    *,
    scale: bool | str = False,
    pca: int | None = None,
    subsample: int | None = None,
    seed: int = 0,
    dequantize: bool = False,
) -> Dataset:
    r"""Subsample (without replacement, seeded), dequantize, rescale and/or PCA-reduce ``d``.

    A data set that was already preprocessed keeps its stages and gains the new ones after them
    (``d.preprocessing`` then describes both), so PCA can follow a scaling done at loading.
    ``dequantize`` turns values on levels :math:`\ell \in \{0, .., L-1\}` into
    :math:`(\ell + u) / L` with :math:`u \sim U[0, 1)` (seeded), values in [0, 1) with a
    continuous density: the preprocessing of Li et al. (2020) (after Theis et al., 2016).
    A Gaussian likelihood on the integer values themselves can grow without bound by
    shrinking its scale onto the levels.

    ``scale`` (:data:`SCALES`): ``"common"`` divides every feature by one spread, :func:`common_spread`, and centres
    each feature unless the data are an image or quantized (whose zero, the background or no count, stays 0), so
    that a fit sees the same numbers whatever the data's units; ``"features"`` (or ``True``) standardises each feature on its own.

    The rescaled or dequantized copy of a memory-mapped array of 64 MiB or more is itself a memory-mapped file
    (``mixzoo.data.mapped.scratch``, in the system's temporary folder), written a block at a time: preprocessing
    a file bigger than memory holds a block of it in memory, not a copy.
    """
    mode = scale_mode(scale)
    if dequantize and (d.levels is None or d.top is None):
        raise MixzooInputError(
            f"data {d.name!r} has no evenly spaced levels to dequantize; --dequantize applies to images and other "
            "quantized data (digits, mnist, a file of integers)."
        )
    x, y = d.x, d.labels
    fitted = _continued(d, dequantize=dequantize, scale=mode != "none", pca=pca is not None)
    if subsample is not None:
        if subsample < 1:
            raise MixzooInputError(f"--subsample must be positive, got {subsample}.")
        if subsample < len(x):
            idx = np.sort(np.random.default_rng(seed).choice(len(x), subsample, replace=False))
            x, y = x[idx], (None if y is None else y[idx])
    # dequantization and scaling apply a block of rows at a time, into one array of the result (see _BLOCK)
    noise: Callable[[], np.random.Generator] | None = None
    if dequantize:
        assert d.levels is not None and d.top is not None
        fitted.arrays.update(levels=np.array(d.levels), top=np.array(d.top), bottom=np.array(d.bottom))
        n_levels, top_level, bottom_level = d.levels, d.top, d.bottom
        noise = lambda: np.random.default_rng([seed, 1])  # noqa: E731 - the same draws, row after row, each pass

    def blocks() -> Iterator[np.ndarray]:
        if noise is None:
            yield from _blocks(x)
            return
        rng = noise()

        def spread(b: np.ndarray) -> np.ndarray:  # level l of a value, and u ~ U[0, 1): (l + u) / L
            level = np.rint((b - bottom_level) / (top_level - bottom_level) * (n_levels - 1))
            return (level + rng.random(b.shape)) / n_levels

        yield from _blocks(x, spread)

    mean = sd = None
    if mode == "features":
        mean, var = _moments(blocks(), x.shape[1])
        sd = np.sqrt(var)
        sd = np.where(sd > 0, sd, 1.0)
    elif mode == "common":
        keep_zero = d.image_shape is not None or (d.levels is not None and not dequantize)  # images, counts
        mean, var = _moments(blocks(), x.shape[1])
        if d.levels is not None and not dequantize and np.ndim(d.top) > 0:  # each feature on levels of its own: its
            # spacing is its unit, and its bottom its zero
            assert d.levels is not None and d.top is not None
            spacing = (np.asarray(d.top) - d.bottom) / (d.levels - 1)
            mean, sd = np.asarray(d.bottom, dtype=np.float64), spacing * _spread(var / spacing**2)
        else:
            if keep_zero:
                mean = np.zeros(x.shape[1])
            sd = np.full(x.shape[1], _spread(var))
    if mean is not None:
        fitted.arrays.update(mean=mean, sd=sd)
    if dequantize or mean is not None:
        wide = pca is not None and (dequantize or mode == "common")  # PCA fits on float64 there, float32 elsewhere
        dtype = np.dtype(np.float64 if wide else np.float32)
        on_disk = pca is None and is_mapped(x) and x.size * dtype.itemsize >= SCRATCH_BYTES
        out = scratch(x.shape, dtype) if on_disk else np.empty(x.shape, dtype=dtype)  # a mapped file's copy: a file
        step = _block_rows(x)
        for s, block in zip(range(0, len(x), step), blocks(), strict=True):
            out[s : s + step] = block if mean is None else (block - mean) / sd
            release(out[s : s + step])
        x = out
    if pca is not None:
        if not 1 <= pca <= min(x.shape):
            raise MixzooInputError(f"--pca must be between 1 and {min(x.shape)} for this data, got {pca}.")
        from sklearn.decomposition import PCA

        fit = PCA(n_components=pca, random_state=seed).fit(x)
        fitted.arrays.update(pca_mean=fit.mean_, pca_components=fit.components_)
        x = fit.transform(x)
    image_shape = d.image_shape if pca is None else None
    quantized = mode != "none" or pca is not None or dequantize
    levels, top, bottom = (None, None, 0.0) if quantized else (d.levels, d.top, d.bottom)  # no longer on levels
    return replace(
        d,
        x=np.ascontiguousarray(x, dtype=np.float32),
        labels=y,
        image_shape=image_shape,
        levels=levels,
        top=top,
        bottom=bottom,
        preprocessing=fitted,
    )


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    scale: bool | str = False,
    pca: int | None = None,
    subsample: int | None = None,
    seed: int = 0,
    dequantize: bool = False,
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
) -> Dataset:
    """Load a named data set or a user's data file and preprocess it.

    ``name`` is one of :data:`DATASETS` or a path that :func:`is_data_path`
    accepts (``.csv``, ``.tsv``, ``.npy``, ``.npz``, ``.parquet`` or a folder of MNIST idx
    files), read by :func:`~mixzoo.data.files.load_file` with ``label_column`` and ``columns``;
    ``data_dir`` applies to the built-in idx data only. Both kinds go through the same
    :func:`preprocess`.
    """

    if is_data_path(name):
        d = with_levels(load_file(name, label_column=label_column, columns=columns))
    else:
        if name not in DATASETS:
            raise MixzooInputError(
                f"unknown data {name!r}; choose one of: {', '.join(DATASETS)}; or pass the path of a data file "
                f"({', '.join(SUFFIXES)}) or of a folder of MNIST idx files."
            )
        for option, value in (("--label-column", label_column), ("--columns", columns)):
            if value is not None:
                raise MixzooInputError(
                    f"{option} applies to data files (.csv, .tsv, .parquet), not to the built-in data {name!r}; "
                    f"drop {option} or pass --data PATH."
                )
        d = DATASETS[name](data_dir, seed)
    return preprocess(d, scale=scale, pca=pca, subsample=subsample, seed=seed, dequantize=dequantize)
