import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from cli_errors import one_error_line
from conftest import for_shape

import mixzoo
from mixzoo import EmptyGuide, MixzooInputError
from mixzoo.guides import ClusterEncoder
from mixzoo.inference import NCE
from mixzoo.inference.noise import DistributionNoise, GaussianNoise, SampleNoise
from mixzoo.models.energy_mixture import EnergyMixture


def _lbfgs(model, loss, x, noise_samples, iters=300):
    opt = torch.optim.LBFGS(model.parameters(), max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        value = loss.differentiable_loss(model, EmptyGuide(), x, noise_samples=noise_samples) / len(x)
        value.backward()
        return value

    opt.step(closure)
    return model


def test_nce_recovers_a_gaussian_and_its_log_normaliser():
    torch.manual_seed(0)
    x = torch.randn(8000, 1) * 0.5 + 1.0
    loss = NCE(nu=1.0)
    loss.sources[0][0].fit(x)
    model = _lbfgs(EnergyMixture(1, 1, "quadratic"), loss, x, [loss.sources[0][0].sample(8000)])
    # N(1, 0.5^2): theta = (-1/(2 s^2), m/s^2) = (-2, 4), c = -m^2/(2 s^2) - log(s sqrt(2 pi))
    np.testing.assert_allclose(model.theta.detach().numpy()[0], [-2.0, 4.0], atol=0.15)
    assert model.c.item() == pytest.approx(-2.0 - math.log(0.5 * math.sqrt(2 * math.pi)), abs=0.15)


def test_loss_is_the_logistic_objective_of_eq_4():
    torch.manual_seed(1)
    x, noise = torch.randn(50, 1), torch.randn(80, 1) * 2
    model = EnergyMixture(1, 2, "quadratic")
    with torch.no_grad():
        model.theta.copy_(torch.tensor([[-0.5, 1.0], [-0.3, -1.0]]))
        model.c.copy_(torch.tensor([-1.0, -2.0]))
    nd = dist.Normal(torch.zeros(1), 2 * torch.ones(1)).to_event(1)
    loss = NCE([(nd, 80)])
    got = loss.loss(model, EmptyGuide(), x, noise_samples=[noise])
    log_p = lambda u: torch.logsumexp(model.log_potentials(u), -1)  # noqa: E731
    g = lambda u: math.log(50) + log_p(u) - math.log(80) - nd.log_prob(u)  # noqa: E731
    j = torch.nn.functional.logsigmoid(g(x)).sum() + torch.nn.functional.logsigmoid(-g(noise)).sum()
    assert got == pytest.approx(-j.item(), rel=1e-5)


def test_multiple_noise_equals_single_noise_with_the_mixture_theorem_2():
    torch.manual_seed(2)
    x = torch.cat([torch.randn(100, 1), torch.randn(100, 1) + 4])
    n1 = dist.Normal(torch.zeros(1), torch.ones(1)).to_event(1)
    n2 = dist.Normal(4 * torch.ones(1), torch.ones(1)).to_event(1)
    y1, y2 = n1.sample((100,)), n2.sample((100,))

    class Mixture(torch.distributions.Distribution):
        event_shape = torch.Size([1])
        arg_constraints: dict = {}

        def log_prob(self, u):
            return torch.logaddexp(n1.log_prob(u), n2.log_prob(u)) - math.log(2)

    multi, single = NCE([(n1, 100), (n2, 100)]), NCE([(DistributionNoise(Mixture(validate_args=False)), 200)])
    grads, values = [], []
    for loss, noise in ((multi, [y1, y2]), (single, [torch.cat([y1, y2])])):
        for shift in (0.0, 0.7):
            model = EnergyMixture(1, 2, "quadratic")
            with torch.no_grad():
                model.theta.copy_(torch.tensor([[-0.5, 0.2], [-0.4, 1.5]]) + shift)
            value = loss.differentiable_loss(model, EmptyGuide(), x, noise_samples=noise)
            value.backward()
            values.append(value.item())
            grads.append(torch.cat([model.theta.grad.flatten(), model.c.grad]))
    torch.testing.assert_close(grads[0], grads[2])
    torch.testing.assert_close(grads[1], grads[3])
    # the losses differ by a constant that does not depend on the parameters
    assert values[0] - values[2] == pytest.approx(values[1] - values[3], abs=1e-3)


def _two_component_mse(n, reps=5, iters=60):
    """Median squared error of (theta, c) for 0.5 N(0,1) + 0.5 N(4,1) with noise N(2, 5)."""
    true = np.array([[-0.5, 0.0, -0.5 * math.log(2 * math.pi) + math.log(0.5)], [-0.5, 4.0, -8.0 - 0.5 * math.log(2 * math.pi) + math.log(0.5)]])
    errs = []
    for rep in range(reps):
        g = torch.Generator().manual_seed(100 * rep + n)
        z = torch.rand(n, generator=g) < 0.5
        x = (torch.randn(n, 1, generator=g) + 4 * z[:, None]).float()
        noise_dist = dist.Normal(torch.tensor([2.0]), torch.tensor([math.sqrt(5.0)])).to_event(1)
        loss = NCE(noise_dist)
        model = EnergyMixture(1, 2, "quadratic")
        with torch.no_grad():
            model.theta.copy_(torch.tensor([[-0.4, 0.5], [-0.4, 3.0]]))
            model.c.copy_(torch.tensor([-2.0, -12.0]))
        noise = noise_dist.sample((n,))
        _lbfgs(model, loss, x, [noise], iters=iters)
        est = torch.cat([model.theta, model.c[:, None]], 1).detach().numpy()
        est = est[np.argsort(-est[:, 1] / (2 * est[:, 0]))]  # order components by their mean
        errs.append(((est - true) ** 2).mean())
    return float(np.median(errs))


def test_two_component_error_falls_with_n():
    small, large = _two_component_mse(2**9), _two_component_mse(2**11)
    assert large < small / 2  # MSE ~ 1/N: a 4x larger sample should cut it by about 4


def test_nce_trains_through_fit_and_clusters():
    torch.manual_seed(3)
    x = torch.cat([torch.randn(400, 2) - 3, torch.randn(400, 2) + 3])
    model = EnergyMixture(2, 2, "quadratic").initialize(x)
    result = mixzoo.fit(model, EmptyGuide(), x, loss=NCE(), epochs=25, lr=0.05, batch_size=400, progress=False)
    assert result.losses[-1] < result.losses[0]
    pred = mixzoo.cluster_proba(model, EmptyGuide(), x).argmax(1).numpy()
    truth = np.repeat([0, 1], 400)
    assert max((pred == truth).mean(), (pred != truth).mean()) > 0.99


def test_nce_refuses_a_guide_that_samples_y():
    x = torch.randn(50, 2)
    with pytest.raises(MixzooInputError, match="loss 'nce' scores the model with y summed out, so it needs the empty guide"):
        mixzoo.fit(EnergyMixture(2, 2), ClusterEncoder(2, 2), x, loss=NCE(), epochs=1, progress=False)
    encoder = ClusterEncoder(2, 2)

    def undeclared(x, y=None, subsample=None):  # the same guide, declaring nothing: the trace refuses it
        return encoder(x, y, subsample)

    with pytest.raises(MixzooInputError, match="NCE needs the empty guide"):
        mixzoo.fit(EnergyMixture(2, 2), undeclared, x, loss=NCE(), epochs=1, progress=False)


def test_bad_noise_specs():
    with pytest.raises(MixzooInputError, match="noise must be"):
        NCE("gaussian")
    with pytest.raises(MixzooInputError, match="nu must be positive"):
        NCE(nu=0)
    with pytest.raises(MixzooInputError, match="non-empty \\(M, D\\)"):
        SampleNoise(torch.zeros(0, 2), lambda u: u.sum(-1))
    with pytest.raises(MixzooInputError, match="event shape"):
        DistributionNoise(torch.distributions.Normal(0.0, 1.0))


def test_gaussian_noise_matches_the_data():
    x = torch.randn(5000, 2) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]]) + torch.tensor([1.0, -1.0])
    noise = GaussianNoise()
    noise.fit(x)
    s = noise.sample(20000)
    torch.testing.assert_close(s.mean(0), x.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), torch.cov(x.T), atol=0.15, rtol=0)


def test_two_cluster_linear_energy_starts_from_the_kmeans_partition():
    torch.manual_seed(4)
    x = torch.cat([torch.randn(200, 3) - 2, torch.randn(200, 3) + 2])
    model = EnergyMixture(3, 2, "linear").initialize(x)
    pred = mixzoo.cluster_proba(model, EmptyGuide(), x).argmax(1).numpy()
    truth = np.repeat([0, 1], 200)
    assert max((pred == truth).mean(), (pred != truth).mean()) > 0.99


def _deep_feature_problem(seed=0):
    """Features f in R^4 with base measure h = N(0, I): noise classes N(mu_l, I) (known density
    relative to h, as eq. 28 gives it) and data clusters N(nu_k, I), i.e. exp(nu_k f + c_k) h(f)."""
    torch.manual_seed(seed)
    mu = 2.0 * torch.eye(4)[:3]
    nu = torch.tensor([[0, 0, 0, 3.0], [2.0, 2.0, 0, 1.0], [-2.0, 0, 2.0, 1.0]])
    noise = (mu[:, None] + torch.randn(3, 2000, 4)).reshape(-1, 4)
    labels = torch.arange(3).repeat_interleave(1000)
    x = nu[labels] + torch.randn(3000, 4)

    def log_noise(f):
        return torch.logsumexp(f @ mu.T - 0.5 * (mu**2).sum(-1) - math.log(3), -1)

    return x, labels, nu, SampleNoise(noise, log_noise)


def test_componentwise_nce_start_recovers_the_deep_feature_mixture():
    x, labels, nu, noise = _deep_feature_problem()
    model = EnergyMixture(4, 3, "linear").initialize(x, seed=0, nce=NCE(noise))
    start = model.theta.detach().clone()
    mixzoo.fit(model, EmptyGuide(), x, loss=NCE(noise), epochs=100, lr=0.01, batch_size=500, progress=False)
    order = torch.cdist(nu, model.theta.detach()).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    torch.testing.assert_close(model.theta.detach()[order], nu, atol=0.35, rtol=0)
    true_c = torch.full((3,), math.log(1 / 3)) - 0.5 * (nu**2).sum(-1)
    torch.testing.assert_close(model.c.detach()[order], true_c, atol=0.5, rtol=0)
    # the start is already each cluster's own NCE fit: close to the truth before training
    torch.testing.assert_close(start[order], nu, atol=0.6, rtol=0)
    pred = mixzoo.cluster_proba(model, EmptyGuide(), x).argmax(1)
    assert (order[labels] == pred).float().mean() > 0.9


def test_energy_mixture_under_nce_starts_componentwise_from_the_cli_registry():
    from mixzoo.models import get_family

    x, _, _, noise = _deep_feature_problem()
    spec = get_family("energy-mixture")
    from mixzoo.models.family import DataShape, Inference

    model, guide = spec.build_pair(4, 3, options={"features": "linear"})
    plan = spec.plan(spec.make_options(features="linear"), DataShape(*x.shape), Inference("empty", "nce"))
    plan.start(model, guide, x, 0, NCE(noise))
    joint = EnergyMixture(4, 3, "linear").initialize(x, seed=0)
    componentwise = EnergyMixture(4, 3, "linear").initialize(x, seed=0, nce=NCE(noise))
    torch.testing.assert_close(model.theta.detach(), componentwise.theta.detach())
    assert not torch.allclose(model.theta.detach(), joint.theta.detach(), atol=0.1)


def test_the_recipe_takes_linear_energies_on_a_classifiers_features_and_gaussian_ones_elsewhere():
    from mixzoo.app.config import FitConfig
    from mixzoo.models.family import DataShape

    def features(shape, **options):
        return for_shape(FitConfig(model="energy-mixture", options=options), shape).family_options().features

    assert features(DataShape(1000, 2)) == "quadratic"
    assert features(DataShape(1000, 64, learned_features=True)) == "linear"
    assert features(DataShape(1000, 64, learned_features=True), features="quadratic") == "quadratic"


def test_componentwise_start_leaves_nothing_in_the_global_param_store():
    import pyro

    pyro.clear_param_store()
    x, _, _, noise = _deep_feature_problem()
    EnergyMixture(4, 3, "linear").initialize(x, seed=0, nce=NCE(noise))
    assert list(pyro.get_param_store().keys()) == []


def test_nce_posterior_is_calibrated_when_the_energy_family_is_right():
    """Simulated deep features in the exponential family of eq. (26), overlapping clusters: the
    expected number of misclassifications, sum_n (1 - max_k p(k|x_n)), matches the actual count
    (the paper's Table 2 check), as it does for the true posterior."""
    from mixzoo.analysis.metrics import clustering_report

    torch.manual_seed(0)
    mu = 2.0 * torch.eye(4)[:3]
    nu = 1.5 * torch.tensor([[0, 0, 0, 1.5], [1.0, 1.0, 0, 0.5], [-1.0, 0, 1.0, 0.5]])
    noise = (mu[:, None] + torch.randn(3, 4000, 4)).reshape(-1, 4)
    labels = torch.arange(3).repeat_interleave(2000)
    x = nu[labels] + torch.randn(6000, 4)

    def log_noise(f):
        return torch.logsumexp(f @ mu.T - 0.5 * (mu**2).sum(-1) - math.log(3), -1)

    source = SampleNoise(noise, log_noise)
    model = EnergyMixture(4, 3, "linear").initialize(x, seed=0, nce=NCE(source))
    mixzoo.fit(model, EmptyGuide(), x, loss=NCE(source), epochs=100, lr=0.01, batch_size=500, progress=False)
    report = clustering_report(labels.numpy(), mixzoo.cluster_proba(model, EmptyGuide(), x).numpy())
    assert report["acc"] > 0.85
    assert report["expected_misclassified"] == pytest.approx(report["misclassified"], rel=0.1)


def test_transfer_split_features_and_noise_on_digits():
    from mixzoo.app.transfer import transfer_split
    from mixzoo.data import load_dataset

    d = load_dataset("digits")
    td = transfer_split(d.x, d.labels, [0, 1, 2, 3, 4], epochs=10, seed=0, feature_dim=12)
    rest = d.labels >= 5
    assert td.features.shape == (int(rest.sum()), 12)
    assert set(np.unique(td.labels).tolist()) == {5, 6, 7, 8, 9}
    assert td.noise.size == int((~rest).sum())
    assert td.classifier_accuracy > 0.9
    f = torch.as_tensor(td.features)
    assert torch.isfinite(td.noise.log_prob(f)).all()


def test_cluster_classes_choose_which_held_out_classes_are_clustered(capsys):
    import json

    from mixzoo.app.cli import main
    from mixzoo.app.transfer import transfer_split
    from mixzoo.data import load_dataset

    d = load_dataset("digits")
    td = transfer_split(d.x, d.labels, [0, 1, 2, 3, 4], epochs=3, seed=0, feature_dim=12, cluster_classes=[5, 8])
    assert set(np.unique(td.labels).tolist()) == {5, 8}
    assert td.features.shape[0] == int(np.isin(d.labels, [5, 8]).sum())
    assert td.noise.size == int((d.labels < 5).sum())  # the noise is still all pretraining data
    args = ["fit", "--model", "energy-mixture", "--data", "digits", "--pretrain-classes", "0,1,2,3,4"]
    assert main([*args, "--cluster-classes", "5,8", "--classifier-epochs", "3", "--epochs", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["clusters"] == 2 and record["n"] == td.features.shape[0]
    assert main([*args, "--cluster-classes", "4,5"]) == 2
    assert "--cluster-classes must name at least 2 of the held-out classes [5, 6, 7, 8, 9]; [4] are not among them" in one_error_line(capsys)
    assert main(["fit", "--data", "digits", "--cluster-classes", "5,6"]) == 2
    assert "needs --pretrain-classes" in one_error_line(capsys)


class _TwoPassNCE(NCE):
    """The NCE objective with the model and the noise densities evaluated separately on the data and on each
    source's draws."""

    def objective(self, model, guide, x, y=None, subsample=None, noise_samples=None):
        n = x.shape[0]
        xb = x if subsample is None else x[subsample]
        b = xb.shape[0]
        self.fit_noise(x)
        counts = self._counts(n)
        log_counts = torch.tensor([math.log(m) for m in counts])

        def noise_total(u):
            return torch.logsumexp(torch.stack([s.log_prob(u) for s, _ in self.sources], -1) + log_counts, -1)

        total = (n / b) * torch.nn.functional.logsigmoid(math.log(n) + self._log_model(model, guide, xb) - noise_total(xb)).sum()
        for i, ((source, _), m_l) in enumerate(zip(self.sources, counts, strict=True)):
            yb = noise_samples[i] if noise_samples is not None else source.sample(max(1, round(m_l * b / n)))
            own = log_counts[i] + source.log_prob(yb)
            log_model = math.log(n) + self._log_model(model, guide, yb)
            total = total + (m_l / yb.shape[0]) * (own - torch.logaddexp(log_model, noise_total(yb))).sum()
        return total


def _nce_losses():
    n1 = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    n2 = dist.Normal(torch.full((2,), 3.0), 2 * torch.ones(2)).to_event(1)
    return {"one": lambda cls: cls(), "two": lambda cls: cls([(n1, 300), (n2, 150)])}


@pytest.mark.parametrize("sources", ["one", "two"])
def test_one_pass_objective_equals_the_objective_of_separate_passes(sources):
    torch.manual_seed(3)
    x = torch.cat([torch.randn(200, 2), torch.randn(100, 2) + 3])
    model = EnergyMixture(2, 2, "quadratic").initialize(x, seed=0)
    idx = torch.randperm(300)[:64]
    make = _nce_losses()[sources]
    fast, ref = make(NCE), make(_TwoPassNCE)
    fast.fit_noise(x)
    ref.sources = fast.sources
    noise = [s.sample(20 + 10 * i) for i, (s, _) in enumerate(fast.sources)]
    got = fast.differentiable_loss(model, EmptyGuide(), x, None, idx, noise_samples=noise)
    g_got = torch.autograd.grad(got, [model.theta, model.c])
    want = ref.differentiable_loss(model, EmptyGuide(), x, None, idx, noise_samples=noise)
    g_want = torch.autograd.grad(want, [model.theta, model.c])
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sources", ["one", "two"])
def test_seeded_svi_steps_reach_the_parameters_of_separate_passes(sources):
    """The noise is drawn in the same order: seeded runs give the losses and parameters of the reference."""
    from pyro.infer import SVI

    from mixzoo.inference.optimizer import JointOptim
    from mixzoo.param_store import isolated_param_store

    torch.manual_seed(4)
    x = torch.cat([torch.randn(200, 2), torch.randn(100, 2) + 3])
    batches = [torch.randperm(300)[:100] for _ in range(5)]
    runs = []
    for cls in (NCE, _TwoPassNCE):
        model = EnergyMixture(2, 2, "quadratic").initialize(x, seed=0)
        torch.manual_seed(5)
        with isolated_param_store():
            svi = SVI(model, EmptyGuide(), JointOptim(torch.optim.Adam, {"lr": 0.01}), _nce_losses()[sources](cls))
            runs.append(([svi.step(x, None, idx) for idx in batches], [model.theta.detach(), model.c.detach()]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_integer_data_get_a_noise_on_their_own_support():
    """A continuous noise has no density on a discrete support: for integer data the default noise draws each
    feature from its observed values, so a normalized count model meets its own support."""
    from mixzoo.inference.noise import GaussianNoise, MarginalNoise, MatchedNoise

    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 17, (500, 3), generator=g).float()
    noise = MatchedNoise()
    noise.fit(counts)
    assert isinstance(noise.chosen, MarginalNoise)
    draws = noise.sample(1000)
    assert bool((draws == draws.round()).all()) and torch.isfinite(noise.log_prob(counts)).all()
    assert torch.isfinite(noise.log_prob(draws)).all()
    column = counts[:, 0]
    want = torch.log(torch.stack([(counts[:, d] == counts[0, d]).float().mean() for d in range(3)])).sum()
    torch.testing.assert_close(noise.log_prob(counts[:1])[0], want)
    assert float(noise.log_prob(torch.tensor([[0.5, 0.0, 0.0]]))[0]) == -math.inf  # off the support
    assert column.unique().numel() == len(noise.chosen.values[0])
    continuous = MatchedNoise()
    continuous.fit(counts + 0.25)
    assert isinstance(continuous.chosen, GaussianNoise)


def test_nce_trains_a_users_count_model_without_diverging():
    """A Binomial mixture written to the contract of docs/your-model.md, under NCE on integer pixels: the default noise is the
    pixels' own, and training stays finite and clusters."""
    import pyro

    class BinomialMixture(pyro.nn.PyroModule):
        def __init__(self, dim, n_clusters):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.logits_p = torch.nn.Parameter(torch.randn(n_clusters, dim, generator=g) * 0.1)
            self.mix = torch.nn.Parameter(torch.zeros(n_clusters))

        def forward(self, x, y=None, subsample=None):
            with pyro.plate("data", len(x), subsample=subsample) as idx:
                k = pyro.sample("y", dist.Categorical(logits=self.mix), obs=None if y is None else y[idx],
                                infer={"enumerate": "parallel"})  # fmt: skip
                pyro.sample("x", dist.Binomial(16, logits=self.logits_p[k]).to_event(1), obs=x[idx])

    run = mixzoo.run(BinomialMixture, data="digits", loss="nce", epochs=20)
    assert math.isfinite(run.record["final_loss"]) and run.metrics["acc"] > 0.4 and run.metrics["clusters_used"] >= 8
