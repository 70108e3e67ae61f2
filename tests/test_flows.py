import numpy as np
import pytest
import torch
from conftest import for_shape
from pyro.infer import TraceEnum_ELBO

import mixzoo
from mixzoo.data.labels import oversample_labelled, reveal_labels
from mixzoo.guides import ClusterEncoder, EmptyGuide
from mixzoo.inference.schedules import ExponentialDecay, StepDecay
from mixzoo.models import FlowMixture
from mixzoo.nets.flows import ComponentFlows


def _perturbed(flows: torch.nn.Module, scale: float = 0.2, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flows.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return flows


@pytest.mark.parametrize("kind, independent", [("maf", True), ("nsf", True), ("maf", False), ("realnvp", False)])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 5e-5)])
def test_batched_log_prob_equals_per_component_loop(kind, independent, dtype, atol):
    """Equal to rounding: in float32 the spline's knots are rounded differently from zuko's softmax kernel, which
    narrow bins amplify to about 1e-5 in a log density; in float64 the two agree to 1e-10."""
    torch.manual_seed(0)
    flows = _perturbed(ComponentFlows(3, 4, kind=kind, independent=independent, hidden=(16,), base="paper")).to(dtype)
    x = torch.randn(200, 3, dtype=dtype)
    batched = flows.log_prob(x)
    loop = torch.stack([flows.component_log_prob(x, k) for k in range(4)], dim=1)
    assert batched.shape == (200, 4)
    torch.testing.assert_close(batched, loop, rtol=1e-5 if dtype == torch.float32 else 1e-10, atol=atol)
    # components really differ (independent parameters or a component code)
    assert (batched[:, 0] - batched[:, 1]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["maf", "nsf"])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_batched_pass_matches_the_zuko_flows_in_value_and_gradient(kind, dim):
    """The batched MADE/spline pass against zuko's own flow per component, in float64: log densities and parameter
    gradients to 1e-10, inputs also outside [-5, 5] where the spline is the identity."""
    torch.manual_seed(0)
    flows = _perturbed(ComponentFlows(dim, 3, kind=kind, hidden=(16, 16), base="paper"), scale=0.3).double()
    assert (flows._steps is not None) == (dim > 1)  # one feature: zuko's element-wise transform, vmapped
    x = torch.randn(300, dim, dtype=torch.float64) * 3
    params = list(flows.parameters())
    batched = flows.log_prob(x)
    loop = torch.stack([flows.component_log_prob(x, k) for k in range(3)], dim=1)
    torch.testing.assert_close(batched, loop, rtol=1e-10, atol=1e-10)
    weights = torch.rand(300, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((batched * weights).sum(), params)
    expected = torch.autograd.grad((loop * weights).sum(), params)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10 * e.abs().max().item())
    # float32: the same up to the rounding of narrow spline bins
    flows, x = flows.float(), x.float()
    loop = torch.stack([flows.component_log_prob(x, k) for k in range(3)], dim=1)
    torch.testing.assert_close(flows.log_prob(x), loop, rtol=5e-5, atol=5e-5)


def test_batched_pass_keeps_leading_batch_dimensions():
    torch.manual_seed(0)
    flows = _perturbed(ComponentFlows(3, 4, kind="nsf", hidden=(8,)))
    x = torch.randn(5, 7, 3)
    z, ladj = flows.transform(x)
    assert z.shape == (4, 5, 7, 3) and ladj.shape == (4, 5, 7)
    z_flat, ladj_flat = flows.transform(x.reshape(35, 3))
    torch.testing.assert_close(z.reshape(4, 35, 3), z_flat)
    torch.testing.assert_close(ladj.reshape(4, 35), ladj_flat)


@pytest.mark.parametrize("kind", ["maf", "nsf", "realnvp"])
def test_each_component_density_integrates_to_one(kind):
    torch.manual_seed(0)
    flows = _perturbed(ComponentFlows(2, 3, kind=kind, independent=kind != "realnvp", hidden=(16,)), scale=0.1)
    grid = torch.linspace(-8, 8, 481)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], -1)
    with torch.no_grad():
        density = flows.log_prob(pts).exp()
    cell = (grid[1] - grid[0]) ** 2
    np.testing.assert_allclose((density.sum(0) * cell).numpy(), 1.0, atol=0.02)


def test_model_density_is_in_data_units():
    x = torch.rand(500, 2) * torch.tensor([10.0, 2.0]) + 5.0
    model = FlowMixture(2, 2, hidden=(8,), transforms=1).initialize(x)
    grid_x, grid_y = torch.linspace(-5, 25, 301), torch.linspace(1, 11, 201)
    xx, yy = torch.meshgrid(grid_x, grid_y, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], -1)
    with torch.no_grad():
        p = model.component_log_prob(pts).exp()
    cell = (grid_x[1] - grid_x[0]) * (grid_y[1] - grid_y[0])
    np.testing.assert_allclose((p.sum(0) * cell).numpy(), 1.0, atol=0.02)


def test_mle_loss_is_exact_negative_log_likelihood():
    x = torch.randn(64, 2)
    model = _perturbed(FlowMixture(2, 3, hidden=(8,)).initialize(x))
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, EmptyGuide(), x)
    assert loss == pytest.approx(-torch.logsumexp(model.log_joint(x), -1).sum().item(), rel=1e-5)


def test_enumerated_elbo_equals_hand_computed_sum_over_y():
    """The 002 paper's eq. (4.3): sum_k q(k|x) [log p(x|k) + log p(k) - log q(k|x)]."""
    x = torch.randn(50, 2)
    model = _perturbed(FlowMixture(2, 3, hidden=(8,)).initialize(x))
    guide = ClusterEncoder(2, 3, hidden=(8,), temperature=2.0).initialize(x)
    with torch.no_grad():
        log_q = torch.log_softmax(guide.logits(x) / 2.0, -1)
        inner = model.component_log_prob(x) + torch.log_softmax(model.logits, -1) - log_q
        elbo = (log_q.exp() * inner).sum()
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    assert loss == pytest.approx(-elbo.item(), rel=1e-5)


def test_labels_select_their_component_in_model_and_guide():
    x = torch.randn(40, 2)
    y = torch.full((40,), -1, dtype=torch.long)
    y[:10] = 2
    model = _perturbed(FlowMixture(2, 3, hidden=(8,)).initialize(x))
    guide = ClusterEncoder(2, 3, hidden=(8,), supervised_weight=0.0).initialize(x)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x, y)
    with torch.no_grad():
        log_q = torch.log_softmax(guide.logits(x[10:]), -1)
        log_prior = torch.log_softmax(model.logits, -1)
        unl = (log_q.exp() * (model.component_log_prob(x[10:]) + log_prior - log_q)).sum()
        # a labelled point contributes log p(x | y) alone: its prior and q are both (numerically) certain
        lab = model.component_log_prob(x[:10])[:, 2].sum()
    assert loss == pytest.approx(-(unl + lab).item(), rel=1e-4)


def test_labelled_point_trains_only_its_own_flow():
    x = torch.randn(1, 2)
    model = FlowMixture(2, 3, hidden=(8,)).initialize(torch.randn(20, 2))
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, EmptyGuide(), x, torch.tensor([1]))
    loss.backward()
    grads = torch.stack([p.grad.reshape(3, -1).abs().sum(-1) for p in model.flows.stacked.values()]).sum(0)
    assert grads[1] > 0 and grads[0] < 1e-8 and grads[2] < 1e-8


def test_semi_supervised_fit_respects_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(150, 2, generator=g) * 0.3 - 2, torch.randn(150, 2, generator=g) * 0.3 + 2])
    truth = np.repeat([0, 1], 150)
    # labels deliberately swapped relative to the k-means order: component 1 must become the left blob
    y = np.full(300, -1)
    y[:5], y[150:155] = 1, 0
    model = FlowMixture(2, 2, hidden=(16,), transforms=2).initialize(x)
    x_train, y_train = oversample_labelled(x, y)
    mixzoo.fit(model, EmptyGuide(), x_train, y=y_train, epochs=80, lr=0.01, progress=False)
    pred = mixzoo.cluster_proba(model, EmptyGuide(), x).argmax(1).numpy()
    assert (pred == 1 - truth).mean() > 0.98


def test_reveal_and_oversample_labels():
    labels = np.repeat([0, 1], 500)
    y = reveal_labels(labels, 32, seed=0)
    assert (y >= 0).sum() == 32 and (y[y >= 0] == labels[y >= 0]).all()
    assert np.bincount(y[y >= 0]).tolist() == [16, 16]
    x2, y2 = oversample_labelled(torch.zeros(1000, 2), y)
    share = (y2 >= 0).mean()
    assert 0.3 < share < 0.37 and len(x2) == len(y2)


def test_annealing_schedules():
    enc = ClusterEncoder(2, 2, hidden=(4,), temperature=5.0)
    anneal = ExponentialDecay(enc, "temperature", start=5.0, rate=0.5, floor=1.0)
    values = []
    for epoch in range(5):
        anneal(epoch)
        values.append(enc.temperature)
    assert values == [5.0, 2.5, 1.25, 1.0, 1.0]
    step = StepDecay(enc, "temperature", start=1.0, every=2, floor=0.3)
    assert [step.value(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.3, 0.3]
    with pytest.raises(AttributeError, match="no attribute 'tau'"):
        ExponentialDecay(enc, "tau", 1.0, 0.5)


def test_bad_flow_options_fail_clearly():
    with pytest.raises(ValueError, match="cannot be vmapped"):
        ComponentFlows(2, 3, kind="realnvp", independent=True)
    with pytest.raises(ValueError, match="unknown flow kind 'glow'"):
        ComponentFlows(2, 3, kind="glow")
    with pytest.raises(ValueError, match="unknown base 'uniform'"):
        FlowMixture(2, 3, base="uniform")


def test_sampling_shapes_and_components():
    model = FlowMixture(2, 3, hidden=(8,)).initialize(torch.rand(100, 2))
    x, k = model.sample(60, generator=torch.Generator().manual_seed(0))
    assert x.shape == (60, 2) and torch.isfinite(x).all() and set(k.tolist()) <= {0, 1, 2}


def test_the_paper_base_means_follow_the_run_seed():
    from mixzoo.app.config import FitConfig
    from mixzoo.app.restarts import build_pair

    def base(seed):
        c = FitConfig(model="flow-mixture", options={"base": "paper"}, clusters=3, dim=2).resolved()
        c.dim = 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _ = build_pair(c)
        return model.flows.base_loc.detach().clone()

    torch.testing.assert_close(base(0), base(0))
    assert not torch.allclose(base(0), base(1))


def test_high_dimensional_data_get_the_maf_recipe_unless_the_user_chose():
    from mixzoo.app.config import FitConfig
    from mixzoo.models.family import DataShape

    wide = for_shape(FitConfig(model="flow-mixture"), DataShape(n=30000, dim=50))
    assert wide.options == {"flow": "maf", "base": "clusters", "hidden": [128, 128]} and wide.epochs == 30
    chosen = for_shape(FitConfig(model="flow-mixture", options={"flow": "nsf"}, epochs=5), DataShape(n=30000, dim=50))
    assert chosen.options["flow"] == "nsf" and chosen.options["base"] == "clusters" and chosen.epochs == 5
    flat = for_shape(FitConfig(model="flow-mixture"), DataShape(n=2500, dim=2))
    assert flat.options == {} and flat.epochs == 250


def test_a_flow_mixture_on_integer_images_trains_on_dequantized_pixels(tmp_path):
    import json

    from mixzoo.app.config import FitConfig
    from mixzoo.app.runs import run_fit

    run = tmp_path / "run"
    record = run_fit(FitConfig(model="flow-mixture", data="digits", subsample=200, epochs=1, options={"transforms": 1}), out=str(run), progress=False)
    assert json.loads((run / "config.json").read_text())["dequantize"] is True
    assert record["n"] == 200
