"""The Gaussian mixture's six covariance structures: densities against scipy, the M-step as the maximizer of the
expected complete-data log-likelihood, parameter counts and EM fits against scikit-learn, K = 1, and the
relocation of an empty component."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gmm
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGMM

from mixzoo.inference.em import ClosedFormEMStep
from mixzoo.models.gmm import COVARIANCES, GaussianMixture

SKLEARN = ("full", "diag", "spherical", "tied")


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_component_densities_are_scipys(covariance: str) -> None:
    m = random_gmm(covariance)
    x = torch.randn(50, 3) * 2
    got = m.component_log_prob(x).detach().double().numpy()
    cov = m.covariances.detach().double().numpy()
    loc = m.loc.detach().double().numpy()
    want = np.stack([multivariate_normal(loc[k], cov[k]).logpdf(x.double().numpy()) for k in range(4)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if covariance.startswith("tied"):
        assert np.allclose(cov, cov[:1])  # one covariance for all components
    if covariance.endswith("spherical"):
        assert np.allclose(cov, np.eye(3) * cov[:, :1, :1])  # a multiple of the identity


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_the_m_step_maximizes_the_expected_complete_log_likelihood(covariance: str) -> None:
    """At the closed-form M-step the gradient of Q = sum_nk r_nk log(pi_k N(x_n; theta_k)) is zero."""
    torch.manual_seed(1)
    x = torch.randn(400, 3, dtype=torch.float64) @ torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]], dtype=torch.float64)
    r = torch.softmax(torch.randn(400, 4, dtype=torch.float64) * 2, -1)
    m = GaussianMixture(3, 4, covariance=covariance, min_scale=1e-9).double()
    with torch.no_grad():
        m.em_update(m.em_statistics(x, r))
    q = (r * m.log_joint(x)).sum()
    grads = torch.autograd.grad(q, list(m.parameters()), allow_unused=True)
    for (name, _), g in zip(m.named_parameters(), grads, strict=True):
        assert g is None or g.abs().max() < 1e-6 * len(x), (name, g)
    moved = GaussianMixture(3, 4, covariance=covariance, min_scale=1e-9).double()
    with torch.no_grad():
        moved.load_state_dict(m.state_dict())
        moved.log_scale.add_(0.05)
    assert float((r * moved.log_joint(x)).sum()) < float(q)  # and it is a maximum, not another stationary point


@pytest.mark.parametrize("covariance", SKLEARN)
def test_parameter_counts_are_scikit_learns(covariance: str) -> None:
    x = np.random.default_rng(0).normal(size=(60, 5))
    sk = SkGMM(3, covariance_type=covariance, max_iter=5, random_state=0).fit(x)
    assert GaussianMixture(5, 3, covariance=covariance).n_parameters() == sk._n_parameters()


def test_the_extra_structures_count_as_mclust_does() -> None:
    assert GaussianMixture(5, 3, covariance="tied-diag").n_parameters() == 2 + 15 + 5  # EEI
    assert GaussianMixture(5, 3, covariance="tied-spherical").n_parameters() == 2 + 15 + 1  # EII


@pytest.mark.parametrize("covariance", SKLEARN)
def test_em_reaches_scikit_learns_fit_from_the_same_start(covariance: str) -> None:
    rng = np.random.default_rng(2)
    means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    x = (means[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2)) @ np.array([[1.0, 0.4], [0.0, 0.6]])).astype(np.float32)
    start = means + 0.5
    sk = SkGMM(3, covariance_type=covariance, means_init=start, reg_covar=1e-6, tol=1e-10, max_iter=500).fit(x)
    m = GaussianMixture(2, 3, covariance=covariance, min_scale=1e-3)
    with torch.no_grad():
        m.loc.copy_(torch.tensor(start, dtype=torch.float32))
        m.logits.zero_()
    xt = torch.tensor(x)
    # scikit-learn starts from the responsibilities of the nearest mean; so does this first M-step
    near = torch.cdist(xt, m.loc.detach()).argmin(1)
    with torch.no_grad():
        m.em_update(m.em_statistics(xt, torch.nn.functional.one_hot(near, 3).float()))
    step = ClosedFormEMStep(m)
    for _ in range(500):
        step(xt, None, torch.arange(600))
        step.end_epoch()
    ll = torch.logsumexp(m.log_joint(xt), -1).mean().item()
    assert ll == pytest.approx(sk.score(x), abs=1e-3)
    np.testing.assert_allclose(np.sort(m.loc.detach().numpy(), 0), np.sort(sk.means_, 0), atol=1e-2)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_one_component_is_the_maximum_likelihood_gaussian(covariance: str) -> None:
    x = torch.randn(500, 3) * torch.tensor([1.0, 2.0, 0.5]) + 3
    m = GaussianMixture(3, 1, covariance=covariance, min_scale=1e-6).initialize(x)
    step = ClosedFormEMStep(m)
    step(x, None, torch.arange(500))
    step.end_epoch()
    x64 = x.double()
    cov = torch.cov(x64.T, correction=0)
    if covariance in ("diag", "tied-diag"):
        cov = torch.diag(cov.diagonal())
    elif covariance.endswith("spherical"):
        cov = torch.eye(3, dtype=torch.float64) * cov.diagonal().mean()
    np.testing.assert_allclose(m.loc.detach()[0].double(), x64.mean(0), atol=1e-4)
    np.testing.assert_allclose(m.covariances.detach()[0].double(), cov, atol=1e-3)
    assert float(m.weights[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("covariance", ["full", "diag", "tied"])
def test_an_empty_component_moves_to_the_worst_explained_points(covariance: str) -> None:
    torch.manual_seed(3)
    x = torch.cat([torch.randn(300, 2), torch.randn(300, 2) + torch.tensor([8.0, 0.0]), torch.tensor([[4.0, 9.0]])])
    m = GaussianMixture(2, 3, covariance=covariance)
    with torch.no_grad():
        m.loc.copy_(torch.tensor([[0.0, 0.0], [8.0, 0.0], [1000.0, 1000.0]]))  # the third holds no point
        m.log_scale.zero_()
    step = ClosedFormEMStep(m)
    step(x, None, torch.arange(len(x)))
    step.end_epoch()
    assert step.reseeded == 1
    np.testing.assert_allclose(m.loc.detach()[2], [4.0, 9.0])  # the outlier, the worst explained point
    for _ in range(3):
        step(x, None, torch.arange(len(x)))
        step.end_epoch()
    assert float(m.weights[2]) > 0 and step.reseeded == 1
