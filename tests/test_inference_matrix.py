"""Every (model, guide, loss) the registries allow trains; every one they refuse is refused with its reason.

The valid triples are not listed here: they come from what each family's model class declares, the guides'
requirements and the algorithms' (``Family.inference_table``), for every registered family and for a user's model
file written to the contract of docs/your-model.md. Each valid triple trains a few epochs on a small data set with finite epoch
losses, to a loss on all of the data below the one it started from (both measured with the same random draws, so that
the noise of a sampling estimator does not decide), and twice with the same seed to the same clusters; each refused
one ends before any data are read with one ``mixzoo: error:`` line that says which requirement fails.

One exception, by declaration: a model that states its own E-step (:class:`~mixzoo.contract.StatesPosterior`, the
neural mixture's softmax of its scores, Tissera et al. eq. 5) under a guide held at it. That E-step is not the
model's exact posterior, so neither the ELBO at it nor the EM objective need fall while the E-step sharpens; there the
test asks that training moved the model.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import QUICK, QUICK_OPTIONS

import mixzoo.app.runs
from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_fit
from mixzoo.app.user_model import user_family
from mixzoo.guides import get_guide
from mixzoo.models import MODELS

USER_MODEL = '''
import pyro, pyro.distributions as dist, torch


class MyMixture(pyro.nn.PyroModule):
    """Unit-variance Gaussian components with learned means, written to the contract of docs/your-model.md (no log_joint)."""

    def __init__(self, dim, n_clusters):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.randn(n_clusters, dim))

    def initialize(self, x, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.as_tensor(x)
        with torch.no_grad():
            self.loc.copy_(x[torch.randperm(len(x), generator=g)[: len(self.loc)]])

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(self.loc))),
                            obs=None if y is None else y[idx], infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])
'''


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_model.py"
    path.write_text(USER_MODEL)
    return f"{path}:MyMixture"


def _triples(valid: bool) -> list[tuple[str, str, str]]:
    out = []
    for name, family in MODELS.items():
        for guide, row in family.inference_table().items():
            for loss, why in row.items():
                if (why is None) == valid:
                    out.append((name, guide, loss))
    return out


VALID = _triples(True)
REFUSED = _triples(False)
USER_VALID = ["empty/trace-enum", "empty/nce", *(f"posterior/{a}" for a in ("em", "trace-enum", "trace", "trace-graph", "vimco", "rws")),
              *(f"encoder/{a}" for a in ("trace-enum", "trace", "trace-graph", "vimco", "rws"))]  # fmt: skip


MATRIX = {**QUICK, "epochs": 4, "batch_size": 64}
"""Several steps an epoch, so that the epoch loss of a sampling estimator averages a few minibatches."""


def _quick(model: str, guide: str, loss: str, **more) -> FitConfig:
    options = QUICK_OPTIONS.get(model, {})
    return FitConfig(model=model, guide=guide, loss=loss, **{**MATRIX, **more}, options=options, threads=1)


def _check_training(model: str, guide: str, loss: str) -> None:
    first = run_fit(_quick(model, guide, loss, seed=1), progress=False)
    second = run_fit(_quick(model, guide, loss, seed=1), progress=False)
    history = first["final_loss"]
    assert math.isfinite(history), (model, guide, loss, first)
    for key in ("acc", "nmi", "final_loss", "expected_misclassified"):
        assert first[key] == second[key], (key, first[key], second[key])  # seeded determinism
    assert first["clusters_used"] >= 1


SURROGATES = ("vimco", "rws", "trace-graph")
"""Losses whose differentiable value is a surrogate for the gradient, or which have none: measured by ``loss()``."""


def _objective(loss, model, guide, x) -> float:
    """The loss per point on all of ``x``, with the random draws of seed 0 (common random numbers), as training sees
    it (in training mode: the neural mixture normalizes its scores with the statistics of the batch, here all of x),
    on copies (a pass in training mode updates running statistics)."""
    import copy

    from mixzoo.inference import algorithm_of
    from mixzoo.param_store import isolated_param_store

    model, guide = copy.deepcopy((model, guide))
    with torch.random.fork_rng(devices=[]), isolated_param_store():
        torch.manual_seed(0)
        if algorithm_of(loss) is not None and algorithm_of(loss).name in SURROGATES:
            return float(loss.loss(model, guide, x)) / len(x)
        return float(loss.differentiable_loss(model, guide, x).detach()) / len(x)


def _record_training(monkeypatch) -> list[tuple[list[float], float, float, bool]]:
    """What each fit of the next runs did: its epoch losses, the loss on all of the data before and after, and
    whether it changed the model's parameters."""
    from mixzoo.training import loop

    fit, seen = loop.fit, []

    def recording_fit(model, guide, x, **kwargs):
        before = [p.detach().clone() for p in model.parameters()]
        start = _objective(kwargs["loss"], model, guide, x)
        result = fit(model, guide, x, **kwargs)
        end = _objective(kwargs["loss"], model, guide, x)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        seen.append((list(result.losses), start, end, moved))
        return result

    monkeypatch.setattr(mixzoo.app.restarts, "fit", recording_fit)
    return seen


SAMPLED = ("trace", "trace-graph", "vimco", "rws")
"""Losses whose gradients are Monte Carlo estimates: from a start that is already a fit (the Gaussian mixture's
best-of-several k-means++ start, its encoder at the posterior), a few noisy steps may lose a little."""


def _check_progress(
    name: str, losses: list[float], start: float, end: float, moved: bool, falls: bool = True, sampled: bool = False
) -> None:
    assert len(losses) >= 4 and all(math.isfinite(v) for v in [*losses, start, end]), (name, losses, start, end)
    assert moved, f"{name}: training left the model's parameters as they were"
    if falls:
        slack = 0.01 * abs(start) if sampled else 0.0
        assert end < start + slack, f"{name}: the loss on all of the data rose from {start:.4f} to {end:.4f}"


@pytest.mark.parametrize(("model", "guide", "loss"), VALID, ids=[f"{m} {g}/{a}" for m, g, a in VALID])
def test_every_valid_triple_of_a_family_trains(model, guide, loss, monkeypatch):
    seen = _record_training(monkeypatch)
    _check_training(model, guide, loss)
    own_estep = MODELS[model].capabilities.states_posterior and get_guide(guide).held_fixed
    _check_progress(f"{model} {guide}/{loss}", *seen[0], falls=not own_estep, sampled=loss in SAMPLED)


@pytest.mark.parametrize("pair", USER_VALID)
def test_every_valid_pair_trains_a_users_model(pair, user_model, monkeypatch):
    guide, loss = pair.split("/")
    table = user_family(user_model).inference_table()
    assert table[guide][loss] is None  # derived from the class, not listed
    seen = _record_training(monkeypatch)
    _check_training(user_model, guide, loss)
    _check_progress(f"your model {guide}/{loss}", *seen[0])


def test_the_users_table_is_exactly_what_its_capabilities_allow(user_model):
    table = user_family(user_model).inference_table()
    valid = sorted(f"{g}/{loss}" for g, row in table.items() for loss, why in row.items() if why is None)
    assert valid == sorted(USER_VALID)


class _DataRead(Exception):
    pass


@pytest.mark.parametrize(("model", "guide", "loss"), REFUSED, ids=[f"{m} {g}/{a}" for m, g, a in REFUSED])
def test_every_refused_triple_says_why_before_the_data_are_read(model, guide, loss, capsys, monkeypatch):
    def read(config, **_):
        raise _DataRead

    monkeypatch.setattr(mixzoo.app.runs, "load_data", read)
    assert main(["fit", "--model", model, "--guide", guide, "--loss", loss]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    why = MODELS[model].reason(guide, loss)
    assert len(err) == 1 and err[0] == f"mixzoo: error: model {model!r} cannot be trained this way: {why}."
    assert why.startswith(f"guide {guide!r}") or why.startswith(f"loss {loss!r}")


def test_models_json_gives_each_familys_table(capsys):
    assert main(["models", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["models"]) == set(MODELS) and set(record["losses"]) >= {"trace-enum", "em", "nce", "vimco", "rws"}
    for name, family in MODELS.items():
        entry = record["models"][name]
        valid = {(g, loss) for g, losses in entry["valid"].items() for loss in losses}
        assert valid == {(m_g, m_l) for m, m_g, m_l in VALID if m == name}
        assert entry["default"] == {"guide": family.default_guide, "loss": family.default_loss}
        assert (family.default_guide, family.default_loss) in valid
    assert record["models"]["energy-mixture"]["valid"] == {"empty": ["nce"]}  # normalized only through NCE
    assert "normalized" in record["models"]["energy-mixture"]["refused"]["posterior"]["em"]
