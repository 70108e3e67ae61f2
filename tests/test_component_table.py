"""ComponentTable: the Gaussian mixture's observation site scored from one (B, K) table gives the loss and
gradients of the component distribution it replaces, enumerated and with labels observed."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from mixzoo.guides import EmptyGuide
from mixzoo.models import GaussianMixture
from mixzoo.nets.component_scores import ComponentTable


def _reference(model: GaussianMixture):
    """The same model with ``x`` scored by the component distribution, broadcast over the enumerated index."""

    def run(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("y", dist.Categorical(model.weights), obs=y, infer={"enumerate": "parallel"})
            pyro.sample("x", model.component(k), obs=x)

    return run


def _loss_and_grads(model_fn, module: GaussianMixture, x, y=None) -> tuple[float, list[torch.Tensor]]:
    module.zero_grad()
    pyro.clear_param_store()
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model_fn, EmptyGuide(), x, y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("covariance", ["diag", "full"])
@pytest.mark.parametrize("labelled", [False, True])
def test_table_gives_the_component_distributions_loss_and_gradients(covariance, labelled):
    torch.manual_seed(0)
    x = torch.randn(40, 3, dtype=torch.float64) * 2
    model = GaussianMixture(3, 4, covariance=covariance).double()
    with torch.no_grad():
        model.logits.normal_()
        model.log_scale.normal_(0, 0.3)
        if covariance == "full":
            model.tril.normal_(0, 0.3)
    y = torch.randint(0, 4, (40,)) if labelled else None
    loss, grads = _loss_and_grads(model, model, x, y)
    ref_loss, ref_grads = _loss_and_grads(_reference(model), model, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


def test_enumerated_index_reads_one_row_per_component():
    table = torch.arange(6.0).view(3, 2)  # 3 points, 2 components
    k = torch.arange(2).view(2, 1)
    lp = ComponentTable(table, k, dim=5).log_prob(torch.zeros(3, 5))
    assert torch.equal(lp, table.T)
    assert torch.equal(
        ComponentTable(table, torch.tensor([1, 0, 1]), dim=5).log_prob(torch.zeros(3, 5)), torch.tensor([1.0, 2.0, 5.0])
    )


def test_other_points_than_the_tables_are_refused():
    with pytest.raises(ValueError, match="scores the 3 points"):
        ComponentTable(torch.zeros(3, 2), torch.arange(2).view(2, 1), dim=5).log_prob(torch.zeros(4, 5))


@pytest.mark.parametrize("k_shape", [(7,), (4, 1), (4, 1, 1), (3, 4, 1)])
def test_pick_is_vindex_in_values_and_gradients(k_shape):
    from pyro.ops.indexing import Vindex

    from mixzoo.nets.component_scores import pick

    torch.manual_seed(0)
    table = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randint(0, 4, k_shape) if k_shape != (4, 1) else torch.arange(4).view(4, 1)
    rows = torch.arange(7)
    expected = Vindex(table)[rows, k]
    got = pick(table, k)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
    weights = torch.randn(expected.shape, dtype=torch.float64)
    (g_expected,) = torch.autograd.grad((expected * weights).sum(), table)
    (g_got,) = torch.autograd.grad((got * weights).sum(), table)
    torch.testing.assert_close(g_got, g_expected)
