import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, RenyiELBO

from mixzoo.inference import VIMCO
from mixzoo.inference.vimco import vimco_objective


class Toy(torch.nn.Module):
    """p(h) p(x | h) with h in {0, 1, 2}, and q(h) = Cat(softmax(phi)): a small discrete model."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([0.2, -0.3, 0.1]))
        self.mu = torch.nn.Parameter(torch.tensor([-1.0, 0.5, 2.0]))
        self.phi = torch.nn.Parameter(torch.tensor([0.3, 0.0, -0.4]))

    def model(self, x, y=None, subsample=None):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("h", dist.Categorical(logits=self.a))
            pyro.sample("x", dist.Normal(self.mu[h], 1.0), obs=x)

    def guide(self, x, y=None, subsample=None):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h", dist.Categorical(logits=self.phi.expand(x.shape[0], 3)))

    def log_w(self, h, x):
        return (
            torch.log_softmax(self.a, 0)[h]
            + dist.Normal(self.mu[h], 1.0).log_prob(x)
            - torch.log_softmax(self.phi, 0)[h]
        )

    def exact_expected_bound(self, x, m):
        """E_q[log 1/M sum_i exp w(h_i)] by enumerating all K^M particle configurations."""
        log_q = torch.log_softmax(self.phi, 0)
        total = 0.0
        for config in itertools.product(range(3), repeat=m):
            h = torch.tensor(config)
            prob = log_q[h].sum().exp()
            total = total + prob * (torch.logsumexp(self.log_w(h, x), 0) - math.log(m))
        return total


@pytest.mark.parametrize("m", [2, 3])
def test_vimco_gradient_matches_the_exact_gradient_of_the_expected_bound(m):
    pyro.set_rng_seed(0)
    toy = Toy()
    x0 = torch.tensor(0.3)
    exact = torch.autograd.grad(toy.exact_expected_bound(x0, m), list(toy.parameters()))
    n = 40000
    x = x0.expand(n).clone()
    loss = VIMCO(num_particles=m)
    with pyro.get_param_store().scope():
        loss.loss_and_grads(toy.model, toy.guide, x)
    est = [-p.grad / n for p in toy.parameters()]
    for e, g in zip(est, exact, strict=True):
        torch.testing.assert_close(e, g, atol=0.01, rtol=0.05)
    # the score-function part matters: without it the guide's gradient is wrong
    assert exact[2].abs().max() > 0.02


def test_renyi_alpha_zero_gives_the_guide_no_signal_but_vimco_does():
    pyro.set_rng_seed(1)
    toy = Toy()
    x = torch.full((5000,), 0.3)
    grads = {}
    for name, loss in (("renyi", RenyiELBO(alpha=0.0, num_particles=3, max_plate_nesting=1)), ("vimco", VIMCO(3))):
        toy.zero_grad()
        with pyro.get_param_store().scope():
            loss.loss_and_grads(toy.model, toy.guide, x)
        grads[name] = toy.phi.grad.clone()
    exact = torch.autograd.grad(toy.exact_expected_bound(torch.tensor(0.3), 3), [toy.phi])[0]
    err = lambda g: (-g / 5000 - exact).abs().max()  # noqa: E731
    assert err(grads["vimco"]) < 0.02 < err(grads["renyi"])


def test_loss_is_the_iwae_bound():
    pyro.set_rng_seed(2)
    toy = Toy()
    x0 = torch.tensor(0.3)
    n = 40000
    with pyro.get_param_store().scope():
        value = VIMCO(num_particles=3).loss(toy.model, toy.guide, x0.expand(n).clone())
    with torch.no_grad():
        expected = toy.exact_expected_bound(x0, 3).item()
    assert -value / n == pytest.approx(expected, abs=0.01)


def test_objective_is_finite_for_extreme_log_weights():
    w = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0], [0.0, 0.0]], requires_grad=True)
    log_q = torch.tensor([[-1.0, -2.0], [-0.5, -0.1], [-3.0, -1.0]], requires_grad=True)
    bound, surrogate = vimco_objective(w, log_q)
    assert torch.isfinite(bound).all() and torch.isfinite(surrogate).all()
    assert bound[0].item() == pytest.approx(1000 - math.log(3), rel=1e-6)
    surrogate.sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(log_q.grad).all()
    # a particle whose weight dominates gets the whole reparameterized gradient
    assert w.grad[0, 0].item() == pytest.approx(1.0)


def test_leave_one_out_baseline_uses_the_geometric_mean():
    w = torch.tensor([[0.0], [1.0], [3.0]])
    log_q = torch.zeros(3, 1, requires_grad=True)
    bound, surrogate = vimco_objective(w, log_q)
    surrogate.sum().backward()
    # signal for particle 0: L - log((e^1 + e^3 + e^{(1+3)/2}) / 3)
    expected = bound.item() - math.log((math.e + math.e**3 + math.e**2) / 3)
    assert log_q.grad[0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_vimco_trains_through_svi():
    pyro.set_rng_seed(3)
    toy = Toy()
    x = torch.cat([torch.randn(300) - 1.0, torch.randn(300) + 2.0])
    svi = SVI(toy.model, toy.guide, pyro.optim.Adam({"lr": 0.05}), VIMCO(4))
    with pyro.get_param_store().scope():
        first = sum(svi.step(x) for _ in range(5))
        for _ in range(200):
            svi.step(x)
        last = sum(svi.step(x) for _ in range(5))
    assert last < first
    # the two data modes (-1 and 2) are found by two of the three components, and q(h) puts its mass there
    mu = toy.mu.detach().sort().values
    assert min(abs(mu - -1.0)) < 0.3 and min(abs(mu - 2.0)) < 0.3


def test_one_particle_is_refused():
    with pytest.raises(ValueError, match="num_particles >= 2"):
        VIMCO(num_particles=1)


def test_importance_log_likelihood_of_the_toy_is_exact_in_the_limit():
    from mixzoo.inference.vimco import importance_log_likelihood

    toy = Toy()
    x = torch.tensor([0.3, -1.0, 2.5])
    with torch.no_grad():
        exact = torch.logsumexp(torch.log_softmax(toy.a, 0)[:, None] + dist.Normal(toy.mu[:, None], 1.0).log_prob(x), 0)
    pyro.set_rng_seed(4)
    est = importance_log_likelihood(toy.model, toy.guide, x, num_samples=4000)
    torch.testing.assert_close(est, exact, atol=0.02, rtol=0)


class FixedNoiseNormal(dist.Normal):
    """A normal whose reparameterized draw is ``loc + scale * noise`` for the class's fixed ``noise``."""

    noise = None

    def rsample(self, sample_shape=()):
        return self.loc + self.scale * self.noise


class MixedToy(torch.nn.Module):
    """p(y) p(z | y) p(x | z) with y in {0, 1, 2} and scalar z; q(y) q(z | y, x) with z reparameterized.

    ``noise`` (M, N) fixes the standard normal draws of z, so that the VIMCO gradient and the exact
    gradient (y enumerated) see the same z noise: common random numbers.
    """

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([0.2, -0.3, 0.1]))
        self.mu = torch.nn.Parameter(torch.tensor([-1.5, 0.5, 2.0]))
        self.phi = torch.nn.Parameter(torch.tensor([0.3, 0.0, -0.4]))
        self.m = torch.nn.Parameter(torch.tensor([-1.0, 0.2, 1.5]))
        self.c = torch.nn.Parameter(torch.tensor(0.4))
        self.log_s = torch.nn.Parameter(torch.tensor([-0.2, 0.1, -0.5]))
        self.noise = None
        self.score_z = False

    def model(self, x, y=None, subsample=None):
        pyro.module("mixed", self)
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("y", dist.Categorical(logits=self.a))
            z = pyro.sample("z", dist.Normal(self.mu[h], 1.0))
            pyro.sample("x", dist.Normal(z, 0.7), obs=x)

    def q_z(self, h, x):
        return self.m[h] + self.c * x, self.log_s[h].exp()

    def guide(self, x, y=None, subsample=None):
        from mixzoo.inference.vimco import without_rsample

        pyro.module("mixed", self)
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("y", dist.Categorical(logits=self.phi.expand(x.shape[0], 3)))
            loc, scale = self.q_z(h, x)
            if self.score_z:
                pyro.sample("z", without_rsample(dist.Normal(loc, scale)))
            else:
                FixedNoiseNormal.noise = self.noise
                pyro.sample("z", FixedNoiseNormal(loc, scale))

    def log_w(self, h, z, x):
        loc, scale = self.q_z(h, x)
        return (
            torch.log_softmax(self.a, 0)[h] + dist.Normal(self.mu[h], 1.0).log_prob(z) + dist.Normal(z, 0.7).log_prob(x)
            - torch.log_softmax(self.phi, 0)[h] - dist.Normal(loc, scale).log_prob(z)
        )  # fmt: skip

    def exact_bound(self, x, noise):
        """Mean over n of E_y[log 1/M sum_i w_i] with z_i = loc(y_i) + scale(y_i) noise[i, n], y enumerated."""
        m = noise.shape[0]
        configs = torch.tensor(list(itertools.product(range(3), repeat=m)))  # (3^M, M)
        log_q = torch.log_softmax(self.phi, 0)[configs].sum(1)  # (3^M,)
        h = configs[:, :, None]  # (3^M, M, 1)
        loc, scale = self.q_z(h, x)
        z = loc + scale * noise  # (3^M, M, N)
        bound = torch.logsumexp(self.log_w(h, z, x), 1) - math.log(m)  # (3^M, N)
        return (log_q.exp()[:, None] * bound).sum(0).mean()


def _vimco_grads(toy, x, m, objective=None):
    toy.zero_grad()
    loss = VIMCO(num_particles=m)
    with pyro.get_param_store().scope():
        if objective is None:
            loss.loss_and_grads(toy.model, toy.guide, x)
        else:
            import mixzoo.inference.vimco as v

            original, v.vimco_objective = v.vimco_objective, objective
            try:
                loss.loss_and_grads(toy.model, toy.guide, x)
            finally:
                v.vimco_objective = original
    return [-p.grad / x.shape[0] for p in toy.parameters()]


def test_vimco_gradient_with_a_reparameterized_z_matches_the_exact_gradient_of_the_iwae_bound():
    """y sampled (score term with leave-one-out baselines), z reparameterized; the exact side enumerates y
    for every particle and uses the same z noise, so the only difference left is the y draws."""
    pyro.set_rng_seed(0)
    toy, m, n = MixedToy(), 3, 20000
    x0 = torch.tensor(0.8)
    toy.noise = torch.randn(m, n, generator=torch.Generator().manual_seed(1))
    exact = torch.autograd.grad(toy.exact_bound(x0, toy.noise), list(toy.parameters()))
    est = _vimco_grads(toy, x0.expand(n).clone(), m)
    for e, g in zip(est, exact, strict=True):
        torch.testing.assert_close(e, g, atol=0.015, rtol=0.05)
    # without the score term of y the guide's logits get a wrong gradient: the test can fail
    no_score = _vimco_grads(toy, x0.expand(n).clone(), m, objective=lambda w, lq: vimco_objective(w, torch.zeros_like(lq)))
    assert (no_score[2] - exact[2]).abs().max() > 0.05


def test_vimco_gradient_with_a_score_function_z_is_unbiased_for_the_same_bound():
    """z drawn without a pathwise gradient (eq. 6 of Li et al. 2020): the signal multiplies the score of
    q(z, y | x); averaged over draws it matches the exact gradient (y enumerated, z noise averaged)."""
    pyro.set_rng_seed(2)
    toy, m, n = MixedToy(), 3, 40000
    x0 = torch.tensor(0.8)
    exact = torch.autograd.grad(toy.exact_bound(x0, torch.randn(m, 100000, generator=torch.Generator().manual_seed(3))), list(toy.parameters()))
    toy.score_z = True
    est = _vimco_grads(toy, x0.expand(n).clone(), m)
    for e, g in zip(est, exact, strict=True):
        torch.testing.assert_close(e, g, atol=0.02, rtol=0.1)
    # without the score term the z-encoder's parameters (m, c, log_s; y's score reaches phi only) are wrong
    no_score = _vimco_grads(toy, x0.expand(n).clone(), m, objective=lambda w, lq: vimco_objective(w, torch.zeros_like(lq)))
    assert max((no_score[i] - exact[i]).abs().max() for i in (3, 4, 5)) > 0.1
