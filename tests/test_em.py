import math

import pytest
import torch
import torch.nn.functional as F
from pyro.infer import TraceEnum_ELBO

import mixzoo
from mixzoo.errors import MixzooInputError
from mixzoo.guides import EmptyGuide, PosteriorGuide
from mixzoo.inference import EM, make_loss
from mixzoo.models import GaussianMixture, NeuralMixture
from mixzoo.param_store import isolated_param_store


@pytest.fixture
def pair():
    torch.manual_seed(0)
    x = torch.randn(64, 2) * torch.tensor([2.0, 0.5])
    model = NeuralMixture(2, 3, hidden=(8,), gamma=5.0)
    model.initialize(x, seed=0)
    return model, PosteriorGuide(model), x


def _grads(loss: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.net.parameters())))


def _eq6(model: NeuralMixture, xb: torch.Tensor, x_aug: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's eq. (6) (eq. (7) with x_aug), written out by hand."""

    def norm(a: torch.Tensor) -> torch.Tensor:
        return (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + model.norm.eps)

    a_star = norm(model.relevance(xb))
    p = F.softmax(a_star, -1).detach()
    log_h = F.logsigmoid(a_star / model.gamma)
    if x_aug is not None:
        log_h = log_h + F.logsigmoid(norm(model.relevance(x_aug)) / model.gamma)
    return -(p * log_h).sum(-1).mean()


def test_em_gradient_equals_eq6_gradient(pair):
    model, guide, x = pair
    n = x.shape[0]
    with isolated_param_store():
        loss = EM().differentiable_loss(model, guide, x)
        got = _grads(loss, model)
    want = _grads(n * _eq6(model, x), model)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert max(float(w.abs().max()) for w in want) > 1e-3  # a real gradient, not zeros
    # value: N * eq. (6) plus the constant prior term -sum_n sum_k p log(1/K) = N log K, minus the E-step's entropy
    # (no gradient): the negative ELBO at the E-step
    with torch.no_grad():
        a = model.relevance(x)
        p = F.softmax((a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + model.norm.eps), -1)
        entropy = float(-(p * p.log()).sum())
    torch.testing.assert_close(float(loss), float(n * _eq6(model, x)) + n * math.log(3) - entropy, rtol=1e-5, atol=1e-4)


def test_em_gradient_on_a_minibatch_is_scaled_by_n_over_b(pair):
    model, guide, x = pair
    idx = torch.arange(5, 37)
    with isolated_param_store():
        got = _grads(EM().differentiable_loss(model, guide, x, None, idx), model)
    want = _grads(x.shape[0] * _eq6(model, x[idx]), model)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_em_gradient_with_augmented_inputs_equals_eq7(pair):
    model, guide, x = pair
    x_aug = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with isolated_param_store():
        got = _grads(EM().differentiable_loss(model, guide, x, None, None, x_aug=x_aug), model)
    want = _grads(x.shape[0] * _eq6(model, x, x_aug), model)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_trace_enum_has_the_same_gradient_and_the_same_value(pair):
    """With q held fixed, the enumerated ELBO and EM have the same gradient; EM reports the negative ELBO at the
    E-step, so the values agree too."""
    model, guide, x = pair
    with isolated_param_store():
        em = EM().differentiable_loss(model, guide, x)
        em_grad = _grads(em, model)
        te = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
        te_grad = _grads(te, model)
    for g, w in zip(em_grad, te_grad, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(float(em), float(te), rtol=1e-5, atol=1e-3)


def test_em_is_registered_and_refuses_a_guide_without_y(blobs):
    assert isinstance(make_loss("em"), EM)
    x = blobs[0][:200]
    with pytest.raises(MixzooInputError, match="loss 'em' needs the E-step as its guide"):  # the declared traits
        mixzoo.fit(GaussianMixture(2, 3), EmptyGuide(), x, loss=EM(), epochs=1, progress=False)

    def undeclared(x, y=None, subsample=None):  # a guide that declares nothing: its trace is the proof
        return None

    with pytest.raises(MixzooInputError, match="site 'y'"):
        mixzoo.fit(GaussianMixture(2, 3), undeclared, x, loss=EM(), epochs=1, progress=False)


def test_loss_and_grads_matches_differentiable_loss(pair):
    model, guide, x = pair
    with isolated_param_store():
        value = float(EM().differentiable_loss(model, guide, x))
        assert EM().loss(model, guide, x) != pytest.approx(value)  # loss() uses running statistics (no grad)
        assert EM().loss_and_grads(model, guide, x) == pytest.approx(value, rel=1e-6)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.net.parameters())


def test_em_refuses_a_guide_with_parameters_of_its_own(blobs):
    """EM holds q(y|x) fixed: an encoder guide's weights would silently never train."""
    from mixzoo.guides import ClusterEncoder
    from mixzoo.models import FlowMixture

    x = blobs[0][:200]
    model = FlowMixture(2, 3, hidden=(8,)).initialize(x)
    guide = ClusterEncoder(2, 3, hidden=(8,)).initialize(x)
    before = [p.detach().clone() for p in guide.parameters()]
    with pytest.raises(MixzooInputError, match="loss 'em' needs the E-step as its guide"):
        mixzoo.fit(model, guide, x, loss=EM(), epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters(), strict=True))

    def undeclared(x, y=None, subsample=None):  # the same guide, declaring nothing: its trace is the proof
        return guide(x, y, subsample)

    with pytest.raises(MixzooInputError, match=r"guide's own parameters \(guide\.net.*would never train"):
        mixzoo.fit(model, undeclared, x, loss=EM(), epochs=1, progress=False)


class _ImportanceTraceEM(EM):
    """EM on Pyro's get_importance_trace (guide score parts, pruned copies, validation on every trace)."""

    def _get_trace(self, model, guide, args, kwargs):
        from pyro.infer.enum import get_importance_trace
        from pyro.poutine.enum_messenger import EnumMessenger

        guide = EnumMessenger(first_available_dim=-1 - self.max_plate_nesting)(guide)
        return get_importance_trace("flat", self.max_plate_nesting, EnumMessenger()(model), guide, args, kwargs)


@pytest.mark.parametrize("augmented", [False, True])
def test_em_loss_and_gradient_equal_those_on_pyros_importance_trace(pair, augmented):
    import copy

    start, _, x = pair
    idx = torch.arange(3, 40)
    x_aug = x[idx] + 0.1 if augmented else None
    results = []
    for loss in (EM(), _ImportanceTraceEM()):
        model = copy.deepcopy(start)  # each path from the same running statistics
        guide = PosteriorGuide(model)
        with isolated_param_store():
            value = loss.differentiable_loss(model, guide, x, None, idx, x_aug=x_aug)
            results.append((float(value), _grads(value, model), loss.loss(model, guide, x, None, idx, x_aug=x_aug)))
    (v, g, nograd), (v_ref, g_ref, nograd_ref) = results
    assert v == v_ref and nograd == nograd_ref
    for a, b in zip(g, g_ref, strict=True):
        assert torch.equal(a, b)


def test_svi_steps_with_em_reach_the_parameters_of_the_reference_path(blobs):
    """Seeded SVI steps under EM and under the importance-trace EM give the same losses and parameters."""
    from pyro.infer import SVI

    from mixzoo.inference.optimizer import JointOptim

    x = torch.as_tensor(blobs[0][:300], dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(x), generator=g)[:64] for _ in range(5)]
    runs = []
    for loss in (EM(), _ImportanceTraceEM()):
        model = NeuralMixture(2, 3, hidden=(8,)).initialize(x, seed=0)
        with isolated_param_store():
            svi = SVI(model, PosteriorGuide(model), JointOptim(torch.optim.Adam, {"lr": 1e-2}), loss)
            losses = [svi.step(x, None, idx) for idx in batches]
        runs.append((losses, [t.detach().clone() for t in (*model.parameters(), *model.buffers())]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert torch.equal(a, b)


def test_em_validates_each_model_guide_pair_once():
    from mixzoo.inference.validated import ValidatedPairs

    class Program(torch.nn.Module):
        def forward(self):
            return None

    model, guide, other = Program(), Program(), Program()
    seen = ValidatedPairs()
    assert seen.first(model, guide) and not seen.first(model, guide)
    assert seen.first(model, other) and seen.first(guide, model)

    class Slotted:  # no weak references: every call counts as new
        __slots__ = ()

        def __call__(self):
            return None

    unreferenced = Slotted()
    assert seen.first(unreferenced, guide) and seen.first(unreferenced, guide)
