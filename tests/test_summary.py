import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

import mixzoo
from mixzoo.analysis import arviz_adapter as arviz_compat
from mixzoo.analysis.summary import laplace_diagonal, save_summary, summarize
from mixzoo.app.estimator import MixtureClusterer


def _three_blobs(n=300, seed=2):
    rng = np.random.default_rng(seed)
    means = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    return means[rng.choice(3, n)] + rng.standard_normal((n, 2))


def test_adapter_builds_groups_with_dims_and_checks_them():
    groups = {
        "posterior": {"a": np.zeros((1, 1, 3))},
        "log_likelihood": {"x": np.zeros((1, 5, 4))},
        "observed_data": {"x": np.zeros((4, 2))},
    }
    dims = {"posterior/a": ["chain", "draw", "a_dim"], "log_likelihood/x": ["chain", "draw", "obs"], "x": ["obs", "f"]}
    data = arviz_compat.to_arviz(groups, dims, {"obs": np.arange(4)}, {"note": "kept"})
    assert dict(data["log_likelihood"]["x"].sizes) == {"chain": 1, "draw": 5, "obs": 4}
    assert dict(data["observed_data"]["x"].sizes) == {"obs": 4, "f": 2}
    assert list(data["posterior"]["draw"].values) == [0]
    assert data.attrs["note"] == "kept"
    with pytest.raises(ValueError, match="one name per axis"):
        arviz_compat.to_arviz({"posterior": {"a": np.zeros((1, 1, 3))}}, {"a": ["chain", "draw"]})


def test_summary_groups_shapes_and_netcdf(tmp_path):
    x = _three_blobs(120)
    est = MixtureClusterer(n_clusters=3, model_options={"covariance": "diag"}, epochs=60, random_state=0).fit(x)
    data = summarize(est.model_, est.guide_, est.model_inputs(x), n_draws=30)
    post = data["posterior"]
    # the Laplace draws of the model's natural quantities (weights, means, standard deviations), not raw logits
    assert post["loc"].shape == (1, 30, 3, 2) and post["weights"].shape == (1, 30, 3) and "logits" not in post
    np.testing.assert_allclose(post["weights"].values.sum(-1), 1.0, rtol=1e-6)
    assert (post["scale"].values > 0).all() and post["loc"].values.std(axis=1).min() > 0
    np.testing.assert_allclose(np.median(post["loc"].values[0], 0), est.model_.loc.detach().numpy(), atol=0.2)
    resp = data["cluster_posterior"]["responsibility"]
    assert resp.dims == ("chain", "draw", "obs", "cluster") and resp.shape == (1, 1, 120, 3)
    # the model's own posterior, not the run's calibrated report (the temperature divides the log probabilities)
    raw = np.exp(np.log(est.predict_proba(x)) * est.temperature_)
    np.testing.assert_allclose(resp.values[0, 0], raw / raw.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    ll = data["log_likelihood"]["x"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (1, 30, 120)
    # the draws scatter around the point estimate's log-likelihood, and are not all equal
    assert ll.values.std(axis=1).min() > 0
    inputs_ll = est.score_samples(x) - est.preprocessing_.log_det_jacobian()  # the summary is of the model's inputs
    np.testing.assert_allclose(np.median(ll.values[0], 0), inputs_ll, atol=0.5)
    assert data["observed_data"]["x"].shape == (120, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(data, var_names=["loc"], kind="stats")
    assert len(table) == 6
    sd = table["sd"].to_numpy(dtype=float) if "sd" in table else np.asarray(table.loc[:, "sd"], dtype=float)
    assert np.isfinite(sd).all() and (sd > 0).all()  # honest uncertainty: a spread, not NaN from one draw
    path = save_summary(data, tmp_path / "summary.nc")
    assert path.stat().st_size > 1000
    back = arviz_compat.load(path)
    np.testing.assert_allclose(back["log_likelihood"]["x"].values, ll.values)
    np.testing.assert_allclose(back["cluster_posterior"]["responsibility"].values, resp.values)
    assert back.attrs["mixzoo_loglik_draws"] == "laplace" and int(back.attrs["mixzoo_n_draws"]) == 30
    path.unlink()  # load reads into memory and closes the file


def test_laplace_diagonal_matches_gaussian_curvature():
    # one Gaussian-like mixture with known scale: d^2/dmu^2 of the NLL is n / sigma^2 per mean entry
    model = mixzoo.GaussianMixture(1, 2, min_scale=0.0)
    with torch.no_grad():
        model.loc.copy_(torch.tensor([[0.0], [100.0]]))
        model.log_scale.fill_(np.log(2.0))
        model.logits.copy_(torch.tensor([20.0, 0.0]))
    x = torch.randn(50, 1) * 2
    diag = laplace_diagonal(model, mixzoo.EmptyGuide(), x)
    names = [n for n, _ in model.named_parameters()]
    h_loc = diag[names.index("loc")]
    assert h_loc[0, 0].item() == pytest.approx(50 / 4.0, rel=1e-3)
    assert abs(h_loc[1, 0].item()) < 1e-3  # the empty component barely touches the likelihood


def test_loo_prefers_the_true_number_of_clusters():
    x = _three_blobs()
    fits = {}
    for k in (2, 3, 6):
        est = MixtureClusterer(n_clusters=k, epochs=150, random_state=0).fit(x)
        fits[f"K={k}"] = summarize(est.model_, est.guide_, est.model_inputs(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = {name: arviz_compat.loo(d) for name, d in fits.items()}
        ranking = arviz_compat.compare(fits)
    elpd = {name: r.elpd_loo for name, r in loo.items()}
    assert max(elpd, key=elpd.get) == "K=3"
    assert ranking.index[0] == "K=3"
    assert list(ranking.columns) == ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning"]
    assert (
        list(ranking["rank"]) == [0, 1, 2] and ranking["elpd_diff"].iloc[0] == 0 and (ranking["elpd_diff"] >= 0).all()
    )
    np.testing.assert_allclose(ranking.loc[list(elpd), "elpd_loo"], list(elpd.values()))  # unrounded
    assert all(r.p_loo > 0 and r.se > 0 and r.n_samples == 200 and r.n_data_points == 300 for r in loo.values())
    assert all(np.isfinite(r.pareto_k_max) and r.warning == (r.pareto_k_max > r.good_k) for r in loo.values())


class _ShiftModel(PyroModule):
    """A mixture whose global shift is a latent variable, sampled by the guide below."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([[-3.0], [3.0]]))

    def forward(self, x, y=None, subsample=None):
        shift = pyro.sample("shift", dist.Normal(0.0, 10.0))
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(2)), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.loc[k] + shift, 1.0).to_event(1), obs=x[idx])


class _ShiftGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(1.0))

    def forward(self, x, y=None, subsample=None):
        pyro.sample("shift", dist.Normal(self.mean, 0.1))


def test_guide_sampled_globals_are_drawn_with_predictive():
    x = torch.cat([torch.randn(40, 1) - 2.0, torch.randn(40, 1) + 4.0])
    data = summarize(_ShiftModel(), _ShiftGuide(), x, n_draws=25, seed=1)
    shift = data["posterior"]["shift"]
    assert shift.shape == (1, 25)
    assert abs(float(shift.mean()) - 1.0) < 0.1 and 0.05 < float(shift.std()) < 0.2
    assert data["log_likelihood"]["x"].shape == (1, 25, 80)
    mean = data["posterior"]["guide.mean"]  # guide.mean is a point estimate, repeated along the draws
    assert mean.shape == (1, 25) and float(mean.std()) == 0.0


def test_loo_with_too_few_draws_is_flagged_on_both_arviz_lines():
    rng = np.random.default_rng(0)
    dims = {"a": ["chain", "draw"], "x": ["chain", "draw", "obs"]}

    def data(draws):
        groups = {
            "posterior": {"a": rng.normal(size=(1, draws))},
            "log_likelihood": {"x": rng.normal(-1, 1, (1, draws, 30))},
        }
        return arviz_compat.to_arviz(groups, dims)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arviz_compat.arviz_major() < 1:  # 0.x smooths anyway and flags it
            few = arviz_compat.loo(data(20))
            assert few.warning and few.pareto_k_max > few.good_k
        else:  # 1.x cannot; the adapter says how many draws it needs
            for draws in (20, arviz_compat.MIN_LOO_DRAWS - 1):
                with pytest.raises(ValueError, match=f"too few posterior draws.*at least {arviz_compat.MIN_LOO_DRAWS}"):
                    arviz_compat.loo(data(draws))
        enough = arviz_compat.loo(data(arviz_compat.MIN_LOO_DRAWS))
    assert np.isfinite(enough.elpd_loo) and np.isfinite(enough.pareto_k_max) and enough.n_samples == 30


def test_a_full_covariance_fit_on_digits_summarizes_without_warnings():
    """Thousands of Cholesky entries: the diagonal Laplace draws are shrunk until they lose the log-likelihood the
    approximation predicts, directions the probes cannot tell from flat are held at the fit, and nothing warns."""
    import warnings

    import torch

    from mixzoo.analysis.posterior import log_likelihood
    from mixzoo.data import load_dataset

    pixels = load_dataset("digits", subsample=300, seed=0).x  # 4 x 4096 Cholesky entries
    est = MixtureClusterer(n_clusters=4, random_state=0, calibration="none").fit(pixels)  # posterior guide, EM
    x = est.model_inputs(pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = summarize(est.model_, est.guide_, x, n_draws=10)
    attrs = data.attrs
    assert attrs["mixzoo_loglik_draws"] == "laplace" and attrs["mixzoo_laplace_held_fixed"] > 0
    assert 0 < attrs["mixzoo_laplace_scale"] < 1
    ll = data["log_likelihood"]["x"].values[0]
    assert np.isfinite(ll).all() and ll.std(0).mean() > 0
    at_fit = float(log_likelihood(est.model_, est.guide_, torch.as_tensor(x)).sum())
    moved = sum(p.numel() for p in est.model_.parameters())
    assert at_fit - 2 * moved / 2 <= ll.sum(1).mean() < at_fit  # the draws lose about P/2 in all, at most twice that
