"""NUTS over a mixture's parameters: the potential, the posterior it samples, relabelling, and the run around it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_errors import one_error_line

from mixzoo import MixtureClusterer
from mixzoo.analysis.draws import load_draws, predictive_proba, relabel, summarize_draws
from mixzoo.app.cli import main
from mixzoo.inference.nuts import MarginalPotential, PosteriorSamples, nuts_refusal, sample_posterior
from mixzoo.models import FlowMixture, GaussianMixture, StudentTMixture

SHORT = {"chains": 2, "warmup": 100, "draws": 100, "processes": 1}


def _two_clusters(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    x = np.where(labels[:, None] == 1, 2.0, -1.0) + 0.5 * rng.standard_normal((n, 1))
    return torch.tensor(x, dtype=torch.float32), labels


def _fitted(x: torch.Tensor, k: int = 2) -> GaussianMixture:
    model = GaussianMixture(x.shape[1], k, "diag")
    model.initialize(x, seed=0)
    with torch.no_grad():
        for _ in range(50):
            model.em_update(model.em_statistics(x, torch.softmax(model.log_joint(x), -1)))
    return model


def test_the_potential_is_minus_log_prior_minus_the_marginal_likelihood():
    torch.manual_seed(0)
    model = GaussianMixture(2, 3, "full")
    with torch.no_grad():
        model.tril.normal_(0, 0.3)
        model.logits.normal_()
    x = torch.randn(50, 2)
    potential = MarginalPotential(model, x)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=model.logits), torch.distributions.MultivariateNormal(model.loc, scale_tril=model.scale_tril)
    )
    log_prior = sum(
        torch.distributions.Normal(0.0, s).log_prob(p).sum()
        for s, p in ((1.0, model.logits), (3.0, model.loc), (2.0, model.log_scale), (1.0, model.tril))
    )
    expected = -(log_prior + mixture.log_prob(x).sum())
    assert float(potential.energy(potential.center)) == pytest.approx(float(expected), rel=1e-5)
    # the whitened coordinates start at the fit: u = 0 is the center
    assert float(potential({"u": torch.zeros(potential.center.numel())})) == pytest.approx(float(expected), rel=1e-5)


def test_the_posterior_of_the_means_matches_the_conjugate_one():
    """Two well separated 1-D clusters: given the others, each mean's posterior is nearly Normal with standard
    deviation sigma / sqrt(N_k); the chains agree, and their spread is that, not the prior's or zero."""
    x, labels = _two_clusters()
    model = _fitted(x)
    samples = sample_posterior(model, x, seed=0, **SHORT)
    assert samples.params["loc"].shape == (2, 100, 2, 1)
    loc = samples.params["loc"][..., 0].reshape(-1, 2)
    order = model.loc[:, 0].argsort()
    for k, truth in zip(order.tolist(), (-1.0, 2.0), strict=True):
        n_k = int((labels == (truth > 0)).sum())
        expected_sd = 0.5 / math.sqrt(n_k)
        assert float(loc[:, k].mean()) == pytest.approx(truth, abs=4 * expected_sd + 0.05)
        assert 0.6 * expected_sd < float(loc[:, k].std()) < 1.6 * expected_sd
    assert sum(samples.divergences) == 0


def test_relabelling_undoes_a_permutation_of_the_draws():
    x, _ = _two_clusters()
    model = _fitted(x)
    reference = torch.softmax(model.log_joint(x), -1).detach().numpy()
    params = {n: p.detach().clone().expand(2, 3, *p.shape).clone() for n, p in model.named_parameters()}
    for name in ("logits", "loc", "log_scale"):  # draw (1, 1) names the clusters the other way round
        params[name][1, 1] = params[name][1, 1].flip(0)
    draws = relabel(model, PosteriorSamples(params), x, reference)
    assert draws.perms[1, 1].tolist() == [1, 0]
    assert draws.perms[0, 0].tolist() == [0, 1] and draws.switched == pytest.approx(1 / 6)
    np.testing.assert_allclose(predictive_proba(model, draws, x), reference, atol=1e-5)
    data = summarize_draws(model, draws, x, reference)
    loc = np.asarray(data.posterior["loc"])
    np.testing.assert_allclose(loc[1, 1], loc[0, 0], atol=1e-6)  # relabelled: the same draw as the others


def test_which_models_nuts_refuses_and_why():
    assert nuts_refusal(GaussianMixture) is None and nuts_refusal(StudentTMixture) is None
    assert "states no prior" in nuts_refusal(FlowMixture)
    assert "parameter entries" in nuts_refusal(GaussianMixture(64, 10, "full"))
    with pytest.raises(ValueError, match="chains must be a positive integer"):
        sample_posterior(GaussianMixture(1, 2), torch.zeros(4, 1), chains=0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "flow-mixture", "--sampler", "nuts"], "states no prior"),
        (["--chains", "2"], "--chains cannot apply without --sampler nuts"),
        (["--sampler", "nuts", "--calibration", "replicate"], "--calibration replicate cannot apply"),
        (["--sampler", "nuts", "--labels", "10"], "--labels cannot apply with --sampler nuts"),
        (["--sampler", "nuts", "--draws", "0"], "--draws must be an integer of at least 1"),
    ],
)
def test_sampler_flags_that_cannot_apply_are_refused_before_training(args, needle, capsys):
    assert main(["fit", "--data", "moons", "--subsample", "100", *args]) == 2
    assert needle in one_error_line(capsys)


def test_too_many_parameters_for_nuts_are_refused_before_training(tmp_path, capsys):
    assert main(["fit", "--data", "digits", "--sampler", "nuts", "--json"]) == 2
    err = capsys.readouterr().err
    assert "42250 parameter entries" in err and "sampling the posterior" not in err and "epoch" not in err


def test_a_run_sampled_with_nuts_predicts_and_evaluates_with_its_draws(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["fit", "--data", "moons", "--subsample", "300", "--clusters", "2", "--sampler", "nuts", "--chains", "2",
            "--warmup", "150", "--draws", "100", "--out", str(run), "--json", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["sampler"] == "nuts" and record["chains"] == 2 and record["draws"] == 100
    assert record["r_hat_max"] < 1.1 and record["ess_min"] > 20
    assert record["calibration"]["method"] == "none" and record["acc"] > 0.7
    draws = load_draws(run / "posterior.pt")
    assert draws.perms.shape == (2, 100, 2)
    proba = np.load(run / "proba.npy")
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["expected_misclassified"] == pytest.approx(record["expected_misclassified"], rel=1e-6)
    from mixzoo.app.predict import predict_run
    from mixzoo.data import load_dataset

    raw = load_dataset("moons", subsample=300, seed=0)
    np.save(tmp_path / "raw.npy", raw.x)
    np.testing.assert_allclose(predict_run(str(run), str(tmp_path / "raw.npy")), proba, atol=1e-6)


def test_the_estimator_samples_when_asked_and_reports_the_posterior_predictive():
    x, labels = _two_clusters(200)
    est = MixtureClusterer(n_clusters=2, random_state=0, sampler="nuts", chains=2, warmup=60, draws=60).fit(x.numpy())
    assert est.config_.calibration == "none" and est.sampling_["r_hat_max"] < 1.1
    proba = est.predict_proba(x.numpy())
    np.testing.assert_allclose(proba, predictive_proba(est.model_, est.draws_, est.model_inputs(x.numpy())), atol=1e-9)
    assert ((proba.argmax(1) == labels).mean() > 0.95) or ((proba.argmax(1) != labels).mean() > 0.95)
