"""Same seed, same device: two runs of every model family give identical metrics and losses."""

import pytest

from mixzoo.config import FitConfig
from mixzoo.models import MODELS
from mixzoo.runs import run_fit

CASES = {
    "gmm": dict(data="moons", epochs=5),
    "flow-mixture": dict(data="moons", epochs=2, subsample=300, guide="encoder", options={"transforms": 1}),
    "energy-mixture": dict(data="moons", epochs=3, subsample=300),
    "neural-mixture": dict(data="digits", epochs=2, subsample=300),
    "gmvae": dict(data="digits", epochs=2, subsample=300, options={"pretrain": 1}),
}


def test_every_model_family_is_covered():
    assert set(CASES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_same_metrics(name):
    records = [run_fit(FitConfig(model=name, seed=7, n_init=1, **CASES[name]), progress=False) for _ in range(2)]
    for key in ("acc", "nmi", "ari", "final_loss", "expected_misclassified"):
        assert records[0][key] == records[1][key], key
