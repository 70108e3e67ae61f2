import numpy as np
import pytest
import torch
from conftest import random_gmm
from pyro.infer import Trace_ELBO
from scipy.stats import multivariate_normal

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture, MixzooInputError
from mixzoo.analysis.metrics import cluster_accuracy, hungarian_match
from mixzoo.models.gmm import COVARIANCES


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_recovers_means_and_weights(blobs, covariance):
    x, labels, means, weights = blobs
    model, guide = GaussianMixture(2, 3, covariance=covariance), EmptyGuide()
    model.initialize(x, seed=0)
    mixzoo.fit(model, guide, x, epochs=150, lr=0.05, progress=False, seed=0)
    pred = mixzoo.cluster_proba(model, guide, x).argmax(1).numpy()
    assert cluster_accuracy(labels, pred) > 0.99
    match = hungarian_match(labels, pred)
    for k, cls in match.items():
        np.testing.assert_allclose(model.loc[k].detach().numpy(), means[cls], atol=0.1)
        assert model.weights[k].item() == pytest.approx(weights[cls], abs=0.03)
        np.testing.assert_allclose(model.scale_tril[k].diagonal().detach().numpy(), [0.5, 1.0], atol=0.08)


def _scipy_log_joint(model, x):
    """(N, K) log pi_k + log N(x_n; mu_k, Sigma_k) by scipy, from the mixture's weights, means and covariances."""
    with torch.no_grad():
        w, loc, cov = (t.double().numpy() for t in (model.weights, model.loc, model.covariances))
    x = x.double().numpy()
    return torch.as_tensor(
        np.stack([np.log(w[k]) + multivariate_normal(loc[k], cov[k]).logpdf(x) for k in range(len(w))], 1)
    )


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_enumeration_and_closed_form_give_scipys_densities(covariance):
    model = random_gmm(covariance)
    x = torch.randn(60, 3) * 2
    want = _scipy_log_joint(model, x)
    with torch.no_grad():
        cov = model.covariances
        if covariance.startswith("tied"):
            assert torch.allclose(cov, cov[:1].expand_as(cov))  # one covariance shared by all components
        if covariance in ("diag", "spherical", "tied-diag", "tied-spherical"):
            assert torch.equal(cov, torch.diag_embed(cov.diagonal(dim1=-2, dim2=-1)))
        if covariance.endswith("spherical"):
            assert torch.allclose(cov, torch.eye(3) * cov[:, :1, :1])
        got = {
            "log_joint": model.log_joint(x),
            "component_log_prob": model.weights.log() + model.component_log_prob(x),
            "enumerated": mixzoo.cluster_log_joint(model, EmptyGuide(), x),
        }
    for name, value in got.items():
        torch.testing.assert_close(value.double(), want, rtol=1e-5, atol=1e-4, msg=name)
    torch.testing.assert_close(
        mixzoo.log_likelihood(model, EmptyGuide(), x).double(), torch.logsumexp(want, -1), rtol=1e-5, atol=1e-4
    )
    torch.testing.assert_close(
        mixzoo.cluster_proba(model, EmptyGuide(), x).double(), torch.softmax(want, -1), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("covariance", ["diag", "full", "tied-spherical"])
def test_loss_is_exact_negative_log_likelihood(covariance):
    model = random_gmm(covariance, d=2, k=3, seed=1)
    x = torch.randn(64, 2) * 2
    from pyro.infer import TraceEnum_ELBO

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, EmptyGuide(), x)
    assert loss == pytest.approx(-torch.logsumexp(_scipy_log_joint(model, x), -1).sum().item(), rel=1e-5)


def test_trace_elbo_is_refused_for_enumerated_y(blobs):
    x = blobs[0]
    with pytest.raises(MixzooInputError, match="loss 'trace' draws the cluster from the guide, and guide 'EmptyGuide' samples none"):
        mixzoo.fit(GaussianMixture(2, 3), EmptyGuide(), x, loss=Trace_ELBO(), epochs=1, progress=False)

    def undeclared(x, y=None, subsample=None):  # declares nothing: its trace is the proof
        return None

    with pytest.raises(MixzooInputError, match="cannot sum out the model's enumerated site 'y'"):
        mixzoo.fit(GaussianMixture(2, 3), undeclared, x, loss=Trace_ELBO(), epochs=1, progress=False)


def test_sample_and_bic_parameter_count():
    model = GaussianMixture(3, 4, covariance="full")
    assert model.n_parameters() == 3 + 12 + 4 * 6
    assert GaussianMixture(3, 4).n_parameters() == 3 + 12 + 12
    x, k = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20000, 3) and k.shape == (20000,) and k.max() < 4
    with torch.no_grad():
        freq = torch.bincount(k, minlength=4).float() / 20000
        torch.testing.assert_close(freq, model.weights, atol=0.02, rtol=0)
        for j in range(4):  # each component's draws have its mean and covariance
            torch.testing.assert_close(x[k == j].mean(0), model.loc[j], atol=0.1, rtol=0)
            cov = model.scale_tril[j] @ model.scale_tril[j].T
            torch.testing.assert_close(torch.cov(x[k == j].T), cov, atol=0.15 * float(cov.diagonal().max()), rtol=0)


def test_observed_labels_fix_the_assignment(blobs):
    x, labels, _, _ = blobs
    model, guide = GaussianMixture(2, 3), EmptyGuide()
    y = torch.as_tensor(labels)
    mixzoo.fit(model, guide, x, y=y, epochs=200, lr=0.1, progress=False)
    pred = mixzoo.cluster_proba(model, guide, x).argmax(1).numpy()
    assert (pred == labels).mean() > 0.99  # identity matching: component k is class k
