"""The density families' recipe above 100 features: 50 principal components, unless --pca says otherwise."""

import json

import numpy as np
import pytest
from conftest import plan_of

from mixzoo import MixzooInputError
from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_evaluate, run_fit
from mixzoo.models.family import DataShape


@pytest.fixture
def wide(tmp_path):
    """Three well separated clusters in 120 features, with their labels, saved as a user's CSV file."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 120))
    x = np.concatenate([c + rng.normal(size=(100, 120)) for c in centres])
    labels = np.repeat(np.arange(3), 100)
    path = tmp_path / "wide.csv"
    header = ",".join([*(f"f{i}" for i in range(120)), "label"])
    np.savetxt(path, np.column_stack([x, labels]), delimiter=",", header=header, comments="", fmt="%.5f")
    return str(path)


def test_the_rule_follows_the_number_of_features():
    assert plan_of("gmm", DataShape(70000, 784, (28, 28), 256)).pca == 50
    assert plan_of("gmm", DataShape(1797, 64, (8, 8), 17)).pca is None  # digits keep their pixels
    assert plan_of("gmm", DataShape(40, 784)).pca is None  # fewer points than components: nothing to gain
    assert plan_of("neural-mixture", DataShape(70000, 784, (28, 28), 256)).pca is None  # a deep family reads the image itself


def test_gmm_reduces_wide_data_by_default_and_the_run_reloads(wide, tmp_path, capsys):
    out = tmp_path / "run"
    record = run_fit(FitConfig(model="gmm", data=wide, label_column="label", clusters=3, epochs=5), out=str(out), progress=True)
    assert record["pca"] == 50 and record["dim"] == 50 and record["acc"] > 0.99
    assert "reduces the 120 features to 50 principal components" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["pca"] == 50
    again = run_evaluate(str(out))
    assert again["acc"] == record["acc"] and again["n"] == 300


@pytest.mark.parametrize("pca, dim", [(0, 120), (10, 10)])
def test_an_explicit_pca_overrides_the_rule(wide, pca, dim):
    record = run_fit(FitConfig(model="gmm", data=wide, label_column="label", clusters=3, epochs=3, pca=pca), progress=False)
    assert record["dim"] == dim and record["pca"] == pca


def test_a_deep_family_keeps_every_feature(wide):
    record = run_fit(FitConfig(model="neural-mixture", data=wide, label_column="label", clusters=3, epochs=1), progress=False)
    assert record["dim"] == 120 and record["pca"] is None


def test_negative_pca_is_refused():
    with pytest.raises(MixzooInputError, match="--pca must be an integer of at least 0"):
        run_fit(FitConfig(model="gmm", data="moons", pca=-1), progress=False)


@pytest.mark.parametrize(
    "model, options, dequantized",
    [("energy-mixture", {}, True), ("gmvae", {"pretrain": 1}, True), ("gmvae", {"pretrain": 1, "dequantize_noise": "epoch"}, False),
     ("neural-mixture", {}, False)],
)  # fmt: skip
def test_density_families_dequantize_integer_images(tmp_path, model, options, dequantized):
    """A Gaussian (or energy) density on integer pixels is unbounded; --dequantize-noise epoch wants the integers."""
    out = tmp_path / "run"
    run_fit(FitConfig(model=model, data="digits", subsample=200, epochs=1, threads=1, checkpoint_every=1, options=options),
            out=str(out), progress=False)  # fmt: skip
    assert json.loads((out / "config.json").read_text())["dequantize"] is dequantized


def test_pca_after_loading_equals_pca_at_loading_and_keeps_the_earlier_stages():
    from mixzoo.data import load_dataset, preprocess

    once = load_dataset("digits", scale=True, pca=10, subsample=500, seed=3)
    loaded = load_dataset("digits", scale=True, subsample=500, seed=3)
    twice = preprocess(loaded, pca=10, seed=3)
    np.testing.assert_array_equal(twice.x, once.x)
    assert twice.preprocessing.dim_in == 64 and set(twice.preprocessing.arrays) == set(once.preprocessing.arrays)
    raw = load_dataset("digits").x[:20]
    np.testing.assert_allclose(twice.preprocessing.apply(raw), once.preprocessing.apply(raw), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="scale cannot follow"):
        preprocess(once, scale=True)
