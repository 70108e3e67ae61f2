"""Losses scored from a model's stated table (mixzoo.inference.untraced) against the traced losses."""

import copy

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture
from mixzoo.guides import ClusterEncoder, PosteriorGuide
from mixzoo.inference import EM, NCE, TableEnum_ELBO
from mixzoo.models import EnergyMixture, FlowMixture, NeuralMixture
from mixzoo.models.student_t import StudentTMixture
from mixzoo.param_store import isolated_param_store


def _data(n=240, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    labels = torch.randint(0, 3, (n,), generator=g)
    x = centres[labels][:, :d] + 0.7 * torch.randn(n, d, generator=g)
    return x, labels


class _Calls:
    """Counts the model's ``forward`` runs: the stated table is scored without one."""

    def __init__(self, module):
        self.n = 0
        module.register_forward_pre_hook(lambda *_: setattr(self, "n", self.n + 1))


def _evaluate(loss, model, guide, x, idx, seed, **kwargs):
    """Loss value and gradients (of the model's and the guide's parameters) of one ``loss_and_grads`` under a fixed seed."""
    named = [*(("m." + n, p) for n, p in model.named_parameters()), *(("g." + n, p) for n, p in guide.named_parameters())]
    for _, p in named:
        p.grad = None
    torch.manual_seed(seed)
    value = loss.loss_and_grads(model, guide, x, None, idx, **kwargs)
    return value, {n: p.grad.clone() for n, p in named if p.grad is not None}


def _compare(make_pair, table_loss, traced_loss, x, idx, guide_grads=False, **kwargs):
    """A table loss's second evaluation against a traced loss's, at the same parameters; the first evaluation
    confirms the pair (a traced check without gradient), the second runs no trace."""
    model, guide = make_pair()
    calls = _Calls(model)
    with isolated_param_store():
        table = table_loss()
        _evaluate(table, model, guide, x, idx, 1, **kwargs)
        before = calls.n
        got, got_grads = _evaluate(table, model, guide, x, idx, 2, **kwargs)
        assert calls.n == before, "the confirmed pair was traced again"
        want, want_grads = _evaluate(traced_loss(), model, guide, x, idx, 2, **kwargs)
    assert calls.n > before
    assert got == pytest.approx(want, rel=1e-5)
    assert got_grads.keys() == want_grads.keys() and got_grads
    assert any(n.startswith("g.") for n in got_grads) == guide_grads
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def _traced(make_loss):
    """A loss that never uses the table: the traced reference."""

    def make():
        loss = make_loss()
        loss.table.guide_ok = lambda model, guide: False
        return loss

    return make


def _initialized(model, guide, x):
    model.initialize(x, seed=0)
    return model, guide


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianMixture(2, 3, covariance="diag"),
        lambda: GaussianMixture(2, 3, covariance="full"),
        lambda: StudentTMixture(2, 3),
        lambda: FlowMixture(2, 3, kind="maf", transforms=1, hidden=(8,)),
    ],
    ids=["gmm-diag", "gmm-full", "student-t", "flow-mixture"],
)
def test_trace_enum_from_the_table_equals_the_traced_elbo(build):
    x, _ = _data()
    idx = torch.arange(0, 240, 3)
    _compare(lambda: _initialized(build(), EmptyGuide(), x), TableEnum_ELBO, lambda: TraceEnum_ELBO(max_plate_nesting=1), x, idx)


def test_trace_enum_with_a_guide_that_states_its_posterior_equals_the_traced_elbo():
    """y enumerated in the guide: the exact expectation under q(y|x), differentiable through the encoder."""
    x, _ = _data()
    idx = torch.arange(0, 240, 3)

    def pair():
        model = FlowMixture(2, 3, kind="maf", transforms=1, hidden=(8,)).initialize(x, seed=0)
        guide = ClusterEncoder(2, 3, hidden=(8,), temperature=2.0).initialize(x, seed=0)
        return model, guide

    _compare(pair, TableEnum_ELBO, lambda: TraceEnum_ELBO(max_plate_nesting=1), x, idx, guide_grads=True)


def test_trace_enum_with_the_e_step_guide_equals_the_traced_elbo():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 64, generator=g)

    def pair():
        model = NeuralMixture(64, 4, hidden=(16,), augment=True)
        model.initialize(x, seed=0)
        return model, PosteriorGuide(model)

    _compare(pair, TableEnum_ELBO, lambda: TraceEnum_ELBO(max_plate_nesting=1), x, torch.arange(0, 200, 2))


def test_nce_from_the_table_equals_the_traced_objective():
    x, _ = _data()
    idx = torch.arange(0, 240, 2)
    noise = NCE().draw_noise(x)
    noise = [noise[0][: len(idx)]]
    _compare(
        lambda: _initialized(EnergyMixture(2, 3, features="quadratic"), EmptyGuide(), x), NCE, _traced(NCE), x, idx,
        noise_samples=noise,
    )  # fmt: skip


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_em_from_the_tables_equals_the_traced_em(augment):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 64, generator=g)
    idx = torch.arange(0, 200, 2)

    def pair():
        model = NeuralMixture(64, 4, hidden=(16,), augment=augment)
        model.initialize(x, seed=0)
        return model, PosteriorGuide(model)

    _compare(pair, EM, _traced(EM), x, idx)


def test_training_through_the_table_matches_training_through_traces():
    """SVI optimizes the restated parameters: the same fit, step for step."""
    x, _ = _data()
    fits = []
    for loss in (TableEnum_ELBO(), TraceEnum_ELBO(max_plate_nesting=1)):
        model = GaussianMixture(2, 3, covariance="full")
        model.initialize(x[:30], seed=0)  # a poor start, so that training moves far
        mixzoo.fit(model, EmptyGuide(), x, loss=loss, epochs=4, batch_size=60, lr=0.05, seed=0, progress=False)
        fits.append(model)
    start = GaussianMixture(2, 3, covariance="full").initialize(x[:30], seed=0)
    assert (fits[0].loc - start.loc).abs().max() > 0.05
    for a, b in zip(fits[0].parameters(), fits[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _traced_every_time(model, guide, x, **kwargs):
    calls = _Calls(model)
    loss = TableEnum_ELBO()
    with isolated_param_store():
        for _ in range(3):
            loss.loss_and_grads(model, guide, x, **kwargs)
    return calls.n


def test_labels_are_scored_by_the_trace():
    x, labels = _data()
    model = GaussianMixture(2, 3).initialize(x, seed=0)
    assert _traced_every_time(model, EmptyGuide(), x, y=labels, subsample=None) >= 3
    assert _traced_every_time(model, EmptyGuide(), x) == 2  # the traced check and the structure trace, once


def test_a_subclass_that_rescores_in_forward_is_traced():
    class Tempered(GaussianMixture):
        def forward(self, x, y=None, subsample=None):
            with poutine.scale(scale=0.5):
                super().forward(x, y, subsample)

    x, _ = _data()
    model = Tempered(2, 3).initialize(x, seed=0)
    assert _traced_every_time(model, EmptyGuide(), x) >= 3


def test_a_global_latent_site_keeps_the_trace():
    class WithPrior(GaussianMixture):
        def forward(self, x, y=None, subsample=None):
            pyro.sample("w", dist.Normal(0.0, 1.0))
            super().forward(x, y, subsample)

        def log_joint(self, x):
            return super().log_joint(x)

    x, _ = _data()
    model = WithPrior(2, 3).initialize(x, seed=0)
    assert _traced_every_time(model, EmptyGuide(), x) >= 3


def test_an_outside_handler_keeps_the_trace():
    x, _ = _data()
    model = GaussianMixture(2, 3).initialize(x, seed=0)
    guide, calls, loss = EmptyGuide(), _Calls(model), TableEnum_ELBO()
    with isolated_param_store():
        loss.loss_and_grads(model, guide, x)
        traced = calls.n
        with poutine.scale(scale=0.5):
            half = loss.loss(model, guide, x)
        assert calls.n == traced + 1
        assert half == pytest.approx(0.5 * loss.loss(model, guide, x), rel=1e-6)
        assert calls.n == traced + 1


def test_a_copied_model_is_a_new_pair():
    x, _ = _data()
    model = GaussianMixture(2, 3).initialize(x, seed=0)
    guide, loss = EmptyGuide(), TableEnum_ELBO()
    with isolated_param_store():
        loss.loss_and_grads(model, guide, x)
        twin = copy.deepcopy(model)
        calls = _Calls(twin)
        loss.loss_and_grads(twin, guide, x)
        assert calls.n >= 1
        traced = calls.n
        loss.loss_and_grads(twin, guide, x)
    assert calls.n == traced
