"""Where the mathematics is exact, the losses are: EM's gradient at the E-step is that of log p(x); every loss given
the exact posterior as its guide reports -log p(x); reweighted wake-sleep equals Pyro's on one point and sums over
points."""

from __future__ import annotations

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import ReweightedWakeSleep as PyroRWS

import mixzoo
from mixzoo.guides import ClusterEncoder, EmptyGuide, PosteriorGuide
from mixzoo.inference import EM, ReweightedWakeSleep, make_loss
from mixzoo.param_store import isolated_param_store


class TracedMixture(pyro.nn.PyroModule):
    """A user's model without a stated table: unit-variance Gaussians with learned means and weights."""

    def __init__(self, dim: int, n_clusters: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.loc = torch.nn.Parameter(torch.randn(n_clusters, dim, generator=g) * 2)
        self.mix = torch.nn.Parameter(torch.randn(n_clusters, generator=g))

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=self.mix), obs=None if y is None else y[idx],
                            infer={"enumerate": "parallel"})  # fmt: skip
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])

    def marginal(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) log p(x_n), written out."""
        comp = dist.Normal(self.loc, 1.0).to_event(1).log_prob(x[:, None, :])
        return torch.logsumexp(torch.log_softmax(self.mix, -1) + comp, -1)


def _data(n: int = 40, dim: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.randn(n // 2, dim, generator=g) - 2, torch.randn(n - n // 2, dim, generator=g) + 2])


def _models(x: torch.Tensor) -> list[tuple[str, torch.nn.Module, object]]:
    """(name, model, log p(x) of it): a family stating its table, and a user's model scored through its trace."""
    gmm = mixzoo.GaussianMixture(x.shape[1], 3, covariance="full").initialize(x, seed=0)
    with torch.no_grad():
        gmm.loc += 0.3  # off the maximum: gradients are not zero

    def gmm_marginal(v: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(gmm.log_joint(v), -1)

    traced = TracedMixture(x.shape[1], 3)
    return [("gmm", gmm, gmm_marginal), ("traced", traced, traced.marginal)]


def _grads(value: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, [p for p in model.parameters() if p.requires_grad], allow_unused=False))


@pytest.mark.parametrize("which", [0, 1], ids=["stated table", "traced"])
def test_em_gradient_at_the_posterior_guide_is_the_gradient_of_log_p(which):
    """Fisher's identity: with q the exact posterior held fixed, d/dtheta of the EM objective is d/dtheta log p(x)."""
    x = _data()
    name, model, marginal = _models(x)[which]
    with isolated_param_store():
        em = EM().differentiable_loss(model, PosteriorGuide(model), x)
        got = _grads(em, model)
    want = _grads(-marginal(x).sum(), model)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    assert max(float(w.abs().max()) for w in want) > 1e-2, name  # a real gradient
    torch.testing.assert_close(float(em), float(-marginal(x).sum()), rtol=1e-5, atol=1e-3)  # value: -log p(x)


@pytest.mark.parametrize("loss_name", ["trace-enum", "trace", "trace-graph", "vimco", "rws", "em"])
@pytest.mark.parametrize("which", [0, 1], ids=["stated table", "traced"])
def test_every_loss_given_the_exact_posterior_reports_minus_log_p(loss_name, which):
    """log p(x, y) - log p(y | x) = log p(x) for every y: each sample of a sampling loss is exact, so the loss is
    -log p(x) whatever it draws."""
    x = _data()
    _, model, marginal = _models(x)[which]
    pyro.set_rng_seed(0)
    with isolated_param_store():
        value = make_loss(loss_name).loss(model, PosteriorGuide(model), x)
    torch.testing.assert_close(value, float(-marginal(x).sum()), rtol=1e-5, atol=1e-3)


class _ExactEncoder(ClusterEncoder):
    """An encoder whose q(y|x) on the data ``x`` (whole batches) is the model's exact posterior."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, k: int) -> None:
        super().__init__(x.shape[1], k, hidden=(4,))
        self.register_buffer("table", PosteriorGuide(model).log_posterior(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == self.table.shape[0]
        return self.table


@pytest.mark.parametrize("which", [0, 1], ids=["stated table", "traced"])
def test_the_encoders_enumerated_elbo_is_log_p_when_q_is_the_posterior(which):
    x = _data()
    _, model, marginal = _models(x)[which]
    guide = _ExactEncoder(model, x, 3)
    with isolated_param_store():
        table = make_loss("trace-enum").loss(model, guide, x)  # the stated-table path where the model states one
        traced = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    want = float(-marginal(x).sum())
    torch.testing.assert_close(table, want, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(traced, want, rtol=1e-5, atol=1e-3)
    guide.temperature = 2.0  # another q: the ELBO is then strictly below log p(x)
    with isolated_param_store():
        assert make_loss("trace-enum").loss(model, guide, x) > want + 1e-3


# ---------------------------------------------------------------------------------------------- reweighted wake-sleep


def _rws_pair(x: torch.Tensor):
    torch.manual_seed(0)
    model = TracedMixture(x.shape[1], 3)
    guide = ClusterEncoder(x.shape[1], 3, hidden=(8,)).initialize(x)
    return model, guide


def _values_and_grads(loss_fn, model, guide) -> tuple[float, list[torch.Tensor]]:
    params = [*model.parameters(), *guide.parameters()]
    for p in params:
        p.grad = None
    with isolated_param_store():
        value = loss_fn()
    return value, [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_rws_on_one_point_is_pyros():
    x = _data()[:1]
    model, guide = _rws_pair(x)
    pyro.set_rng_seed(7)
    ours_value, ours = _values_and_grads(lambda: ReweightedWakeSleep(6).loss_and_grads(model, guide, x), model, guide)
    pyro.set_rng_seed(7)
    pyros = PyroRWS(num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    theirs_value, theirs = _values_and_grads(lambda: pyros.loss_and_grads(model, guide, x)[0], model, guide)
    assert ours_value == pytest.approx(theirs_value, rel=1e-6)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(float(g.abs().max()) > 0 for g in ours[2:])  # the guide learns (wake-phi)


class _Draws(pyro.poutine.messenger.Messenger):
    """Outermost: gives the latent site ``y`` the given values, once every plate has shaped its distribution."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg) -> None:
        if msg["name"] == "y" and not msg["is_observed"]:
            msg["value"] = self.values


def test_rws_on_a_batch_sums_pyros_over_its_points():
    """Per-point weights: our loss on N points is the sum of Pyro's on each point with the same draws (Pyro's on the
    batch at once would weigh whole batches of particles against each other)."""
    x = _data(n=5)
    model, guide = _rws_pair(x)
    m = 4
    draws = torch.randint(3, (m, len(x)), generator=torch.Generator().manual_seed(4))
    with _Draws(draws):
        ours_value, ours = _values_and_grads(lambda: ReweightedWakeSleep(m).loss_and_grads(model, guide, x), model, guide)
    total, grads = 0.0, None
    for n in range(len(x)):
        pyro_loss = PyroRWS(num_particles=m, vectorize_particles=True, max_plate_nesting=1)
        with _Draws(draws[:, n : n + 1]):
            value, g = _values_and_grads(lambda n=n, pyro_loss=pyro_loss: pyro_loss.loss_and_grads(model, guide, x[n : n + 1])[0], model, guide)
        total += value
        grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
    assert ours_value == pytest.approx(total, rel=1e-5)
    for a, b in zip(ours, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with _Draws(draws):  # Pyro's on the whole batch: another quantity
        batch = PyroRWS(num_particles=m, vectorize_particles=True, max_plate_nesting=1)
        whole, _ = _values_and_grads(lambda: batch.loss_and_grads(model, guide, x)[0], model, guide)
    assert whole != pytest.approx(total, rel=1e-3)


def test_rws_on_a_minibatch_is_scaled_to_the_data_set():
    x = _data(n=40)
    model, guide = _rws_pair(x)
    idx = torch.arange(10, 20)
    pyro.set_rng_seed(2)
    with isolated_param_store():
        scaled = ReweightedWakeSleep(4).loss(model, guide, x, None, idx)
    pyro.set_rng_seed(2)
    with isolated_param_store():
        alone = ReweightedWakeSleep(4).loss(model, guide, x[idx])
    assert scaled == pytest.approx(alone * len(x) / len(idx), rel=1e-5)


def test_rws_refuses_a_single_particle():
    with pytest.raises(mixzoo.MixzooInputError, match="num_particles >= 2"):
        ReweightedWakeSleep(1)


def test_rws_trains_a_gaussian_mixture_with_the_encoder():
    x = _data(n=200)
    model = mixzoo.GaussianMixture(2, 2, covariance="diag").initialize(x, seed=0)
    result = mixzoo.fit(model, "encoder", x, loss="rws", epochs=30, lr=0.05, batch_size=50, progress=False)
    proba = mixzoo.cluster_proba(model, result.guide, x)
    labels = torch.cat([torch.zeros(100), torch.ones(100)]).long().numpy()
    assert mixzoo.clustering_report(labels, proba.numpy())["acc"] > 0.95
    assert copy.copy(result.losses[-1]) < result.losses[0]


def test_the_empty_guide_under_trace_enum_is_log_p():
    x = _data()
    for _, model, marginal in _models(x):
        with isolated_param_store():
            value = make_loss("trace-enum").loss(model, EmptyGuide(), x)
        torch.testing.assert_close(value, float(-marginal(x).sum()), rtol=1e-5, atol=1e-3)
