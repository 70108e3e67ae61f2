"""ArviZ summaries of the deep families: named quantities in their constrained space, with Laplace spread.

Each family is fitted for a few epochs on three small blobs and summarized; the posterior group must hold
the model's ``summary_quantities()`` (mixing weights and the like), never logits or network weights, and
:func:`arviz.summary` must give each of them a finite standard deviation: positive where the quantity
depends on fitted parameters with curvature, zero for a fixed prior.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import torch

import mixzoo
from mixzoo.analysis.summary import summarize
from mixzoo.guides import EmptyGuide
from mixzoo.inference.nce import NCE
from mixzoo.models.energy_mixture import EnergyMixture

N_DRAWS = 20
MAX_POSTERIOR_NUMBERS = 60
"""More numbers than this per draw would mean network weights reached the summary."""


def _blobs(n: int = 90, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    return (means[rng.choice(3, n)] + rng.standard_normal((n, 2))).astype(np.float32)


def _fit(
    name: str, x: np.ndarray, options: dict, *, guide: str | None = None, loss: str | None = None, epochs: int = 10,
    guide_options: dict | None = None,
):
    """A small pair of family ``name``, built, started and trained as the command line does."""
    from mixzoo.app.config import FitConfig
    from mixzoo.app.planning import planned
    from mixzoo.app.restarts import train_one
    from mixzoo.data.shape import DataShape

    config = FitConfig(model=name, guide=guide, loss=loss, options=options, guide_options=guide_options or {}, clusters=3,
                       epochs=epochs, lr=1e-2, batch_size=45)  # fmt: skip
    c, plan = planned(config.resolved(), DataShape(*x.shape))
    xt = torch.as_tensor(x)
    model, q, _ = train_one(c, plan, xt, 0, loss=c.algorithm.loss(c.loss_opts()), x_train=xt, progress=False)
    return model, q


def _sd(data, name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(data, var_names=[name], kind="stats")
    return np.asarray(table.loc[:, "sd"], dtype=float)


def _check_posterior(data, expected: set[str]) -> dict[str, np.ndarray]:
    """The posterior holds exactly the named quantities, Laplace draws of a few numbers each."""
    post = data["posterior"]
    assert set(post.data_vars) == expected
    assert data.attrs["mixzoo_loglik_draws"] == "laplace"
    values = {name: post[name].values for name in expected}
    assert all(v.shape[:2] == (1, N_DRAWS) for v in values.values())
    assert sum(int(np.prod(v.shape[2:])) for v in values.values()) <= MAX_POSTERIOR_NUMBERS
    weights = values["weights"]
    assert weights.shape == (1, N_DRAWS, 3)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)  # in the simplex in every draw
    return values


def _summarize(model, guide, x: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no curvature floored: the draws are the Laplace spread
        return summarize(model, guide, x, n_draws=N_DRAWS)


def test_energy_mixture_linear_shows_weights_log_normalizers_and_natural_parameters():
    x = _blobs()
    model, guide = _fit("energy-mixture", x, {"features": "linear"})
    data = _summarize(model, guide, x)
    values = _check_posterior(data, {"weights", "log_normalizer", "theta"})
    assert values["theta"].shape == (1, N_DRAWS, 3, 2) and values["log_normalizer"].shape == (1, N_DRAWS, 3)
    for name in ("weights", "log_normalizer", "theta"):
        sd = _sd(data, name)
        assert np.isfinite(sd).all() and (sd > 0).all(), name
    # the weights average the responsibilities, as the cluster posterior group holds them at the fit
    at_fit = data["cluster_posterior"]["responsibility"].values[0, 0].mean(0)
    np.testing.assert_allclose(np.median(values["weights"][0], 0), at_fit, atol=0.05)


def test_energy_mixture_quadratic_shows_the_implied_gaussians():
    x = _blobs()
    model, guide = _fit("energy-mixture", x, {"features": "quadratic"}, epochs=40)
    data = _summarize(model, guide, x)
    values = _check_posterior(data, {"weights", "loc", "scale", "log_normalizer"})
    mean, var = model.gaussian_parameters()
    np.testing.assert_allclose(np.median(values["loc"][0], 0), mean.detach().numpy(), atol=0.3)
    np.testing.assert_allclose(np.median(values["scale"][0], 0), var.sqrt().detach().numpy(), rtol=0.2)
    for name in ("weights", "loc", "scale"):
        sd = _sd(data, name)
        assert np.isfinite(sd).all() and (sd > 0).all(), name


def test_energy_mixture_curvature_is_that_of_its_nce_loss():
    x = _blobs()
    model, guide = _fit("energy-mixture", x, {"features": "linear"})
    diag = mixzoo.analysis.summary.laplace_diagonal(model, guide, torch.as_tensor(x))
    # the non-normalized log-likelihood is convex in (theta, c): its negative would curve downwards everywhere
    assert all((d > 0).all() for d in diag)


def test_energy_mixture_laplace_loss_is_the_nce_loss():
    x = torch.as_tensor(_blobs())
    model = EnergyMixture(2, 3, features="quadratic").initialize(x)
    nce = NCE()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        noise = nce.draw_noise(x)
    with torch.no_grad():
        want = -nce.objective(model, EmptyGuide(), x, noise_samples=noise)
        got = model.laplace_loss(x, seed=3)
    assert float(got) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("guide", ["empty", "encoder"])
def test_flow_mixture_shows_its_weights_and_no_network(guide):
    x = _blobs()
    options = {"flow": "maf", "transforms": 1, "hidden": (4,)}
    model, q = _fit("flow-mixture", x, options, guide=guide, epochs=5, guide_options={"encoder_hidden": (4,)} if guide == "encoder" else {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # five epochs leave some flat directions in the flows
        data = summarize(model, q, x, n_draws=N_DRAWS)
    _check_posterior(data, {"weights"})  # neither the flows' nor the encoder's weights
    sd = _sd(data, "weights")
    assert np.isfinite(sd).all() and (sd > 0).all()


def test_neural_mixture_shows_its_fixed_prior_and_leaves_its_state_alone():
    x = _blobs()
    model, guide = _fit("neural-mixture", x, {"hidden": (8,)}, epochs=5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = _summarize(model, guide, x)
    values = _check_posterior(data, {"weights"})  # no network weights, no running statistics
    np.testing.assert_allclose(values["weights"], 1 / 3)  # the fixed uniform prior: no spread to report
    sd = _sd(data, "weights")
    assert np.isfinite(sd).all() and (sd == 0).all()
    # the curvature is taken in evaluation mode: no running statistics move, and the training mode stays
    assert model.training and model.net.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_gmvae_shows_its_prior_and_the_latent_gaussians():
    x = _blobs()
    options = {"latent": 2, "hidden": (4,), "pretrain": 2}
    model, guide = _fit("gmvae", x, options, loss="trace-enum", epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the latent scales sit at their bound of 1: floored
        data = summarize(model, guide, x, n_draws=N_DRAWS)
    values = _check_posterior(data, {"weights", "latent_loc", "latent_scale"})
    assert values["latent_loc"].shape == (1, N_DRAWS, 3, 2) and (values["latent_scale"] >= 1).all()
    assert (_sd(data, "weights") == 0).all()  # p(y) = 1/K is fixed
    sd = _sd(data, "latent_loc")
    assert np.isfinite(sd).all() and (sd > 0).all()
    np.testing.assert_allclose(np.median(values["latent_loc"][0], 0), model.mu_y.detach().numpy(), atol=0.3)
    assert np.isfinite(_sd(data, "latent_scale")).all()


@pytest.mark.parametrize("model, draws", [("neural-mixture", "point"), ("gmm", "laplace")])
def test_a_run_draws_from_the_laplace_approximation_only_for_a_model_of_few_parameters(tmp_path, capsys, model, draws):
    from mixzoo.analysis.arviz_adapter import load
    from mixzoo.app.config import FitConfig
    from mixzoo.app.runs import run_fit

    out = tmp_path / "run"
    run_fit(FitConfig(model=model, data="pinwheel", subsample=300, epochs=2, threads=1), out=str(out), progress=True)
    said = "the point estimate" if draws == "point" else "Laplace draws"
    assert said in capsys.readouterr().err
    assert load(out / "summary.nc").attrs["mixzoo_loglik_draws"] == draws
