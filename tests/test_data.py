import gzip
import struct

import numpy as np
import pytest

from mixzoo import MixzooInputError
from mixzoo.data import Dataset, load_dataset, pinwheel, read_idx
from mixzoo.data.datasets import DATASETS


def _write_idx(path, arr, gz=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_idx_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", arr, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)


def test_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(MixzooInputError, match="not an idx file"):
        read_idx(tmp_path / "bad")


def test_mnist_and_mnist5_from_data_dir(fake_mnist, monkeypatch):
    d = load_dataset("mnist", data_dir=str(fake_mnist))
    assert d.x.shape == (40, 784) and d.x.max() <= 1.0 and d.labels.shape == (40,)
    monkeypatch.setenv("MIXZOO_DATA", str(fake_mnist))
    d5 = load_dataset("mnist5")
    assert set(d5.labels) == {0, 1, 2, 3, 4} and len(d5) == 20


def test_missing_data_dir_names_both_options(monkeypatch):
    monkeypatch.delenv("MIXZOO_DATA", raising=False)
    with pytest.raises(MixzooInputError, match="--data-dir PATH or set MIXZOO_DATA"):
        load_dataset("mnist")
    with pytest.raises(MixzooInputError, match="does not exist"):
        load_dataset("mnist", data_dir="/nonexistent/dir")


def test_unknown_data_name_lists_choices():
    with pytest.raises(MixzooInputError, match="unknown data 'cifar'; choose one of: digits"):
        load_dataset("cifar")


def test_pinwheel_has_five_curved_arms():
    x, y = pinwheel(n_samples=1000, seed=1)
    assert x.shape == (1000, 2) and set(y) == set(range(5))
    # each arm's mean radius is about 10 (unit radial offset, scaled by 10) and arms point in different directions
    radii = np.linalg.norm(x, axis=1)
    assert 8 < np.median(radii) < 13
    angles = [np.angle(np.mean(x[y == k] @ [1, 1j])) for k in range(5)]
    gaps = np.diff(np.sort(angles))
    assert np.all(gaps > 0.8)


def test_preprocessing_pca_scale_subsample():
    d = load_dataset("digits", pca=10, subsample=500, seed=0)
    assert d.x.shape == (500, 10) and d.labels.shape == (500,) and d.image_shape is None
    s = load_dataset("digits", scale=True)
    assert np.allclose(s.x.mean(0), 0, atol=1e-5)
    with pytest.raises(MixzooInputError, match="--pca must be between 1 and"):
        load_dataset("moons", pca=3)


@pytest.mark.parametrize("name", ["digits", "pinwheel", "two-circles", "moons", "mnist1d"])
def test_embedded_data_sets_load(name):
    d = load_dataset(name)
    assert d.x.dtype == np.float32 and d.x.ndim == 2 and len(d.labels) == len(d.x)
    assert d.n_classes == len(np.unique(d.labels))
    assert name in DATASETS


def test_dequantize_spreads_each_level_uniformly_over_its_bin():
    raw = load_dataset("digits")
    d = load_dataset("digits", dequantize=True, seed=3)
    assert d.x.min() >= 0.0 and d.x.max() < 1.0
    frac = (d.x.astype(np.float64) * 17 - raw.x).ravel()  # level v lands in [v/17, (v+1)/17] (float32 rounding)
    assert frac.min() >= -1e-5 and frac.max() <= 1 + 1e-5
    assert abs(frac.mean() - 0.5) < 0.01 and abs(frac.var() - 1 / 12) < 0.005  # U[0, 1) within each bin
    np.testing.assert_array_equal(load_dataset("digits", dequantize=True, seed=3).x, d.x)
    assert not np.array_equal(load_dataset("digits", dequantize=True, seed=4).x, d.x)


def test_dequantize_mnist_uses_256_levels(fake_mnist, monkeypatch):
    monkeypatch.setenv("MIXZOO_DATA", str(fake_mnist))
    raw = load_dataset("mnist")
    d = load_dataset("mnist", dequantize=True)
    frac = d.x.astype(np.float64) * 256 - np.rint(raw.x * 255)
    assert frac.min() >= -1e-4 and frac.max() <= 1 + 1e-4 and frac.std() > 0.2


def test_dequantize_refuses_data_without_levels():
    with pytest.raises(MixzooInputError, match="'pinwheel' has no evenly spaced levels"):
        load_dataset("pinwheel", dequantize=True)


def test_transformed_data_cannot_be_dequantized_again():
    from mixzoo.data.datasets import preprocess

    for kwargs in ({"scale": True}, {"pca": 5}, {"dequantize": True}):
        d = load_dataset("digits", **kwargs)
        assert d.levels is None and d.top is None
        with pytest.raises(MixzooInputError, match="no evenly spaced levels"):
            preprocess(d, dequantize=True)
    assert load_dataset("digits", subsample=100).levels == 17  # subsampling keeps the integer levels


def _one_pass(d, dequantize, scale, seed):
    """What preprocess computes, on the whole array at once in float64 (the reference for the blockwise passes)."""
    x = d.x.astype(np.float64)
    if dequantize:
        level = np.rint((d.x - d.bottom) / (d.top - d.bottom) * (d.levels - 1))
        x = (level + np.random.default_rng([seed, 1]).random(x.shape)) / d.levels
    if scale == "features":
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    elif scale == "common":
        keep_zero = d.image_shape is not None or (d.levels is not None and not dequantize)
        x = (x - (0 if keep_zero else x.mean(0))) / np.sqrt(x.var(0).mean())
    return x


@pytest.mark.parametrize("scale", ["none", "features", "common"])
@pytest.mark.parametrize("dequantize", [False, True])
def test_blockwise_preprocessing_equals_the_whole_array_at_once(monkeypatch, scale, dequantize):
    import mixzoo.data.datasets as datasets

    d = load_dataset("digits", subsample=300)
    expected = _one_pass(d, dequantize, scale, seed=5)
    monkeypatch.setattr(datasets, "_BLOCK", 64 * 7)  # blocks of 7 rows
    p = datasets.preprocess(d, scale=scale, dequantize=dequantize, seed=5)
    assert p.x.dtype == np.float32 and p.x.flags.c_contiguous
    np.testing.assert_allclose(p.x, expected, rtol=1e-6, atol=1e-6)
    if dequantize and scale == "none":
        np.testing.assert_array_equal(p.x, expected.astype(np.float32))  # the same noise, drawn block after block


def test_scaling_statistics_stay_exact_over_millions_of_rows():
    from mixzoo.data.datasets import common_spread, preprocess

    x = np.full((3_000_000, 2), 1.1, dtype=np.float32)  # float32 sums drift: x.mean(axis=0) is 1.0735 here
    x[:, 1] = np.tile(np.array([0.1, 2.1], np.float32), 1_500_000)
    d = preprocess(Dataset("big", x, None, None), scale="features")
    mean, sd = d.preprocessing.arrays["mean"], d.preprocessing.arrays["sd"]
    low, high, one = (float(np.float32(v)) for v in (0.1, 2.1, 1.1))
    np.testing.assert_allclose(mean, [one, (low + high) / 2], rtol=1e-12)
    np.testing.assert_allclose(sd, [1.0, (high - low) / 2], rtol=1e-12)  # a constant column keeps unit spread
    np.testing.assert_allclose(np.unique(d.x[:, 1]), [-1.0, 1.0], rtol=1e-6)
    assert not d.x[:, 0].any()
    assert common_spread(x) == pytest.approx(sd[1] / np.sqrt(2), rel=1e-12)
