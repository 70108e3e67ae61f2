import numpy as np
import pytest
import torch


@pytest.fixture
def blobs():
    """Three well separated 2-D Gaussian clusters with known means and weights."""
    rng = np.random.default_rng(0)
    means = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    weights = np.array([0.5, 0.3, 0.2])
    n = 1500
    labels = rng.choice(3, size=n, p=weights)
    x = means[labels] + rng.standard_normal((n, 2)) * np.array([[0.5, 1.0]])
    return torch.tensor(x, dtype=torch.float32), labels, means, weights


QUICK = {"data": "moons", "epochs": 3, "subsample": 300}
"""A configuration every family trains in a second or two (the test matrix's)."""

QUICK_OPTIONS = {"flow-mixture": {"transforms": 1}, "gmvae": {"pretrain": 1}}
"""Family options that keep the quick configuration quick (a new family needs none)."""


def quick_config(name, **more):
    """The quick FitConfig of a family (or a user's model), with ``more`` over it."""
    from mixzoo.app.config import FitConfig

    options = {**QUICK_OPTIONS.get(name, {}), **more.pop("options", {})}
    return FitConfig(model=name, **{**QUICK, **more}, options=options)


def planned(config):
    """``(config, x, plan)``: a quick config resolved and planned on its data, as ``mixzoo fit`` does."""
    from mixzoo.app.planning import plan_for
    from mixzoo.app.runs import load_data
    from mixzoo.data.validation import check_data

    c = config.resolved()
    data, _ = load_data(c, as_read=True)
    c, data, plan = plan_for(c, data)
    return c, check_data(data.x), plan


def for_shape(config, shape, n_classes=10):
    """The config a family's plan makes of ``config`` for data of ``shape`` (no data needed)."""
    from mixzoo.app.planning import planned

    return planned(config.resolved(), shape, n_classes)[0]


def plan_of(name, shape=None, guide=None, loss=None, **options):
    """The plan of the family ``name`` with these options, for data of ``shape`` (200 points of 8 features)."""
    from mixzoo.data.shape import DataShape
    from mixzoo.models import get_family
    from mixzoo.models.family import Inference

    family = get_family(name)
    inference = Inference(guide or family.default_guide, loss or family.default_loss, given=frozenset(options))
    return family.plan(family.make_options(options), shape or DataShape(200, 8), inference)


def random_gmm(covariance, d=3, k=4, seed=0):
    """A Gaussian mixture whose every parameter (weights, means, spreads, correlations) is away from its start."""
    from mixzoo.models.gmm import GaussianMixture

    torch.manual_seed(seed)
    model = GaussianMixture(d, k, covariance=covariance)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model
