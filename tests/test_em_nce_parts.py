"""Unit tests of the parts of the EM loss, of closed-form EM and of the NCE loss, on small mixtures whose values are
written out here: EM's value is the negative log-likelihood and its gradient that of log p(x) (full data and
minibatch), the refusals name the problem, a closed-form epoch is one EM iteration whatever its chunks, and NCE's
objective is the logistic loss of data against noise."""

from __future__ import annotations

import copy
import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.optim import SGD

from mixzoo.contract import ModelCapabilities
from mixzoo.errors import MixzooInputError, TrainingDivergedError
from mixzoo.guides import EmptyGuide, PosteriorGuide
from mixzoo.inference.data_parallel import DistributedContext
from mixzoo.inference.em import EM, ClosedFormEMStep, em_step
from mixzoo.inference.em import _requires as em_requires
from mixzoo.inference.nce import NCE
from mixzoo.inference.nce import _requires as nce_requires
from mixzoo.inference.noise import NoiseSource, SampleNoise
from mixzoo.inference.registry import GuideFacts
from mixzoo.inference.step import SVIStep
from mixzoo.models.gmm import GaussianMixture
from mixzoo.param_store import isolated_param_store

ENUM = {"enumerate": "parallel"}

# ---------------------------------------------------------------------------------------------- helpers


def _data(n: int = 24, seed: int = 0) -> torch.Tensor:
    """Two 2-D blobs of ``n`` points in all."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(n // 2, 2, generator=g) - 2, torch.randn(n - n // 2, 2, generator=g) + 2])


def _gmm(x: torch.Tensor, k: int = 3) -> GaussianMixture:
    """A diagonal Gaussian mixture started on ``x`` and moved off its start, so that gradients are not zero."""
    model = GaussianMixture(x.shape[1], k, covariance="diag").initialize(x, seed=0)
    with torch.no_grad():
        model.loc += 0.3
        model.logits += torch.arange(k, dtype=model.logits.dtype) * 0.2
    return model


def _gmm_at(loc: list[list[float]]) -> GaussianMixture:
    """A diagonal mixture with equal weights, unit spreads (plus the floor) and the means ``loc``."""
    loc_t = torch.tensor(loc)
    model = GaussianMixture(loc_t.shape[1], loc_t.shape[0], covariance="diag")
    with torch.no_grad():
        model.loc.copy_(loc_t)
        model.logits.zero_()
        model.log_scale.zero_()
    return model


def _mixture(model: GaussianMixture) -> torch.distributions.Distribution:
    """The diagonal mixture as a torch distribution, written from its parameters."""
    comp = torch.distributions.Independent(torch.distributions.Normal(model.loc, model.log_scale.exp() + model.min_scale), 1)
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=model.logits), comp)


def _nll(model: GaussianMixture, xb: torch.Tensor) -> torch.Tensor:
    """-sum_n log p(x_n), independently of the model's own scoring."""
    return -_mixture(model).log_prob(xb).sum()


def _value(t: torch.Tensor) -> float:
    return float(t.detach())


def _grads(value: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, params))


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], **tol)


class UnitMixture(PyroModule):
    """A user's model without a stated table (scored through its trace): unit-variance Gaussians."""

    def __init__(self, loc: torch.Tensor, logits: torch.Tensor) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(loc.clone())
        self.mix = torch.nn.Parameter(logits.clone())

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=self.mix), infer=ENUM)
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])

    def table(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) log p(x_n, y = k), written out."""
        comp = -0.5 * (x[:, None, :] - self.loc).square().sum(-1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return torch.log_softmax(self.mix, -1) + comp


def _unit_mixture() -> UnitMixture:
    return UnitMixture(torch.tensor([[-1.5, 0.0], [0.5, 0.5], [2.5, -0.5]]), torch.tensor([0.2, -0.1, 0.4]))


def _traces(model, guide, x):
    """The guide's trace ("y" enumerated) and the model's replayed against it, as a loss makes them."""
    guide_trace = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(poutine.enum(model, first_available_dim=-2), trace=guide_trace)).get_trace(x)
    return model_trace, guide_trace


def _guide_with(k: int, *, enumerate_y: bool = True, others: tuple[str, ...] = (), params: tuple[str, ...] = ()):
    """A guide sampling "y" (enumerated or not), further latents ``others``, with bare parameters ``params``."""

    def guide(x, y=None, subsample=None):
        for name in params:
            pyro.param(name, torch.zeros(1))
        with pyro.plate("data", len(x), subsample=subsample):
            pyro.sample("y", dist.Categorical(logits=torch.zeros(len(x), k)), infer=ENUM if enumerate_y else {})
            for name in others:
                pyro.sample(name, dist.Normal(0.0, 1.0))

    return guide


# ---------------------------------------------------------------------------------------------- EM: value and gradient


def test_em_defaults_and_particles():
    loss = EM()
    assert (loss.num_particles, loss.max_plate_nesting, loss.data_plate) == (1, 1, "data")
    assert EM(num_particles=3).num_particles == 3


@pytest.mark.parametrize("minibatch", [False, True], ids=["all data", "minibatch"])
def test_em_value_is_the_negative_log_likelihood(minibatch):
    """-ELBO at the exact E-step is -sum_n log p(x_n); on a minibatch of B of N points, scaled by N / B."""
    x = _data()
    model = _gmm(x)
    idx = torch.tensor([1, 4, 5, 9, 13, 17, 20]) if minibatch else None
    args = (x, None, idx) if minibatch else (x,)
    with torch.no_grad():
        want = _value(_nll(model, x if idx is None else x[idx])) * (len(x) / len(idx) if minibatch else 1.0)
    with isolated_param_store():
        assert EM().loss(model, PosteriorGuide(model), *args) == pytest.approx(want, rel=1e-5)
        assert _value(EM().differentiable_loss(model, PosteriorGuide(model), *args)) == pytest.approx(want, rel=1e-5)
        assert EM().loss_and_grads(model, PosteriorGuide(model), *args) == pytest.approx(want, rel=1e-5)


def test_em_gradient_on_a_minibatch_is_that_of_the_scaled_log_likelihood():
    """Fisher's identity on a minibatch: d/dtheta of the EM loss is -(N / B) d/dtheta sum_batch log p(x_n)."""
    x = _data()
    model = _gmm(x)
    idx = torch.arange(3, 19)
    params = [model.logits, model.loc, model.log_scale]
    with isolated_param_store():
        got = _grads(EM().differentiable_loss(model, PosteriorGuide(model), x, None, idx), params)
    want = _grads(_nll(model, x[idx]) * len(x) / len(idx), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert max(float(w.abs().max()) for w in want) > 1e-2


@pytest.mark.parametrize("particles", [1, 2])
def test_two_particles_of_the_deterministic_e_step_give_the_value_of_one(particles):
    x = _data()
    model = _gmm(x)
    idx = torch.arange(0, 24, 2)
    with isolated_param_store():
        one = EM().loss(model, PosteriorGuide(model), x, None, idx)
        value = EM(num_particles=particles).differentiable_loss(model, PosteriorGuide(model), x, None, idx)
        many = EM(num_particles=particles).loss(model, PosteriorGuide(model), x, None, idx)
    assert _value(value) == pytest.approx(one, rel=1e-6)
    assert many == pytest.approx(one, rel=1e-6)


def _zero_grads(*modules: torch.nn.Module) -> None:
    for m in modules:
        for p in m.parameters():
            p.grad = None


@pytest.mark.parametrize("case", ["stated table", "traced, two particles", "traced, user's model"])
def test_loss_and_grads_returns_the_loss_and_accumulates_the_log_likelihood_gradient(case):
    x = _data()
    idx = torch.tensor([0, 2, 3, 7, 11, 12, 15, 22])
    scale = len(x) / len(idx)
    if case == "traced, user's model":
        model = _unit_mixture()
        params = [model.loc, model.mix]
        want_value = -torch.logsumexp(model.table(x[idx]), -1).sum() * scale
    else:
        model = _gmm(x)
        params = [model.logits, model.loc, model.log_scale]
        want_value = _nll(model, x[idx]) * scale
    want = _grads(want_value, params)
    _zero_grads(model)
    loss = EM(num_particles=2 if case == "traced, two particles" else 1)
    guide = PosteriorGuide(model)
    with isolated_param_store():
        got = loss.loss_and_grads(model, guide, x, None, idx)
        assert isinstance(got, float)
        assert got == pytest.approx(_value(want_value), rel=1e-5)
        for p, w in zip(params, want, strict=True):
            torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-5)
        # a second call accumulates the same gradient again, and reports the same value
        assert loss.loss_and_grads(model, guide, x, None, idx) == pytest.approx(got, rel=1e-6)
        for p, w in zip(params, want, strict=True):
            torch.testing.assert_close(p.grad, 2 * w, rtol=1e-4, atol=1e-5)


def test_loss_and_grads_leaves_no_gradient_where_the_model_has_no_parameters():
    """A model scored with fixed tensors (no parameter sites): the loss is reported, nothing is backpropagated, even
    into tensors that require a gradient."""
    loc = torch.tensor([[-1.5, 0.0], [2.0, 0.5]], requires_grad=True)

    def model(x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(2)), infer=ENUM)
            pyro.sample("x", dist.Normal(loc[k], 1.0).to_event(1), obs=x[idx])

    x = _data(16)
    comp = torch.distributions.Independent(torch.distributions.Normal(loc.detach(), 1.0), 1)
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=torch.zeros(2)), comp)
    with isolated_param_store():
        value = EM().loss_and_grads(model, PosteriorGuide(model), x)
    assert value == pytest.approx(float(-mix.log_prob(x).sum()), rel=1e-5)
    assert loc.grad is None


def test_keyword_arguments_reach_the_model_and_the_guide():
    """Keyword arguments go to both programs: each scores the shifted points, so the value is -log p(x + s); with the
    posterior guide, which ignores them, the model alone sees the shift (and the stated table, which cannot take
    them, is not used)."""

    class ShiftedMixture(GaussianMixture):
        def forward(self, x, y=None, subsample=None, shift=0.0):
            super().forward(x + shift, y, subsample)

        def log_joint(self, x):  # the table of forward without a shift
            return super().log_joint(x)

    x = _data()
    model = ShiftedMixture(2, 3, covariance="diag")
    model.load_state_dict(_gmm(x).state_dict())
    posterior = PosteriorGuide(model)

    def shifted_guide(x, y=None, subsample=None, shift=0.0):
        posterior(x + shift, y, subsample)

    shift = 0.7
    want = _value(_nll(model, x + shift))
    with isolated_param_store():
        assert EM().loss(model, shifted_guide, x, shift=shift) == pytest.approx(want, rel=1e-5)
        assert _value(EM().differentiable_loss(model, shifted_guide, x, shift=shift)) == pytest.approx(want, rel=1e-5)
        assert EM().loss_and_grads(model, shifted_guide, x, shift=shift) == pytest.approx(want, rel=1e-5)
    # r at x, scored at x + s: -sum_n sum_k r_nk(x) (log p(x_n + s, k) - log r_nk(x))
    with torch.no_grad():
        log_r = torch.log_softmax(model.log_joint(x), -1)
        mismatch = float(-(log_r.exp() * (model.log_joint(x + shift) - log_r)).sum())
    assert mismatch > want + 1.0  # the E-step of other points is not exact
    loss = EM()
    with isolated_param_store():
        loss.loss_and_grads(model, posterior, x)  # the pair is confirmed for the stated table
        assert loss.loss_and_grads(model, posterior, x, shift=shift) == pytest.approx(mismatch, rel=1e-5)
        assert loss.loss(model, posterior, x, shift=shift) == pytest.approx(mismatch, rel=1e-5)


def test_a_site_outside_the_data_plate_enters_the_loss_unweighted():
    """-sum over global sites of log p_s: a prior factor on the means is subtracted from -log p(x), and its gradient
    added."""
    x = _data()
    gmm = _gmm(x)

    def model(x, y=None, subsample=None):
        pyro.factor("prior", -0.5 * gmm.loc.square().sum())
        gmm(x, y, subsample)

    prior = -0.5 * gmm.loc.square().sum()
    want = _nll(gmm, x) - prior
    with isolated_param_store():
        value = EM().differentiable_loss(model, PosteriorGuide(gmm), x)
    assert _value(value) == pytest.approx(_value(want), rel=1e-5)
    torch.testing.assert_close(_grads(value, [gmm.loc])[0], _grads(want, [gmm.loc])[0], rtol=1e-4, atol=1e-5)


def test_the_data_plate_can_be_named():
    """EM(data_plate=...) weights the sites of that plate by the responsibilities."""
    m = _unit_mixture()

    def model(x, y=None, subsample=None):
        with pyro.plate("rows", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=m.mix), infer=ENUM)
            pyro.sample("x", dist.Normal(m.loc[k], 1.0).to_event(1), obs=x[idx])

    def guide(x, y=None, subsample=None):
        xb = x if subsample is None else x[subsample]
        with torch.no_grad():
            log_r = torch.log_softmax(m.table(xb), -1)
        with pyro.plate("rows", len(x), subsample=subsample):
            pyro.sample("y", dist.Categorical(logits=log_r), infer=ENUM)

    x = _data()
    idx = torch.arange(5, 15)
    want = -torch.logsumexp(m.table(x[idx]), -1).sum() * len(x) / len(idx)
    with isolated_param_store():
        assert EM(data_plate="rows").loss(model, guide, x, None, idx) == pytest.approx(_value(want), rel=1e-5)


def test_a_nan_loss_is_warned_about_as_the_loss():
    x = _data()
    model = _gmm(x)
    with torch.no_grad():
        model.loc[0, 0] = float("nan")
    with pyro.validation_enabled(False), isolated_param_store():
        with pytest.warns(UserWarning, match=r"^Encountered NaN: loss$"):
            assert math.isnan(_value(EM().differentiable_loss(model, PosteriorGuide(model), x)))
        with pytest.warns(UserWarning, match=r"^Encountered NaN: loss$"):
            assert math.isnan(EM(num_particles=2).loss_and_grads(model, PosteriorGuide(model), x))


def test_the_first_evaluation_checks_the_shapes_of_the_sites():
    """With Pyro's validation on, the pair's first evaluation checks each site's shape against its plates: a global
    site with a batch of two values (no .to_event) is refused."""
    m = _unit_mixture()

    def model(x, y=None, subsample=None):
        pyro.sample("offset", dist.Normal(torch.zeros(2), 1.0), obs=torch.zeros(2))  # log_prob (2,), not ()
        m(x, y, subsample)

    x = _data(10)
    with pyro.validation_enabled(True), isolated_param_store():
        with pytest.raises(ValueError, match='at site "offset", invalid log_prob shape'):
            EM().differentiable_loss(model, PosteriorGuide(m), x)


# ---------------------------------------------------------------------------------------------- EM: the stated table


def test_a_confirmed_pair_is_scored_from_the_stated_table_without_running_forward():
    """The documented fast path (mixzoo.inference.untraced): once the traced loss has confirmed the model and its own
    E-step, loss_and_grads scores the model's log_joint; two particles, or another model's E-step, are traced."""
    x = _data()
    model = _gmm(x)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    want = _value(_nll(model, x))

    def run(loss, guide, times=3):
        counts = []
        for _ in range(times):
            before = len(calls)
            assert loss.loss_and_grads(model, guide, x) == pytest.approx(want, rel=1e-5)
            counts.append(len(calls) - before)
        return counts

    twin = copy.deepcopy(model)
    with isolated_param_store():
        assert run(EM(), PosteriorGuide(model))[1:] == [0, 0]
        assert all(c > 0 for c in run(EM(num_particles=2), PosteriorGuide(model)))
        assert all(c > 0 for c in run(EM(), PosteriorGuide(twin)))


def test_a_guide_that_rewrites_the_e_step_is_traced_not_read_from_the_table():
    """A subclass of the posterior guide that samples another q (here uniform) keeps log_posterior but not its
    forward: the loss is -ELBO under that q, -sum_n sum_k (1/K) (log p(x_n, k) - log(1/K))."""

    class Uniform(PosteriorGuide):
        def forward(self, x, y=None, subsample=None, **kwargs):
            with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
                pyro.sample("y", dist.Categorical(logits=torch.zeros(len(idx), 3)), infer=ENUM)

    x = _data()
    model = _gmm(x)
    with torch.no_grad():
        table = model.log_joint(x)
    want = float(-(table.mean(-1) + math.log(3)).sum())
    assert want > _value(_nll(model, x)) + 1.0
    loss, guide = EM(), Uniform(model)
    with isolated_param_store():
        for _ in range(3):
            assert loss.loss_and_grads(model, guide, x) == pytest.approx(want, rel=1e-5)


def test_a_guide_stating_a_posterior_of_no_model_is_traced():
    """A user's guide with forward and log_posterior but no model of its own (no ``model`` attribute): the loss
    comes from its trace, -ELBO under its q, which here is the exact posterior: -log p(x)."""
    x = _data()
    gmm = _gmm(x)

    class OwnPosterior(PyroModule):
        def log_posterior(self, xb):
            with torch.no_grad():
                return torch.log_softmax(gmm.log_joint(xb), -1)

        def forward(self, x, y=None, subsample=None):
            log_r = self.log_posterior(x if subsample is None else x[subsample])
            with pyro.plate("data", x.shape[0], subsample=subsample):
                pyro.sample("y", dist.Categorical(logits=log_r), infer=ENUM)

    loss, guide = EM(), OwnPosterior()
    want = _value(_nll(gmm, x))
    with isolated_param_store():
        for _ in range(2):
            assert loss.loss_and_grads(gmm, guide, x) == pytest.approx(want, rel=1e-5)


def test_svi_steps_with_em_move_the_parameters_down_the_log_likelihood_gradient():
    """Every step, the first (which confirms the pair) and the later ones (scored from the table), hands the model's
    parameters to SVI's optimizer: theta - lr * grad(-log p(x)), and reports -log p(x) of the parameters it started
    from."""
    from pyro.infer import SVI

    x = _data()
    model = _gmm(x)
    with isolated_param_store():
        svi = SVI(model, PosteriorGuide(model), SGD({"lr": 1e-3}), EM())
        for _ in range(3):
            start = _params(model)
            want_value = _nll(model, x)
            want = dict(zip(start, _grads(want_value, [dict(model.named_parameters())[n] for n in start]), strict=True))
            assert svi.step(x) == pytest.approx(_value(want_value), rel=1e-5)
            for name, p in model.named_parameters():
                torch.testing.assert_close(p.detach(), start[name] - 1e-3 * want[name], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- EM: check_pair


def _check_pair_refusal(guide) -> str:
    """EM's refusal of ``guide`` beside a Gaussian mixture on ten points."""
    x = _data(10)
    model = _gmm(x)
    with isolated_param_store():
        traces = _traces(model, guide, x)
    with pytest.raises(MixzooInputError) as err:
        EM().check_pair(*traces)
    return str(err.value)


def test_check_pair_accepts_the_posterior_guide_and_parameters_shared_with_the_model():
    x = _data(10)
    model = _gmm(x)
    with isolated_param_store():
        EM().check_pair(*_traces(model, PosteriorGuide(model), x))

    loc = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])

    def bare_model(x, y=None, subsample=None):
        w = pyro.param("w", torch.zeros(3))
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=w), infer=ENUM)
            pyro.sample("x", dist.Normal(loc[k], 1.0).to_event(1), obs=x[idx])

    def bare_guide(x, y=None, subsample=None):  # reads the model's parameter "w": not one of its own
        w = pyro.param("w", torch.zeros(3))
        with pyro.plate("data", len(x), subsample=subsample):
            pyro.sample("y", dist.Categorical(logits=w.expand(len(x), 3)), infer=ENUM)

    with isolated_param_store():
        model_trace, guide_trace = _traces(bare_model, bare_guide, x)
    assert guide_trace.nodes["w"]["type"] == "param"
    EM().check_pair(model_trace, guide_trace)


def test_check_pair_refuses_a_guide_without_y():
    assert _check_pair_refusal(EmptyGuide()) == (
        "loss EM needs a guide that samples the cluster site 'y' (the E-step): the 'posterior' guide; this guide does not."
    )


def test_check_pair_refuses_y_not_enumerated_in_parallel():
    assert _check_pair_refusal(_guide_with(3, enumerate_y=False)) == (
        "loss EM needs the guide's 'y' declared with infer={'enumerate': 'parallel'}."
    )


def test_check_pair_refuses_a_guide_with_further_latents_and_names_them():
    assert _check_pair_refusal(_guide_with(3, others=("z", "w"))) == (
        "loss EM holds only the E-step over 'y' fixed; the guide also samples z, w. "
        "Use an ELBO (--loss trace-enum) for guides with further latents."
    )


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        (("g_a",), "g_a"),
        (("g_c", "g_a", "g_b"), "g_a, g_b, g_c"),
        (("g_d", "g_c", "g_a", "g_b"), "g_a, g_b, g_c and 1 more"),
        (("g_e", "g_d", "g_c", "g_a", "g_b", "g_f"), "g_a, g_b, g_c and 3 more"),
    ],
)
def test_check_pair_refuses_a_guide_with_parameters_of_its_own(params, shown):
    assert _check_pair_refusal(_guide_with(3, params=params)) == (
        f"loss EM takes q(y|x) as a fixed E-step, so the guide's own parameters ({shown}) would never train; "
        "use the 'posterior' guide (the model's own E-step) or an ELBO (--loss trace-enum)."
    )


def test_the_loss_itself_refuses_a_guide_without_y():
    x = _data(10)
    model = _gmm(x)
    with isolated_param_store(), pytest.raises(MixzooInputError) as err:
        EM().differentiable_loss(model, EmptyGuide(), x)
    assert str(err.value) == "loss EM needs a guide that samples the cluster site 'y'."


# ---------------------------------------------------------------------------------------------- closed-form EM


def _chunks(n: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(order.split(size))


def test_a_closed_form_epoch_reports_the_exact_nll_and_is_one_iteration_whatever_its_chunks():
    x = _data(30, seed=1)
    start = _gmm(x)
    nll = _value(_nll(start, x))
    whole, chunked = copy.deepcopy(start), copy.deepcopy(start)
    one = ClosedFormEMStep(whole)
    assert one(x, None, torch.arange(len(x))) == pytest.approx(nll, rel=1e-5)
    one.end_epoch()
    several = ClosedFormEMStep(chunked)
    chunks = _chunks(len(x), 7)
    losses = [several(x, None, idx) for idx in chunks]
    for idx, value in zip(chunks, losses, strict=True):  # each chunk's NLL, scaled to the data set
        assert value == pytest.approx(_value(_nll(start, x[idx])) * len(x) / len(idx), rel=1e-5)
    assert sum(v * len(idx) / len(x) for v, idx in zip(losses, chunks, strict=True)) == pytest.approx(nll, rel=1e-5)
    several.end_epoch()
    _same(_params(whole), _params(chunked), rtol=1e-5, atol=1e-5)
    assert _value(_nll(whole, x)) < nll - 1e-3  # the iteration raised the likelihood
    assert one.reseeded == 0 and several.reseeded == 0
    # the M-step of the Gaussian mixture: weights N_k / N and means sum_n r_nk x_n / N_k
    with torch.no_grad():
        r = torch.softmax(start.log_joint(x), -1)
    torch.testing.assert_close(whole.weights, r.sum(0) / len(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole.loc, (r.T @ x) / r.sum(0)[:, None], rtol=1e-4, atol=1e-5)


def test_observed_labels_fix_the_responsibilities_and_minus_one_leaves_them_free():
    x = _data(24, seed=2)
    start = _gmm(x)
    y = torch.full((24,), -1)
    y[:4] = 0  # labels seen for components 0 and 1 only
    y[12:15] = 1
    model = copy.deepcopy(start)
    step = ClosedFormEMStep(model)
    idx = torch.arange(24)
    assert step(x, y, idx) == pytest.approx(_value(_nll(start, x)), rel=1e-5)  # the reported loss is still -log p(x)
    step.end_epoch()
    with torch.no_grad():
        r = torch.softmax(start.log_joint(x), -1)
    r[:4] = torch.tensor([1.0, 0.0, 0.0])
    r[12:15] = torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(model.weights, r.sum(0) / 24, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.loc, (r.T @ x) / r.sum(0)[:, None], rtol=1e-4, atol=1e-5)
    free = copy.deepcopy(start)
    unlabelled = ClosedFormEMStep(free)
    unlabelled(x, torch.full((24,), -1), idx)
    unlabelled.end_epoch()
    reference = copy.deepcopy(start)
    plain = ClosedFormEMStep(reference)
    plain(x, None, idx)
    plain.end_epoch()
    _same(_params(free), _params(reference), rtol=0, atol=0)


def test_non_finite_statistics_raise_and_keep_the_parameters():
    x = _data(20)
    x[3, 1] = float("nan")
    model = _gmm(_data(20))
    before = _params(model)
    step = ClosedFormEMStep(model)
    step(x, None, torch.arange(20))
    with pytest.raises(TrainingDivergedError) as err:
        step.end_epoch()
    assert str(err.value) == "EM: the E-step's statistics are not finite; the parameters are those of the last iteration."
    _same(_params(model), before, rtol=0, atol=0)
    step.end_epoch()  # the statistics were consumed: nothing left to apply
    _same(_params(model), before, rtol=0, atol=0)


def test_an_empty_component_moves_to_the_worst_explained_point_and_the_moves_are_counted():
    g = torch.Generator().manual_seed(3)
    blobs = torch.cat([torch.randn(10, 2, generator=g) * 0.5 - 2, torch.randn(10, 2, generator=g) * 0.5 + 2])
    outlier = torch.tensor([[0.0, 9.0]])
    x = torch.cat([outlier, blobs])  # the worst-explained point comes in the first chunk
    model = _gmm_at([[-2.0, 0.0], [2.0, 0.0], [500.0, 500.0]])
    step = ClosedFormEMStep(model)
    for idx in torch.arange(len(x)).split(7):
        step(x, None, idx)
    step.end_epoch()
    assert step.reseeded == 1
    torch.testing.assert_close(model.loc[2].detach(), outlier[0])
    with torch.no_grad():  # empty it again: a second move, counted on top of the first
        model.loc[2] = torch.tensor([500.0, -500.0])
    for idx in torch.arange(len(x)).split(5):
        step(x, None, idx)
    step.end_epoch()
    assert step.reseeded == 2
    torch.testing.assert_close(model.loc[2].detach(), outlier[0])


def test_several_empty_components_take_the_worst_points_in_order_across_small_chunks():
    g = torch.Generator().manual_seed(4)
    far = torch.tensor([[0.0, 6.0], [0.0, -10.0], [8.0, 0.0]])  # from the blob: 6, 10 and 8
    x = torch.cat([far[:1], torch.randn(4, 2, generator=g) * 0.5, far[1:2], torch.randn(4, 2, generator=g) * 0.5, far[2:]])
    model = _gmm_at([[0.0, 0.0], [500.0, 500.0], [600.0, 600.0], [700.0, 700.0]])
    step = ClosedFormEMStep(model)
    for idx in torch.arange(len(x)).split(2):
        step(x, None, idx)
    step.end_epoch()
    assert step.reseeded == 3
    torch.testing.assert_close(model.loc[1:].detach(), far[[1, 2, 0]])  # worst first


def test_restore_drops_the_statistics_of_an_unfinished_epoch():
    x = _data(20)
    start = _gmm(x)
    model = copy.deepcopy(start)
    step = ClosedFormEMStep(model)
    step(x, None, torch.arange(0, 8))
    step.restore({})
    step.end_epoch()  # nothing accumulated: nothing changes
    _same(_params(model), _params(start), rtol=0, atol=0)
    step(x, None, torch.arange(20))
    step.end_epoch()
    reference = copy.deepcopy(start)
    fresh = ClosedFormEMStep(reference)
    fresh(x, None, torch.arange(20))
    fresh.end_epoch()
    _same(_params(model), _params(reference), rtol=0, atol=0)


def test_a_closed_form_model_without_reseed_empty_is_iterated():
    class Plain:
        """log_joint, em_statistics and em_update, and nothing else."""

        def __init__(self, gmm: GaussianMixture) -> None:
            self.gmm = gmm

        def log_joint(self, x):
            return self.gmm.log_joint(x)

        def em_statistics(self, x, r):
            return self.gmm.em_statistics(x, r)

        def em_update(self, stats):
            self.gmm.em_update(stats)

    x = _data(20)
    start = _gmm(x)
    plain, reference = Plain(copy.deepcopy(start)), copy.deepcopy(start)
    for m in (plain, reference):
        step = ClosedFormEMStep(m)
        assert step(x, None, torch.arange(20)) == pytest.approx(_value(_nll(start, x)), rel=1e-5)
        step.end_epoch()
        assert step.reseeded == 0
    _same(_params(plain.gmm), _params(reference), rtol=0, atol=0)


def test_closed_form_em_refuses_a_model_without_the_updates():
    with pytest.raises(MixzooInputError) as err:
        ClosedFormEMStep(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    assert str(err.value) == "closed-form EM needs a model with log_joint, em_statistics and em_update; Linear has not."


def test_em_step_takes_the_closed_form_where_the_model_offers_it_and_an_svi_step_otherwise():
    class NoClosedForm(GaussianMixture):
        em_statistics = None  # type: ignore[assignment]

    x = _data()
    context = DistributedContext()
    model = _gmm(x)
    closed = em_step(model, PosteriorGuide(model), SGD({"lr": 1e-3}), EM(), context=context, seed=0)
    assert isinstance(closed, ClosedFormEMStep) and closed.model is model and closed.context is context

    slow = NoClosedForm(2, 3, covariance="diag")
    slow.load_state_dict(model.state_dict())
    idx = torch.arange(0, 24, 3)
    with isolated_param_store():
        step = em_step(slow, PosteriorGuide(slow), SGD({"lr": 1e-3}), EM(), context=context, seed=0)
        assert isinstance(step, SVIStep) and step.context is context
        for _ in range(2):
            start = _params(slow)
            value_want = _nll(slow, x[idx]) * len(x) / len(idx)
            grads = dict(zip(start, _grads(value_want, [dict(slow.named_parameters())[n] for n in start]), strict=True))
            assert step(x, None, idx) == pytest.approx(_value(value_want), rel=1e-5)
            for name, p in slow.named_parameters():
                torch.testing.assert_close(p.detach(), start[name] - 1e-3 * grads[name], rtol=1e-5, atol=1e-6)


def test_em_requirements():
    posterior = GuideFacts("posterior", samples_y=True, held_fixed=True)
    encoder = GuideFacts("encoder", samples_y=True)
    assert em_requires(ModelCapabilities(), posterior) is None
    assert em_requires(ModelCapabilities(normalized=False), posterior) == (
        "needs a normalized model (EM maximizes log p(x)); this one is known only up to its normalizers: use --loss nce"
    )
    assert em_requires(ModelCapabilities(), encoder) == (
        "needs the E-step as its guide (--guide posterior: the model's posterior, held fixed)"
    )


# ---------------------------------------------------------------------------------------------- NCE


def _normal(loc: float, scale: float) -> dist.Distribution:
    return dist.Normal(torch.tensor([loc]), torch.tensor([scale])).to_event(1)


class Bumps(PyroModule):
    """A non-normalized 1-D mixture: log p~(u) = log sum_k (1/K) exp(-(u - a_k)^2 / 2 + c_k), scored by its trace."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([-1.0, 1.5]))
        self.c = torch.nn.Parameter(torch.tensor([-0.3, -1.2]))

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(2)), infer=ENUM)
            pyro.factor("x", -0.5 * (x[idx, 0] - self.a[k]).square() + self.c[k])

    def log_density(self, u: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(-0.5 * (u - self.a).square() + self.c, -1) - math.log(2)


def _nce_model(kind: str):
    if kind == "user's model":
        model = Bumps()
        return model, model.log_density, [model.a, model.c]
    model = _gmm_at([[-1.0], [1.5]])
    with torch.no_grad():
        model.logits.copy_(torch.tensor([0.3, -0.4]))
        model.log_scale.copy_(torch.tensor([[-0.2], [0.3]]))
    return model, lambda u: _mixture(model).log_prob(u), [model.logits, model.loc, model.log_scale]


def _hand_objective(log_p, x, idx, sources, draws):
    """N J^ on the minibatch ``idx``: (N/B) sum log sigma(G(x_b)) + sum_l (M_l / B_l) sum log (M_l n_l / (N p + sum M n))."""
    n, xb = len(x), x[idx]

    def noise_total(u):
        return torch.logsumexp(torch.stack([math.log(m) + s.log_prob(u) for s, m in sources], -1), -1)

    total = (n / len(xb)) * F.logsigmoid(math.log(n) + log_p(xb) - noise_total(xb)).sum()
    for (s, m), yl in zip(sources, draws, strict=True):
        own = math.log(m) + s.log_prob(yl)
        total = total + (m / len(yl)) * (own - torch.logaddexp(math.log(n) + log_p(yl), noise_total(yl))).sum()
    return total


@pytest.mark.parametrize("kind", ["user's model", "stated table"])
@pytest.mark.parametrize("n_sources", [1, 2])
def test_nce_objective_on_a_minibatch_is_the_logistic_loss_written_out(kind, n_sources):
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(18, 1, generator=g) - 1, torch.randn(12, 1, generator=g) + 1.5])
    idx = torch.tensor([0, 3, 4, 10, 19, 25, 29])
    n1, n2 = _normal(0.0, 2.0), _normal(1.0, 3.0)
    if n_sources == 1:
        loss, sources = NCE(n1, nu=2.0), [(n1, 60.0)]
        draws = [n1.sample((9,))]
    else:
        loss, sources = NCE([(n1, 20), (n2, 45)]), [(n1, 20.0), (n2, 45.0)]
        draws = [n1.sample((5,)), n2.sample((11,))]
    model, log_p, params = _nce_model(kind)
    want = -_hand_objective(log_p, x, idx, sources, draws)
    want_grads = _grads(want, params)
    with isolated_param_store():
        got = loss.differentiable_loss(model, EmptyGuide(), x, None, idx, noise_samples=draws)
        assert _value(got) == pytest.approx(_value(want), rel=1e-5)
        for a, b in zip(_grads(got, params), want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert loss.loss(model, EmptyGuide(), x, None, idx, noise_samples=draws) == pytest.approx(_value(want), rel=1e-5)
        for p in params:
            p.grad = None
        assert loss.loss_and_grads(model, EmptyGuide(), x, None, idx, noise_samples=draws) == pytest.approx(
            _value(want), rel=1e-5
        )
        for p, b in zip(params, want_grads, strict=True):
            torch.testing.assert_close(p.grad, b, rtol=1e-4, atol=1e-5)


class DoubleDraws(NoiseSource):
    """N(0, 2^2) in one dimension, drawn in float64 (as from a numpy array), scored in float32."""

    def __init__(self) -> None:
        self.d = _normal(0.0, 2.0)

    def sample(self, n: int) -> torch.Tensor:
        return self.d.sample((n,)).double()

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self.d.log_prob(u.float())


def test_nce_scores_noise_draws_in_the_datas_precision():
    x = torch.linspace(-2, 2, 20)[:, None]
    model, log_p, _ = _nce_model("user's model")
    n32 = _normal(0.0, 2.0)
    draws = [n32.sample((8,)).double()]
    guide = EmptyGuide()
    with isolated_param_store():
        given = NCE(n32).differentiable_loss(model, guide, x, noise_samples=draws)
        drawn = NCE(DoubleDraws()).differentiable_loss(model, guide, x)
    assert given.dtype == torch.float32 and drawn.dtype == torch.float32
    want = -_hand_objective(log_p, x, torch.arange(20), [(n32, 20.0)], [draws[0].float()])
    assert _value(given) == pytest.approx(_value(want), rel=1e-5)


class CountingNoise(NoiseSource):
    """N(0, 2^2) in one dimension, recording how many points each draw asks for."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.d = _normal(0.0, 2.0)

    def sample(self, n: int) -> torch.Tensor:
        self.asked.append(n)
        return self.d.sample((n,))

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self.d.log_prob(u)


def test_noise_draws_are_nu_times_the_batch_at_least_one():
    x = torch.linspace(-2, 2, 30)[:, None]
    model = Bumps()
    noise = CountingNoise()
    loss = NCE(noise, nu=0.5)
    with isolated_param_store():
        for b in (10, 3, 1, 30):
            loss.loss(model, EmptyGuide(), x, None, torch.arange(b))
    assert noise.asked == [5, 2, 1, 15]  # round(nu B): 5, round(1.5), round(0.5) = 0 -> 1, nu N
    drawn = loss.draw_noise(x)
    assert [d.shape for d in drawn] == [torch.Size([15, 1])]
    rare = CountingNoise()
    assert [d.shape for d in NCE(rare, nu=0.01).draw_noise(x)] == [torch.Size([1, 1])]


def test_draw_noise_gives_each_source_its_count_and_is_seeded():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 2 + 1
    default = NCE()  # the matched Gaussian, fitted on first use, nu = 1
    torch.manual_seed(1)
    first = default.draw_noise(x)
    torch.manual_seed(1)
    again = default.draw_noise(x)
    assert [d.shape for d in first] == [torch.Size([40, 3])]
    assert torch.equal(first[0], again[0])
    n1 = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    n2 = dist.Normal(torch.ones(3), torch.ones(3)).to_event(1)
    fixed = SampleNoise(torch.randn(9, 3), lambda u: n1.log_prob(u))
    assert [d.shape[0] for d in NCE(n1, nu=2.5).draw_noise(x)] == [100]
    assert [d.shape[0] for d in NCE([(n1, 7), (n2, 12.4)]).draw_noise(x)] == [7, 12]
    several = NCE([(fixed, None), (n2, 5)])  # a sample set counts its size
    drawn = several.draw_noise(x)
    assert [d.shape[0] for d in drawn] == [9, 5] and torch.equal(drawn[0], fixed.samples)
    assert several.nu is None


def test_nce_constructor_refusals():
    with pytest.raises(MixzooInputError) as err:
        NCE("gaussian")  # type: ignore[arg-type]
    assert str(err.value) == "noise must be a NoiseSource, a torch distribution or (source, count) pairs, got str."
    for nu, shown in ((0, "0"), (-1.5, "-1.5"), (float("nan"), "nan"), (float("inf"), "inf")):
        with pytest.raises(MixzooInputError) as err:
            NCE(nu=nu)
        assert str(err.value) == f"noise ratio nu must be positive and finite, got {shown}."
    for count in (0, -3, float("inf")):
        with pytest.raises(MixzooInputError) as err:
            NCE([(_normal(0.0, 1.0), count), (_normal(1.0, 1.0), 5)])
        assert str(err.value) == f"a noise distribution's sample count M_l must be positive and finite, got {float(count)}."
    with pytest.raises(MixzooInputError) as err:
        NCE([(_normal(0.0, 1.0), None), (_normal(1.0, 1.0), 5)])
    assert str(err.value) == "each of several noise distributions needs a sample count M_l."
    assert NCE(_normal(0.0, 1.0)).nu == 1.0


def test_nce_has_no_elbo_traces():
    with pytest.raises(NotImplementedError) as err:
        NCE()._get_trace(None, None, (), {})
    assert str(err.value) == "NCE scores the model on data and noise directly; it has no ELBO traces"


def test_nce_scores_a_confirmed_pair_from_the_stated_table_without_running_forward():
    """As for EM: once the model and the empty guide are confirmed, the model's log_joint scores data and noise."""
    x = torch.linspace(-2, 2, 20)[:, None]
    model, log_p, _ = _nce_model("stated table")
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    noise = _normal(0.0, 2.0)
    loss, guide = NCE(noise), EmptyGuide()
    draws = [noise.sample((10,))]
    want = _value(-_hand_objective(log_p, x, torch.arange(20), [(noise, 20.0)], draws))
    runs = []
    with isolated_param_store():
        for _ in range(3):
            before = len(calls)
            assert loss.loss(model, guide, x, noise_samples=draws) == pytest.approx(want, rel=1e-5)
            runs.append(len(calls) - before)
    assert runs[1:] == [0, 0]


def test_nce_requirements():
    empty = GuideFacts("empty", samples_y=False)
    assert nce_requires(ModelCapabilities(), empty) is None
    assert nce_requires(ModelCapabilities(), GuideFacts("encoder", samples_y=True)) == (
        "scores the model with y summed out, so it needs the empty guide, not 'encoder'"
    )
    assert nce_requires(ModelCapabilities(local_latents=("z", "u")), empty) == (
        "needs a model whose only per-point latent is y; this one also has z, u"
    )


def test_one_source_count_pair_is_taken_as_a_list_of_one():
    x = torch.zeros(9, 1)
    one = NCE((_normal(0.0, 1.0), 7))
    assert one.nu is None and len(one.sources) == 1
    assert [d.shape[0] for d in one.draw_noise(x)] == [7]
    with pytest.raises(MixzooInputError, match="sample count M_l must be positive and finite, got -1.0"):
        NCE((_normal(0.0, 1.0), -1))
