"""Closed-form EM for the Gaussian mixture (``--loss em``): the M-step, monotone likelihood, recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_errors import one_error_line
from sklearn.mixture import GaussianMixture as SkGMM

import mixzoo
from mixzoo.app.cli import main
from mixzoo.errors import MixzooInputError
from mixzoo.inference.em import ClosedFormEMStep
from mixzoo.models.gmm import GaussianMixture


def _three_blobs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    covs = [np.diag([1.0, 0.5, 2.0]), np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 0.5]]), 0.3 * np.eye(3)]
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    x = np.stack([rng.multivariate_normal(means[k], covs[k]) for k in labels]).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_m_step_is_the_weighted_moments(covariance: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(300, 4) * 2 + 50  # a large common offset must not cancel
    model = GaussianMixture(4, 3, covariance=covariance).initialize(x)
    r = torch.softmax(torch.randn(300, 3), -1)
    with torch.no_grad():
        model.em_update(model.em_statistics(x, r))
    x64, r64 = x.double(), r.double()
    nk = r64.sum(0)
    mu = (r64.T @ x64) / nk[:, None]
    cov = torch.stack([((x64 - mu[k]).T * r64[:, k]) @ (x64 - mu[k]) / nk[k] for k in range(3)])
    cov = cov + model.min_scale**2 * torch.eye(4, dtype=torch.float64)
    if covariance == "diag":
        cov = torch.diag_embed(cov.diagonal(dim1=-2, dim2=-1))
    torch.testing.assert_close(model.weights.double(), nk / 300, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.loc.double(), mu, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(model.covariances.double(), cov, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_log_joint_matches_the_components(covariance: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(100, 5) * 3 + 20
    model = GaussianMixture(5, 4, covariance=covariance).initialize(x)
    with torch.no_grad():
        expected = model.weights.log() + model.component().log_prob(x[:, None, :])
        torch.testing.assert_close(model.log_joint(x), expected, atol=2e-3, rtol=1e-5)


def test_em_never_lowers_the_likelihood_and_recovers_the_mixture() -> None:
    x, labels = _three_blobs()
    model = GaussianMixture(3, 3, covariance="full").initialize(torch.as_tensor(x), seed=0)
    result = mixzoo.fit(model, "posterior", x, loss="em", epochs=40, progress=False)
    losses = np.array(result.losses)
    assert np.all(np.diff(losses) <= 1e-5), "an EM iteration raised the negative log-likelihood"
    assert losses[-1] < losses[0]
    sk = SkGMM(3, covariance_type="full", tol=1e-8, max_iter=500, random_state=0).fit(x)
    order = [int(np.argmin(((sk.means_ - m) ** 2).sum(1))) for m in model.loc.detach().numpy()]
    np.testing.assert_allclose(model.loc.detach().numpy(), sk.means_[order], atol=0.02)
    np.testing.assert_allclose(model.weights.detach().numpy(), sk.weights_[order], atol=0.01)
    np.testing.assert_allclose(losses[-1], -sk.score(x), atol=2e-3)
    proba = mixzoo.cluster_proba(model, mixzoo.guides.EmptyGuide(), x)
    assert mixzoo.analysis.metrics.clustering_report(labels, proba.numpy())["acc"] > 0.98


def test_an_epoch_is_one_iteration_whatever_the_batch_size() -> None:
    x, _ = _three_blobs(n=300, seed=1)
    trained = []
    for batch_size in (None, 64):
        model = GaussianMixture(3, 3, covariance="full").initialize(torch.as_tensor(x), seed=0)
        mixzoo.fit(model, "posterior", x, loss="em", epochs=5, batch_size=batch_size, progress=False)
        trained.append(model)
    for name in ("loc", "log_scale", "tril", "logits"):
        torch.testing.assert_close(getattr(trained[0], name), getattr(trained[1], name), atol=1e-4, rtol=1e-4)


def test_observed_labels_fix_the_responsibilities() -> None:
    x, labels = _three_blobs(n=300, seed=2)
    model = GaussianMixture(3, 3, covariance="diag").initialize(torch.as_tensor(x), seed=0)
    step = ClosedFormEMStep(model)
    y = torch.as_tensor(labels)
    step(torch.as_tensor(x), y, torch.arange(300))
    step.end_epoch()
    for k in range(3):
        np.testing.assert_allclose(model.loc[k].detach().numpy(), x[labels == k].mean(0), atol=1e-4)


def test_the_step_refuses_a_model_without_closed_form_updates() -> None:
    with pytest.raises(MixzooInputError, match="em_update"):
        ClosedFormEMStep(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_em_is_the_default_and_learning_rates_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    est = mixzoo.MixtureClusterer("gmm", 3, random_state=0).fit(_three_blobs(n=300)[0])
    assert (est.config_.guide, est.config_.loss) == ("posterior", "em")
    assert est.history_.converged and est.history_.epochs < 50
    for flag in (["--lr", "0.1"], ["--lr-decay", "0.9"], ["--retries", "2"]):
        assert main(["fit", "--model", "gmm", "--data", "moons", *flag]) == 2
        assert f"{flag[0]} cannot apply to loss 'em'" in one_error_line(capsys)
    assert main(["fit", "--model", "gmm", "--data", "moons", "--subsample", "200", "--loss", "trace-enum", "--epochs", "2", "--lr", "0.05"]) == 0


def test_em_stops_at_its_first_quiet_iteration() -> None:
    """EM's epoch loss is the exact NLL and never rises, so one change below tol ends training."""
    x, _ = _three_blobs(n=400, seed=3)
    model = GaussianMixture(3, 3, covariance="full").initialize(torch.as_tensor(x), seed=1)
    tol = 1e-4
    result = mixzoo.fit(model, "posterior", x, loss="em", epochs=300, tol=tol, progress=False)
    changes = np.abs(np.diff(result.losses))
    scale = np.maximum(1.0, np.abs(np.asarray(result.losses[1:])))
    assert result.stopped == "converged"
    assert changes[-1] <= tol * scale[-1]
    assert np.all(changes[:-1] > tol * scale[:-1]), "training went on after a quiet iteration"


def test_the_closed_form_is_chosen_by_the_model_not_by_the_loss_object() -> None:
    """``em`` is one algorithm: the same loss takes the closed form on a model that offers it (one iteration per
    epoch, no learning rate) and gradient M-steps on one that does not, and with an exact E-step both report the
    negative log-likelihood."""
    from mixzoo.guides import PosteriorGuide
    from mixzoo.inference import EM

    x, _ = _three_blobs(n=300, seed=4)
    model = GaussianMixture(3, 3, covariance="diag").initialize(torch.as_tensor(x), seed=0)
    with torch.no_grad():
        model.loc += 1.0  # away from the optimum, so that an iteration moves far
    start = -float(torch.logsumexp(model.log_joint(torch.as_tensor(x)), -1).sum()) / len(x)
    result = mixzoo.fit(model, PosteriorGuide(model), x, loss=EM(), epochs=2, lr=1e-12, progress=False)
    assert result.losses[0] == pytest.approx(start, rel=1e-5)  # the exact NLL of the parameters it started from
    assert result.losses[1] < result.losses[0] - 1e-3  # a closed-form iteration moved it, whatever the learning rate

    class NoClosedForm(GaussianMixture):
        em_statistics = None  # type: ignore[assignment]

    slow = NoClosedForm(3, 3, covariance="diag").initialize(torch.as_tensor(x), seed=0)
    with torch.no_grad():
        slow.loc += 1.0
    result = mixzoo.fit(slow, PosteriorGuide(slow), x, loss=EM(), epochs=2, lr=1e-12, progress=False)
    assert result.losses[0] == pytest.approx(start, rel=1e-5)  # -ELBO at the exact E-step: the NLL again
    assert result.losses[1] == pytest.approx(result.losses[0], rel=1e-6)  # gradient steps of 1e-12 move nothing
