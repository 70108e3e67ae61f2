"""Every public function that takes data takes what ``mixzoo.fit`` takes: NumPy arrays (float64 or float32),
torch tensors, pandas DataFrames and nested lists; labels as NumPy arrays, pandas Series, lists or tensors.
Results agree across these kinds, and bad input raises one clear ``MixzooInputError`` before any work."""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import mixzoo
from mixzoo.analysis import plots
from mixzoo.analysis.summary import summarize
from mixzoo.data import load_dataset

pytestmark = pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")

DATA_KINDS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy-float64": lambda a: np.asarray(a, dtype=np.float64),
    "numpy-float32": lambda a: np.asarray(a, dtype=np.float32),
    "torch": lambda a: torch.as_tensor(a),
    "dataframe": lambda a: pd.DataFrame(a, columns=[f"f{j}" for j in range(a.shape[1])]),
    "list": lambda a: a.tolist(),
}
LABEL_KINDS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy": lambda a: np.asarray(a),
    "series": lambda a: pd.Series(a, name="label"),
    "list": lambda a: a.tolist(),
    "torch": lambda a: torch.as_tensor(a),
}


@pytest.fixture(scope="module")
def fit() -> SimpleNamespace:
    """A Gaussian and a Student-t mixture fitted to 150 points in three 2-D blobs."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 50)
    x = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])[y] + 0.5 * rng.standard_normal((150, 2))
    est = mixzoo.MixtureClusterer("gmm", 3, random_state=0).fit(x)
    t = mixzoo.MixtureClusterer("student-t", 3, random_state=0).fit(x)
    return SimpleNamespace(
        x=x,
        y=y,
        est=est,
        model=est.model_,
        guide=est.guide_,
        t_model=t.model_,
        proba=est.predict_proba(x),
        losses=np.asarray(est.history_.losses),
    )


def _png(path: Any) -> bytes:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:4] == b"\x89PNG", path
    return data


def test_cluster_proba_and_log_likelihood_take_numpy_lists_and_tensors():
    d = load_dataset("pinwheel", subsample=300)
    model, guide = mixzoo.GaussianMixture(dim=2, n_clusters=5), mixzoo.EmptyGuide()
    model.initialize(d.x, seed=0)
    mixzoo.fit(model, guide, d.x, epochs=3, progress=False)
    want = mixzoo.cluster_proba(model, guide, torch.as_tensor(d.x))
    for x in (d.x, d.x.astype(np.float64), d.x.tolist()):
        torch.testing.assert_close(mixzoo.cluster_proba(model, guide, x), want)
    ll = mixzoo.log_likelihood(model, guide, d.x)
    torch.testing.assert_close(ll, torch.logsumexp(mixzoo.cluster_log_joint(model, guide, d.x.tolist()), -1))
    with pytest.raises(mixzoo.MixzooInputError, match="NaN"):
        mixzoo.cluster_proba(model, guide, np.full((3, 2), np.nan))


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_posterior_functions_agree_across_input_kinds(fit, kind):
    for fn in (mixzoo.cluster_proba, mixzoo.cluster_log_proba, mixzoo.cluster_log_joint, mixzoo.log_likelihood):
        want = fn(fit.model, fit.guide, fit.x)
        torch.testing.assert_close(fn(fit.model, fit.guide, DATA_KINDS[kind](fit.x)), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_estimator_methods_agree_across_input_kinds(fit, kind):
    x = DATA_KINDS[kind](fit.x)
    np.testing.assert_allclose(fit.est.predict_proba(x), fit.proba, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(fit.est.predict(x), fit.proba.argmax(1))
    np.testing.assert_allclose(fit.est.score_samples(x), fit.est.score_samples(fit.x), rtol=1e-6, atol=1e-6)
    assert fit.est.score(x) == pytest.approx(fit.est.score(fit.x), rel=1e-6)


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_summarize_agrees_across_input_kinds(fit, kind):
    got = summarize(fit.model, fit.guide, DATA_KINDS[kind](fit.x), n_draws=0)
    want = summarize(fit.model, fit.guide, fit.x, n_draws=0)
    for group, var in (("cluster_posterior", "responsibility"), ("log_likelihood", "x"), ("observed_data", "x")):
        np.testing.assert_allclose(np.asarray(got[group][var]), np.asarray(want[group][var]), rtol=1e-6, atol=1e-6)


def _draw_data_plots(fit: SimpleNamespace, d: Any, x: Any, proba: Any) -> dict[str, bytes]:
    (d / "run").mkdir(parents=True)
    paths = [
        plots.plot_clusters(x, fit.y, d / "c.png"),
        plots.plot_confidence(proba, d / "p.png"),
        plots.plot_decision_regions(fit.model, fit.guide, x, d / "r.png", n=30),
        plots.plot_component_densities(fit.t_model, x, d / "dens.png", n=30),
        *plots.write_fit_plots(d / "run", x=x, proba=proba, losses=fit.losses, labels=fit.y),
    ]
    return {p.name: _png(p) for p in paths}


def _draw_label_plots(fit: SimpleNamespace, d: Any, y: Any, pred: Any, losses: Any) -> dict[str, bytes]:
    (d / "run").mkdir(parents=True)
    paths = [
        plots.plot_confusion(y, pred, d / "c.png"),
        plots.plot_clusters(fit.x, y, d / "s.png"),
        plots.plot_loss(losses, d / "l.png", val_losses=losses),
        *plots.write_fit_plots(d / "run", x=fit.x, proba=fit.proba, losses=losses, labels=y),
    ]
    return {p.name: _png(p) for p in paths}


@pytest.fixture(scope="module")
def reference_plots(fit, tmp_path_factory) -> SimpleNamespace:
    """The figures drawn from NumPy float64 data and integer NumPy labels."""
    d = tmp_path_factory.mktemp("reference")
    data = _draw_data_plots(fit, d / "data", fit.x, fit.proba)
    labels = _draw_label_plots(fit, d / "labels", fit.y, fit.proba.argmax(1), fit.losses)
    assert len(data) == 9 and len(labels) == 8  # write_fit_plots: loss, clusters, confidence, confusion, reliability
    return SimpleNamespace(data=data, labels=labels)


@pytest.mark.parametrize("kind", [k for k in DATA_KINDS if k != "numpy-float64"])
def test_plots_draw_the_same_figures_for_every_input_kind(fit, reference_plots, kind, tmp_path):
    as_kind = DATA_KINDS[kind]
    assert _draw_data_plots(fit, tmp_path, as_kind(fit.x), as_kind(fit.proba)) == reference_plots.data


@pytest.mark.parametrize("kind", [k for k in LABEL_KINDS if k != "numpy"])
def test_label_and_loss_plots_agree_across_kinds(fit, reference_plots, kind, tmp_path):
    as_kind = LABEL_KINDS[kind]
    got = _draw_label_plots(fit, tmp_path, as_kind(fit.y), as_kind(fit.proba.argmax(1)), as_kind(fit.losses))
    assert got == reference_plots.labels


def test_integral_float_labels_are_taken(fit, tmp_path):
    plots.plot_confusion(fit.y.astype(float), pd.Series(fit.proba.argmax(1).astype(np.float32)), tmp_path / "c.png")
    _png(tmp_path / "c.png")


BAD_DATA = {
    "string-column": (
        lambda fit: pd.DataFrame({"a": fit.x[:, 0], "b": ["s"] * len(fit.x)}),
        r"non-numeric column\(s\) 'b'",
    ),
    "string-list": (lambda fit: [["a", "b"], ["c", "d"]], "not numeric"),
    "three-features": (lambda fit: np.ones((5, 3)), r"3 features.* 2"),
    "one-dimensional": (lambda fit: fit.x[:, 0], "2-D|2D array"),
    "nan": (lambda fit: np.where(np.eye(150, 2, dtype=bool), np.nan, fit.x), "NaN"),
}

DATA_FUNCTIONS: dict[str, Callable[[SimpleNamespace, Any, Any], Any]] = {
    "cluster_proba": lambda fit, x, d: mixzoo.cluster_proba(fit.model, fit.guide, x),
    "cluster_log_proba": lambda fit, x, d: mixzoo.cluster_log_proba(fit.model, fit.guide, x),
    "cluster_log_joint": lambda fit, x, d: mixzoo.cluster_log_joint(fit.model, fit.guide, x),
    "log_likelihood": lambda fit, x, d: mixzoo.log_likelihood(fit.model, fit.guide, x),
    "summarize": lambda fit, x, d: summarize(fit.model, fit.guide, x, n_draws=0),
    "predict": lambda fit, x, d: fit.est.predict(x),
    "predict_proba": lambda fit, x, d: fit.est.predict_proba(x),
    "score": lambda fit, x, d: fit.est.score(x),
    "score_samples": lambda fit, x, d: fit.est.score_samples(x),
    "plot_clusters": lambda fit, x, d: plots.plot_clusters(x, np.zeros(np.shape(x)[0], int), d / "c.png"),
    "plot_decision_regions": lambda fit, x, d: plots.plot_decision_regions(fit.model, fit.guide, x, d / "r.png"),
    "plot_component_densities": lambda fit, x, d: plots.plot_component_densities(fit.t_model, x, d / "c.png"),
    "write_fit_plots": lambda fit, x, d: plots.write_fit_plots(
        d, x=x, proba=np.full((np.shape(x)[0], 3), 1 / 3), losses=[1.0]
    ),
}


@pytest.mark.parametrize("bad", BAD_DATA)
@pytest.mark.parametrize("function", DATA_FUNCTIONS)
def test_bad_data_is_refused_clearly_before_any_work(fit, function, bad, tmp_path):
    make, message = BAD_DATA[bad]
    if function in ("plot_clusters", "write_fit_plots") and bad == "three-features":
        pytest.skip("the scatter of clusters draws any number of features (through PCA)")
    with pytest.raises(mixzoo.MixzooInputError, match=message):
        DATA_FUNCTIONS[function](fit, make(fit), tmp_path)
    assert list(tmp_path.iterdir()) == []


BAD_OTHER = {
    "labels-too-short": (
        lambda fit, d: plots.plot_clusters(fit.x, fit.y[:10], d / "c.png"),
        "10 entries but x has 150",
    ),
    "labels-strings": (lambda fit, d: plots.plot_confusion(["a"] * 3, [0, 1, 1], d / "c.png"), "must be integers"),
    "labels-fractions": (lambda fit, d: plots.plot_clusters(fit.x, fit.y + 0.5, d / "c.png"), "must be integers"),
    "labels-2d": (lambda fit, d: plots.plot_confusion(fit.y[:, None], fit.y, d / "c.png"), "must be 1-D"),
    "labels-lengths": (lambda fit, d: plots.plot_confusion(fit.y, fit.y[:5], d / "c.png"), "5 entries but labels_true"),
    "proba-1d": (lambda fit, d: plots.plot_confidence(fit.proba[:, 0], d / "p.png"), r"\(N, K\)"),
    "proba-nan": (lambda fit, d: plots.plot_confidence(np.full((3, 3), np.nan), d / "p.png"), "NaN"),
    "proba-log": (lambda fit, d: plots.plot_confidence(np.log(fit.proba + 1e-9), d / "p.png"), r"outside \[0, 1\]"),
    "proba-strings": (lambda fit, d: plots.plot_confidence(pd.DataFrame({"k": ["a"]}), d / "p.png"), "'k'"),
    "losses-strings": (lambda fit, d: plots.plot_loss(pd.Series(["a", "b"]), d / "l.png"), "numbers"),
    "losses-2d": (lambda fit, d: plots.plot_loss(np.ones((2, 2)), d / "l.png"), "1-D"),
    "losses-empty": (lambda fit, d: plots.plot_loss([], d / "l.png"), "no losses"),
    "fit-plots-labels": (
        lambda fit, d: plots.write_fit_plots(d, x=fit.x, proba=fit.proba, losses=fit.losses, labels=fit.y[:3]),
        "3 entries but x has 150",
    ),
    "fit-plots-proba-rows": (
        lambda fit, d: plots.write_fit_plots(d, x=fit.x, proba=fit.proba[:7], losses=fit.losses),
        "7 rows but x has 150",
    ),
    "fit-plots-losses": (
        lambda fit, d: plots.write_fit_plots(d, x=fit.x, proba=fit.proba, losses=[[1.0, 2.0]]),
        "1-D",
    ),
}


@pytest.mark.parametrize("case", BAD_OTHER)
def test_bad_labels_probabilities_and_losses_are_refused_before_drawing(fit, case, tmp_path):
    call, message = BAD_OTHER[case]
    with pytest.raises(mixzoo.MixzooInputError, match=message):
        call(fit, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_component_densities_need_a_model_that_states_them(fit, tmp_path):
    with pytest.raises(TypeError, match="component_log_prob"):
        plots.plot_component_densities(torch.nn.Linear(2, 3), fit.x, tmp_path / "d.png")


def test_the_gaussian_mixture_states_its_component_densities(fit):
    x = torch.as_tensor(fit.x, dtype=torch.float32)
    expected = fit.model.component().log_prob(x[:, None, :])
    assert torch.allclose(fit.model.component_log_prob(x), expected, atol=1e-4)
