"""Cluster posteriors and likelihoods (mixzoo.analysis.posterior) and the enumerated table of log p(x_n, y=k)
(mixzoo.inference.enumeration) of small hand-written model/guide pairs, against closed forms written out here:
chunked against whole evaluation, global latents replayed from the guide, an amortized guide's y left out, guides
held fixed, stated tables, param-store state, devices, refused data and the importance-sampling path."""

from __future__ import annotations

import math
import re

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import mixzoo.inference.vimco
from mixzoo import EmptyGuide, MixzooInputError
from mixzoo.analysis.posterior import (
    _in_chunks,
    _of_globals,
    as_input,
    cluster_log_joint,
    cluster_log_proba,
    cluster_proba,
    has_exact_likelihood,
    log_likelihood,
)
from mixzoo.inference.enumeration import enumerated_log_joint, table_log_joint
from mixzoo.param_store import isolated_param_store

K, D = 3, 2
LOC = torch.tensor([[-2.0, 0.0], [0.0, 2.0], [2.5, -1.0]])
LOGITS = torch.tensor([0.3, -0.2, 0.5])
MU = 1.5
"""The value at which the guides below hold the global latent ``mu``."""


def _x(n: int = 10, d: int = D, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 2


def _exact(pattern: str) -> str:
    """A ``match`` for exactly this message."""
    return f"^{re.escape(pattern)}$"


# ---------------------------------------------------------------------------------------------- references


def _normal_log_density(x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """(N, K) log N(x_n; loc_k, I), written out."""
    sq = ((x[:, None, :] - loc[None]) ** 2).sum(-1)
    return -0.5 * sq - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _joint(x: torch.Tensor, shift: float = 0.0, loc: torch.Tensor = LOC, logits: torch.Tensor = LOGITS) -> torch.Tensor:
    """(N, K) log p(x_n, y=k) of unit-variance Gaussians with means loc + shift."""
    return torch.log_softmax(logits, -1) + _normal_log_density(x, loc + shift)


def _marginal(x: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """(N,) log p(x_n) of the same mixture, by torch's MixtureSameFamily."""
    components = dist.Normal(LOC + shift, 1.0).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(logits=LOGITS), components).log_prob(x)


# ---------------------------------------------------------------------------------------------- models


class UnitMixture(nn.Module):
    """Unit-variance Gaussians with learned means and weights, scored through its trace (it states no table)."""

    def __init__(self, dim: object = D, scale: float = 1.0) -> None:
        super().__init__()
        self.dim = dim
        self.scale = scale
        self.loc = nn.Parameter(LOC.clone())
        self.mix = nn.Parameter(LOGITS.clone())

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("y", dist.Categorical(logits=self.mix), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.loc[k], self.scale).to_event(1), obs=x)


class StatingMixture(UnitMixture):
    """States a table one above its trace's, so that a test tells which of the two was used."""

    def forward(self, x, y=None, subsample=None):
        super().forward(x, y, subsample)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.mix, -1) + _normal_log_density(x, self.loc) + 1.0


def on_device_model(x, y=None, subsample=None):
    """A model without parameters (nor ``dim``), computing on the device of its data."""
    loc, logits = LOC.to(x.device), LOGITS.to(x.device)
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(loc[k], 1.0).to_event(1), obs=x)


def global_model(x, y=None, subsample=None):
    """A global mean ``mu`` outside the data plate, shifting every component."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=LOGITS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(LOC[k] + mu, 1.0).to_event(1), obs=x)


def point_guide(x, y=None, subsample=None):
    """Holds ``mu`` at MU (a plain function: no ``held_fixed`` nor ``samples_y``)."""
    pyro.sample("mu", dist.Delta(torch.tensor(MU)))


def local_model(global_mu: bool):
    """A per-point latent ``z`` besides ``y``: x | y=k, z ~ N(LOC_k + mu + z, I), z ~ N(0, 1); ``mu`` a global latent
    sampled first (``global_mu``) or the constant MU."""

    def model(x, y=None, subsample=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0)) if global_mu else torch.tensor(MU)
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("y", dist.Categorical(logits=LOGITS), infer={"enumerate": "parallel"})
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(LOC[k] + (mu + z)[..., None], 1.0).to_event(1), obs=x)

    return model


def _local_posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) log p(x_n, y=k) of the local model at mu = MU (x | y=k ~ N(LOC_k + MU, I + 11^T)) and (N, K)
    E[z | x_n, y=k] = sum_d (x_nd - LOC_kd - MU) / (D + 1); z | x, y has variance 1 / (D + 1)."""
    cov = torch.eye(D) + torch.ones(D, D)
    comp = dist.MultivariateNormal(LOC + MU, covariance_matrix=cov).log_prob(x[:, None, :])
    return torch.log_softmax(LOGITS, -1) + comp, (x[:, None, :] - LOC - MU).sum(-1) / (D + 1)


def exact_local_guide(global_mu: bool):
    """The local model's exact posterior of (y, z) given x at mu = MU (and ``mu`` held at MU)."""

    def guide(x, y=None, subsample=None):
        if global_mu:
            pyro.sample("mu", dist.Delta(torch.tensor(MU)))
        joint, z_mean = _local_posterior(x)
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("y", dist.Categorical(logits=joint))
            m = z_mean.expand(k.shape + (K,)).gather(-1, k[..., None]).squeeze(-1)
            pyro.sample("z", dist.Normal(m, (1.0 / (D + 1)) ** 0.5))

    return guide


def not_enumerated_model(x, y=None, subsample=None):
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=LOGITS))
        pyro.sample("x", dist.Normal(LOC[k], 1.0).to_event(1), obs=x)


def observed_y_model(x, y=None, subsample=None):
    """Declares ``y`` enumerated but always observes it: nothing is enumerated."""
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=LOGITS), obs=torch.zeros(x.shape[0], dtype=torch.long),
                        infer={"enumerate": "parallel"})  # fmt: skip
        pyro.sample("x", dist.Normal(LOC[k], 1.0).to_event(1), obs=x)


def no_y_model(x, y=None, subsample=None):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([D]).to_event(1), obs=x)


def bare_param_model(x, y=None, subsample=None):
    """Parameters declared with bare ``pyro.param``: their values come from the param store only."""
    loc, logits = pyro.param("loc"), pyro.param("mix")
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(loc[k], 1.0).to_event(1), obs=x)


def default_param_model(x, y=None, subsample=None):
    """``pyro.param`` with a start (zero means, equal weights) that a param-store state overrides."""
    loc = pyro.param("loc", lambda: torch.zeros(K, D))
    logits = pyro.param("mix", lambda: torch.zeros(K))
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(loc[k], 1.0).to_event(1), obs=x)


def _param_state(shift: float) -> dict:
    """A param-store state dict holding loc = LOC + shift and mix = LOGITS."""
    with isolated_param_store() as state:
        pyro.param("loc", LOC + shift)
        pyro.param("mix", LOGITS.clone())
    return state


# ---------------------------------------------------------------------------------------------- guides


class LinearEncoder(nn.Module):
    """An amortized guide sampling ``y`` (without enumerating it) from logits that depend on x."""

    samples_y = True
    held_fixed = False

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]]))
        self.b = nn.Parameter(torch.tensor([2.0, 0.0, -1.0]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self.logits(x)))


class HeldFixed(nn.Module):
    """A guide held fixed at the model's posterior (an E-step): it has no globals, and tracing it is an error."""

    samples_y = True
    held_fixed = True

    def forward(self, x, y=None, subsample=None):
        raise AssertionError("the guide held fixed was traced")


class OnMeta(nn.Module):
    """A guide sampling nothing whose one parameter lives on another device (``meta`` stands for an accelerator)."""

    samples_y = False

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, device="meta"))

    def forward(self, x, y=None, subsample=None):
        return None


# ---------------------------------------------------------------------------------------------- as_input


def test_as_input_without_modules_gives_a_float32_cpu_tensor():
    a = np.arange(12, dtype=np.float64).reshape(6, 2) / 7
    t = as_input(a)
    assert t.dtype == torch.float32 and t.device.type == "cpu" and t.shape == (6, 2)
    torch.testing.assert_close(t, torch.as_tensor(a, dtype=torch.float32))


def test_as_input_takes_any_feature_count_from_a_model_without_dim_or_parameters():
    for d in (1, 2, 5):
        assert as_input(np.ones((4, d)), on_device_model, point_guide).shape == (4, d)


@pytest.mark.parametrize(
    "model",
    [lambda: UnitMixture(), lambda: UnitMixture().forward, lambda: UnitMixture(dim=np.int64(2))],
    ids=["module", "bound-method", "numpy-int"],
)
def test_as_input_refuses_data_with_another_feature_count_than_the_models_dim(model):
    with pytest.raises(MixzooInputError, match=_exact("data has 3 features but the model was built for 2.")):
        as_input(np.ones((4, 3)), model(), EmptyGuide())
    assert as_input(np.ones((4, 2)), model(), EmptyGuide()).shape == (4, 2)


@pytest.mark.parametrize("dim", [True, 3.0, "3", None], ids=["bool", "float", "str", "none"])
def test_a_dim_that_is_not_an_integer_is_ignored(dim):
    x = as_input(np.ones((4, 2)), UnitMixture(dim=dim), EmptyGuide())
    assert x.shape == (4, 2)
    torch.testing.assert_close(cluster_log_joint(UnitMixture(dim=dim), EmptyGuide(), x), _joint(x))


@pytest.mark.parametrize(
    "modules",
    [
        lambda: (UnitMixture().to("meta"),),
        lambda: (UnitMixture().to("meta").forward,),
        lambda: (on_device_model, OnMeta()),
        lambda: (on_device_model, OnMeta().forward),
    ],
    ids=["model", "bound-model", "guide", "bound-guide"],
)
def test_as_input_moves_data_to_the_device_of_the_first_module_with_parameters(modules):
    x = as_input(np.ones((4, 2)), *modules())
    assert x.device.type == "meta" and x.shape == (4, 2) and x.dtype == torch.float32


def test_as_input_follows_the_model_before_the_guide():
    assert as_input(np.ones((4, 2)), UnitMixture(), OnMeta()).device.type == "cpu"
    assert as_input(np.ones((4, 2)), UnitMixture().to("meta"), LinearEncoder()).device.type == "meta"


def test_results_are_on_the_device_of_the_guides_parameters_when_the_model_has_none():
    x = _x()
    with pyro.validation_enabled(False):  # validating a distribution reads values, which meta tensors have not
        for fn in (cluster_log_joint, cluster_log_proba):
            out = fn(on_device_model, OnMeta(), x)
            assert out.device.type == "meta" and out.shape == (10, K)


# ---------------------------------------------------------------------------------------------- helpers


def test_in_chunks_concatenates_consecutive_chunks_in_order():
    x = torch.arange(20.0).view(10, 2)
    sizes = []

    def fn(xb):
        sizes.append(xb.shape[0])
        return xb * 2

    assert torch.equal(_in_chunks(fn, x, 3), x * 2)
    assert sizes == [3, 3, 3, 1]


def test_of_globals_stands_the_empty_guide_for_a_guide_held_fixed():
    held = HeldFixed()
    assert isinstance(_of_globals(held), EmptyGuide)
    assert isinstance(_of_globals(held.forward), EmptyGuide)
    encoder = LinearEncoder()
    for guide in (point_guide, encoder, encoder.forward):
        assert _of_globals(guide) is guide


# ---------------------------------------------------------------------------------------------- the enumerated table


def test_enumerated_log_joint_is_the_closed_form_and_differentiable():
    x = _x()
    model = UnitMixture()
    table = enumerated_log_joint(model, EmptyGuide(), x)
    assert table.shape == (10, K)
    torch.testing.assert_close(table, _joint(x))
    loc, mix = LOC.clone().requires_grad_(), LOGITS.clone().requires_grad_()
    weights = torch.rand(10, K, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad((table * weights).sum(), [model.loc, model.mix])
    want = torch.autograd.grad((_joint(x, loc=loc, logits=mix) * weights).sum(), [loc, mix])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("table", [enumerated_log_joint, table_log_joint])
def test_a_global_latent_of_the_guide_is_replayed_into_the_model(table):
    """log p(x_n, y=k | mu) at the guide's mu; mu's own prior is no point's."""
    x = _x()
    torch.testing.assert_close(table(global_model, point_guide, x), _joint(x, shift=MU))


@pytest.mark.parametrize("table", [enumerated_log_joint, table_log_joint])
def test_an_amortized_guides_y_is_not_replayed(table):
    x = _x()
    torch.testing.assert_close(table(UnitMixture(), LinearEncoder(), x), _joint(x))


def test_a_model_without_y_is_refused():
    with pytest.raises(ValueError, match=_exact("the model has no sample site named 'y'; the mixzoo contract needs one")):
        enumerated_log_joint(no_y_model, EmptyGuide(), _x())


@pytest.mark.parametrize("model", [not_enumerated_model, observed_y_model], ids=["undeclared", "observed"])
def test_a_model_whose_y_is_not_enumerated_is_refused(model):
    message = "the model's site 'y' is not enumerated; declare it with infer={'enumerate': 'parallel'}"
    with pytest.raises(ValueError, match=_exact(message)):
        enumerated_log_joint(model, EmptyGuide(), _x())


def test_table_log_joint_takes_the_stated_table_only_where_the_guide_samples_nothing():
    x = _x()
    torch.testing.assert_close(table_log_joint(StatingMixture(), EmptyGuide(), x), _joint(x) + 1.0)
    torch.testing.assert_close(table_log_joint(StatingMixture(), LinearEncoder(), x), _joint(x))
    torch.testing.assert_close(table_log_joint(StatingMixture(), point_guide, x), _joint(x))
    torch.testing.assert_close(table_log_joint(UnitMixture(), EmptyGuide(), x), _joint(x))


# ---------------------------------------------------------------------------------------------- cluster posteriors

PAIRS = {
    "empty": (UnitMixture, EmptyGuide, 0.0),
    "bound-methods": (lambda: UnitMixture().forward, lambda: EmptyGuide().forward, 0.0),
    "global-latent": (lambda: global_model, lambda: point_guide, MU),
    "amortized": (UnitMixture, LinearEncoder, 0.0),
}


@pytest.mark.parametrize("pair", PAIRS)
def test_cluster_log_joint_in_chunks_is_the_whole_and_the_closed_form(pair):
    make_model, make_guide, shift = PAIRS[pair]
    x = _x()
    chunked = cluster_log_joint(make_model(), make_guide(), x, batch_size=3)
    whole = cluster_log_joint(make_model(), make_guide(), x, batch_size=4096)
    assert chunked.shape == (10, K) and chunked.dtype == torch.float32
    assert torch.equal(chunked, whole)
    torch.testing.assert_close(whole, _joint(x, shift=shift))
    torch.testing.assert_close(cluster_log_joint(make_model(), make_guide(), x.numpy().astype(np.float64)), whole)


@pytest.mark.parametrize("pair", PAIRS)
def test_cluster_log_proba_in_chunks_is_the_whole_and_the_posterior(pair):
    make_model, make_guide, shift = PAIRS[pair]
    x = _x()
    guide = make_guide()
    chunked = cluster_log_proba(make_model(), guide, x, batch_size=3)
    whole = cluster_log_proba(make_model(), guide, x, batch_size=4096)
    assert chunked.shape == (10, K)
    assert torch.equal(chunked, whole)
    if pair == "amortized":  # q(y|x): the guide's own probabilities
        want = torch.log_softmax(guide.logits(x), -1).detach()
    else:
        want = torch.log_softmax(_joint(x, shift=shift), -1)
    torch.testing.assert_close(whole, want)


def test_cluster_log_joint_uses_the_models_stated_table():
    x = _x()
    torch.testing.assert_close(cluster_log_joint(StatingMixture(), EmptyGuide(), x), _joint(x) + 1.0)
    torch.testing.assert_close(cluster_log_proba(StatingMixture(), EmptyGuide(), x), torch.log_softmax(_joint(x), -1))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_cluster_proba_is_the_softmax_of_the_log_posterior_over_the_temperature(temperature):
    x = _x()
    log_p = torch.log_softmax(_joint(x), -1)
    got = cluster_proba(UnitMixture(), EmptyGuide(), x, temperature=temperature)
    torch.testing.assert_close(got, torch.softmax(log_p / temperature, -1))
    torch.testing.assert_close(got.sum(-1), torch.ones(10))
    encoder = LinearEncoder()
    q = torch.log_softmax(encoder.logits(x), -1).detach()
    torch.testing.assert_close(
        cluster_proba(UnitMixture(), encoder, x, temperature=temperature), torch.softmax(q / temperature, -1)
    )


def test_cluster_proba_at_the_default_temperature_is_the_models_posterior():
    x = _x()
    torch.testing.assert_close(cluster_proba(UnitMixture(), EmptyGuide(), x), torch.softmax(_joint(x), -1))


def test_cluster_proba_refuses_points_whose_densities_underflow_in_every_cluster():
    """Components of scale 1e-20: a point on the first mean has a finite density there, any other none at all."""
    x = LOC[0].repeat(5, 1)
    x[2] = torch.tensor([10.0, 10.0])
    x[4] = torch.tensor([-7.0, 3.0])
    model = UnitMixture(scale=1e-20)
    message = (
        "the cluster probabilities of 2 point(s) (first: row 2) are not finite: every cluster's density under- or "
        "overflows there. Scale the data like the training data, or lower the learning rate if training diverged."
    )
    with pytest.raises(MixzooInputError, match=_exact(message)):
        cluster_proba(model, EmptyGuide(), x)
    good = cluster_proba(model, EmptyGuide(), x[[0, 1, 3]])
    torch.testing.assert_close(good, torch.tensor([[1.0, 0.0, 0.0]]).repeat(3, 1))


def test_param_state_gives_the_values_of_bare_pyro_params():
    pyro.clear_param_store()  # whatever other tests left there
    x = _x()
    state = _param_state(shift=0.7)
    torch.testing.assert_close(
        cluster_log_joint(bare_param_model, EmptyGuide(), x, param_state=state), _joint(x, shift=0.7)
    )
    want = torch.log_softmax(_joint(x, shift=0.7), -1)
    torch.testing.assert_close(cluster_log_proba(bare_param_model, EmptyGuide(), x, param_state=state), want)
    torch.testing.assert_close(cluster_proba(bare_param_model, EmptyGuide(), x, param_state=state), want.exp())
    torch.testing.assert_close(
        cluster_proba(bare_param_model, EmptyGuide(), x, param_state=state, temperature=2.0),
        torch.softmax(want / 2.0, -1),
    )
    assert "loc" not in pyro.get_param_store()  # the user's store is left alone


def test_a_guide_held_fixed_is_not_traced():
    """It stands for the model's posterior under the model's own parameters: the model alone gives the table."""
    x = _x()
    for guide in (HeldFixed(), HeldFixed().forward):
        torch.testing.assert_close(cluster_log_joint(UnitMixture(), guide, x), _joint(x))
        assert has_exact_likelihood(UnitMixture(), guide, x)
        torch.testing.assert_close(log_likelihood(UnitMixture(), guide, x), _marginal(x))


# ---------------------------------------------------------------------------------------------- likelihoods


EXACT = {
    "empty": (UnitMixture, EmptyGuide, True),
    "bound-methods": (lambda: UnitMixture().forward, lambda: EmptyGuide().forward, True),
    "global-latent": (lambda: global_model, lambda: point_guide, True),
    "amortized": (UnitMixture, LinearEncoder, True),
    "local": (lambda: local_model(global_mu=False), lambda: exact_local_guide(global_mu=False), False),
    "global-then-local": (lambda: local_model(global_mu=True), lambda: exact_local_guide(global_mu=True), False),
    "y-not-enumerated": (lambda: not_enumerated_model, EmptyGuide, False),
}


@pytest.mark.parametrize("pair", EXACT)
def test_has_exact_likelihood_where_the_only_per_point_latent_is_an_enumerated_y(pair):
    make_model, make_guide, want = EXACT[pair]
    assert has_exact_likelihood(make_model(), make_guide(), _x()) is want


def test_has_exact_likelihood_refuses_data_the_model_was_not_built_for():
    with pytest.raises(MixzooInputError, match="has 3 features but the model was built for 2"):
        has_exact_likelihood(UnitMixture(), EmptyGuide(), np.ones((4, 3)))
    with pytest.raises(MixzooInputError, match="has 3 features but the model was built for 2"):
        log_likelihood(UnitMixture(), EmptyGuide(), np.ones((4, 3)))


def test_log_likelihood_is_exact_given_the_guides_global_latents():
    x = _x()
    got = log_likelihood(global_model, point_guide, x)
    assert got.shape == (10,)
    torch.testing.assert_close(got, _marginal(x, shift=MU))
    torch.testing.assert_close(log_likelihood(UnitMixture(), LinearEncoder(), x), _marginal(x))


def test_log_likelihood_uses_the_param_state():
    x = _x()
    got = log_likelihood(default_param_model, EmptyGuide(), x, param_state=_param_state(shift=-0.4))
    torch.testing.assert_close(got, _marginal(x, shift=-0.4))


def test_log_likelihood_of_bare_pyro_params_uses_the_param_state():
    x = _x()
    got = log_likelihood(bare_param_model, EmptyGuide(), x, param_state=_param_state(shift=-0.4))
    torch.testing.assert_close(got, _marginal(x, shift=-0.4))


def test_log_likelihood_with_a_local_latent_is_the_importance_estimate():
    """With the exact posterior of (y, z) as proposal every importance weight is p(x_n): the estimate is the closed
    form whatever it draws, unlike the enumerated sum over y at the guide's z."""
    x = _x()
    model, guide = local_model(global_mu=False), exact_local_guide(global_mu=False)
    assert not has_exact_likelihood(model, guide, x)
    pyro.set_rng_seed(0)
    got = log_likelihood(model, guide, x, num_samples=3)
    assert got.shape == (10,) and bool(torch.isfinite(got).all())
    want = torch.logsumexp(_local_posterior(x)[0], -1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    enumerated = torch.logsumexp(cluster_log_joint(model, guide, x), -1)
    assert (enumerated - want).abs().max() > 0.1


def test_log_likelihood_with_a_local_latent_hands_the_pair_and_num_samples_to_the_importance_estimate(monkeypatch):
    calls = []
    real = mixzoo.inference.vimco.importance_log_likelihood

    def recorded(model, guide, x, num_samples=100, **kwargs):
        calls.append((model, guide, x, num_samples))
        return real(model, guide, x, num_samples=num_samples, **kwargs)

    monkeypatch.setattr(mixzoo.inference.vimco, "importance_log_likelihood", recorded)
    x = _x()
    model, guide = local_model(global_mu=False), exact_local_guide(global_mu=False)
    out = log_likelihood(model, guide, x.numpy(), num_samples=7)
    log_likelihood(model, guide, x)
    assert [(c[0], c[1], c[3]) for c in calls] == [(model, guide, 7), (model, guide, 100)]
    assert all(torch.equal(c[2], x) for c in calls)
    torch.testing.assert_close(out, torch.logsumexp(_local_posterior(x)[0], -1), rtol=1e-5, atol=1e-4)
    log_likelihood(UnitMixture(), EmptyGuide(), x)  # exact: no importance sampling
    assert len(calls) == 2
