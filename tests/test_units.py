"""Whatever units the data come in: the same clusters at x0.001, x1 and x1000, integer files treated as the built-in
images are, and numerical failures that explain themselves."""

import json

import numpy as np
import pytest
import torch
from conftest import QUICK_OPTIONS
from sklearn.metrics import adjusted_rand_score

from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig, config_from_json
from mixzoo.app.runs import execute, run_fit
from mixzoo.data import Dataset, detect_levels, load_dataset, preprocess
from mixzoo.models import MODELS
from mixzoo.models.gmm import GaussianMixture

FAMILIES = list(MODELS)


def _write(tmp_path, name, x, y):
    path = tmp_path / f"{name}.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def test_levels_are_found_whatever_the_units():
    x = load_dataset("digits").x
    for factor in (1.0, 1000.0, 0.001):
        found = detect_levels((x * factor).astype(np.float32))
        assert found is not None and found.count == 17 and found.bottom == 0.0
        assert found.top == pytest.approx(16 * factor, rel=1e-6)
    rng = np.random.default_rng(0)
    assert detect_levels(rng.normal(size=(500, 3))) is None  # continuous
    assert detect_levels(np.full((10, 2), 3.0)) is None  # constant
    assert detect_levels(rng.integers(0, 300, (2000, 2))) is None  # more levels than an 8-bit image
    assert detect_levels(np.array([[0.0, 1.0], [3.0, 0.5]])).count == 7  # spacing 0.5 from 0 to 3
    assert detect_levels(np.array([[0.0, 1.0], [0.3, 1.0]])) is None  # 1 is not on the grid of the smallest gap


def test_preprocessing_inverts_and_accounts_for_its_jacobian():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) * np.array([1e-3, 1.0, 1e3]) + 5.0
    d = preprocess(Dataset("t", x.astype(np.float32), None, None), scale="common")
    prep = d.preprocessing
    np.testing.assert_allclose(d.x.std(0).mean(), 1.0, rtol=0.8)
    np.testing.assert_allclose(np.sqrt((d.x.astype(np.float64).std(0) ** 2).mean()), 1.0, rtol=1e-4)
    np.testing.assert_allclose(prep.invert(d.x), x, rtol=1e-5, atol=1e-3)
    assert prep.log_det_jacobian() == pytest.approx(-3 * np.log(prep.arrays["sd"][0]))
    images = preprocess(load_dataset("digits", subsample=50), scale="common")
    assert (images.x.min() == 0.0) and (images.preprocessing.arrays["mean"] == 0).all()  # the background stays 0


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_gives_the_same_clusters_in_other_units(tmp_path, name):
    d = load_dataset("moons", subsample=300)
    labels = {}
    for factor in (0.001, 1.0, 1000.0):
        path = _write(tmp_path, f"moons-{factor}", (d.x * factor).astype(np.float32), d.labels)
        run = execute(FitConfig(model=name, data=path, epochs=3, options=QUICK_OPTIONS.get(name, {})), progress=False)
        assert run.config.scale == "features"  # a table of continuous features: each in its own unit
        labels[factor] = run.proba.argmax(1)
    for factor in (0.001, 1000.0):
        agree = adjusted_rand_score(labels[1.0], labels[factor])
        assert agree >= 0.97, f"{name} at x{factor}: ARI {agree:.3f} with the x1 partition"


def test_a_tables_features_may_each_come_in_its_own_unit(tmp_path):
    d = load_dataset("moons", subsample=300)
    factors = np.array([1e-3, 1e3], dtype=np.float32)
    one = run_fit(FitConfig(model="gmm", data=_write(tmp_path, "a", d.x, d.labels)), progress=False)
    other = run_fit(FitConfig(model="gmm", data=_write(tmp_path, "b", d.x * factors, d.labels)), progress=False)
    assert one["acc"] == other["acc"] and one["misclassified"] == other["misclassified"]
    common = execute(FitConfig(model="gmm", data=_write(tmp_path, "b", d.x * factors, d.labels), scale="common"), progress=False)
    assert common.config.scale == "common" and common.data.preprocessing.arrays["sd"].std() == 0  # one spread


def test_a_users_integer_file_is_treated_as_the_builtin_images(tmp_path, capsys):
    d = load_dataset("digits", subsample=400)
    path = _write(tmp_path, "digits", d.x.astype(np.int64), d.labels)
    for model in ("gmm", "flow-mixture"):
        options = QUICK_OPTIONS.get(model, {})
        built = execute(FitConfig(model=model, data="digits", subsample=400, epochs=2, options=options), progress=False)
        mine = execute(FitConfig(model=model, data=path, epochs=2, options=options), progress=True)
        assert mine.config.dequantize is built.config.dequantize is (model == "flow-mixture")
        np.testing.assert_array_equal(mine.data.x, built.data.x)  # the same inputs, so the same fit
        assert mine.metrics["acc"] == built.metrics["acc"]
    err = capsys.readouterr().err
    assert "the data take 17 evenly spaced values from 0 to 16: flow-mixture dequantizes them" in err
    off = execute(
        FitConfig(model="flow-mixture", data=path, epochs=1, dequantize=False, options=QUICK_OPTIONS["flow-mixture"]),
        progress=False,
    )
    assert off.config.dequantize is False and off.config.scale == "common"  # integers share their unit


def test_integer_features_each_in_its_own_unit_keep_their_levels(tmp_path, capsys):
    """Digits with every pixel column multiplied by its own factor (1e-3 to 1e3) share no grid, but each column is
    on one of its own: dequantized they are the built-in digits' inputs exactly, and scaled by one common spread in
    level units, the same to float rounding."""
    from mixzoo.data import detect_feature_levels

    d = load_dataset("digits", subsample=400)
    factors = (10.0 ** np.random.default_rng(0).uniform(-3, 3, d.x.shape[1])).astype(np.float32)
    scaled = (d.x * factors).astype(np.float32)
    assert detect_levels(scaled) is None
    found = detect_feature_levels(scaled)
    assert found is not None and found.count == 17 and found.per_feature
    used = d.x.max(0) > 0
    np.testing.assert_allclose(found.spacing[used], factors[used], rtol=1e-5)
    path = _write(tmp_path, "scaled", scaled, d.labels)
    for model in ("flow-mixture", "gmm"):
        options = QUICK_OPTIONS.get(model, {})
        built = execute(FitConfig(model=model, data="digits", subsample=400, epochs=2, options=options), progress=False)
        mine = execute(FitConfig(model=model, data=path, epochs=2, options=options), progress=True)
        assert mine.config.dequantize is built.config.dequantize is (model == "flow-mixture")
        assert mine.config.scale == built.config.scale
        np.testing.assert_allclose(mine.data.x, built.data.x, atol=1e-5)
        # new points get the run's own preprocessing, per feature
        np.testing.assert_allclose(mine.data.preprocessing.apply(scaled[:50]), built.data.preprocessing.apply(d.x[:50]),
                                   atol=1e-5)  # fmt: skip
    assert "each feature on a spacing of its own: flow-mixture dequantizes them" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    assert detect_feature_levels(rng.normal(size=(300, 3))) is None  # continuous
    assert detect_feature_levels(np.round(rng.normal(size=(2000, 3)), 2)) is None  # 600 steps of 0.01: continuous
    assert detect_feature_levels(np.array([[0.0, 0.0], [3.0, 0.0], [5.0, 0.0]])).count == 6  # 0, 3, 5: spacing 1
    assert detect_feature_levels(np.full((5, 2), 2.0)) is None  # constant


def test_the_neural_mixture_takes_the_image_recipe_once_the_shape_is_given(tmp_path):
    d = load_dataset("digits", subsample=200)
    path = _write(tmp_path, "digits", d.x.astype(np.int64), d.labels)
    run = execute(FitConfig(model="neural-mixture", data=path, epochs=1, options={"image": [8, 8]}), progress=False)
    assert run.config.options["arch"] == "cnn" and run.config.options["augment"] is True


def test_a_model_file_sees_the_data_in_the_users_units(tmp_path):
    model = tmp_path / "mine.py"
    model.write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "class M(pyro.nn.PyroModule):\n"
        "    def __init__(self, dim, n_clusters):\n"
        "        super().__init__(); self.loc = torch.nn.Parameter(torch.zeros(n_clusters, dim))\n"
        "    def forward(self, x, y=None, subsample=None):\n"
        "        with pyro.plate('data', len(x), subsample=subsample) as i:\n"
        "            k = pyro.sample('y', dist.Categorical(logits=torch.zeros(len(self.loc))), infer={'enumerate': 'parallel'})\n"
        "            pyro.sample('x', dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[i])\n"
    )
    run = execute(FitConfig(model=f"{model}:M", data="moons", subsample=100, epochs=1), progress=False)
    assert run.config.scale == "none" and run.config.dequantize is False


def test_old_runs_keep_their_units():
    raw = {"model": "gmm", "data": "moons", "scale": False}
    assert config_from_json(raw, "run").scale == "none"
    assert config_from_json({**raw, "scale": True}, "run").scale == "features"


def test_data_in_thousands_fit_and_a_singular_covariance_is_one_error_line(tmp_path, capsys, monkeypatch):
    d = load_dataset("digits", subsample=300)
    path = _write(tmp_path, "big", (d.x * 1000).astype(np.float32), d.labels)
    raw = ["fit", "--model", "gmm", "--data", path, "--scale", "none", "--covariance", "full", "--no-dequantize"]
    assert main([*raw, "--epochs", "5"]) == 0  # constant pixels, 64 dims: the covariance floor keeps every factor
    assert main(["fit", "--model", "gmm", "--data", path, "--json"]) == 0  # the default rescaling
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["acc"] > 0.6

    def singular(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.cholesky: The factorization could not be completed.\nmore")

    monkeypatch.setattr(GaussianMixture, "initialize", singular)  # outside training: the start
    assert main(raw) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: a covariance matrix is not positive-definite"), err
    monkeypatch.undo()
    monkeypatch.setattr(GaussianMixture, "log_joint", singular)  # inside training: a diverged epoch
    assert main([*raw, "--loss", "trace-enum", "--guide", "empty"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a covariance matrix is no longer positive-definite" in err[0], err


def test_a_fit_with_empty_clusters_says_so(capsys):
    assert main(["fit", "--model", "neural-mixture", "--data", "moons", "--subsample", "200", "--epochs", "3",
                 "--no-normalize", "--clusters", "4", "--json"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    record = json.loads(captured.out.splitlines()[-1])
    assert record["clusters_used"] < 4 and "clusters_used" in captured.out.splitlines()[-3]
    assert f"mixzoo: warning: {record['clusters_used']} of the 4 clusters hold points" in captured.err
