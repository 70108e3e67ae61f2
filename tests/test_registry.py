"""The registries: families, guides and algorithms compose by what they declare; one plan serves every interface."""

from __future__ import annotations

import json

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import mixzoo
from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig, config_from_json
from mixzoo.contract import ModelCapabilities
from mixzoo.data.shape import DataShape
from mixzoo.errors import MixzooInputError
from mixzoo.guides import GUIDES
from mixzoo.inference import ALGORITHMS
from mixzoo.models import MODELS
from mixzoo.models.family import Family, Inference, Plan, Training, register


def test_option_names_are_one_namespace():
    """Family, guide and loss options become flags side by side: no name may mean two things (the same option
    shared by several losses, such as ``particles``, is one flag)."""
    roles: dict[str, set[str]] = {}
    for kind, registry in (("model", MODELS), ("guide", GUIDES), ("loss", ALGORITHMS)):
        for entry in registry.values():
            for info in entry.options.infos():
                roles.setdefault(info.name, set()).add(kind)
    clashes = {name: kinds for name, kinds in roles.items() if len(kinds) > 1}
    assert not clashes, clashes


def test_capabilities_are_read_from_the_class_without_building_it():
    class Bare(pyro.nn.PyroModule):
        def forward(self, x, y=None, subsample=None):
            pass

    class Rich(Bare):
        local_latents = ("z",)
        normalized = False

        def log_joint(self, x):
            pass

        def sample(self, n, generator=None, clusters=None):
            pass

    bare, rich = ModelCapabilities.of(Bare), ModelCapabilities.of(Rich)
    assert bare.enumerable_y and bare.normalized and not bare.states_log_joint and not bare.samples
    assert not rich.enumerable_y and not rich.normalized and rich.states_log_joint and rich.samples
    assert ModelCapabilities.of(mixzoo.GaussianMixture).closed_form_em
    assert not ModelCapabilities.of(mixzoo.StudentTMixture).closed_form_em


def test_a_family_whose_defaults_do_not_compose_is_refused_at_registration():
    class Energy(pyro.nn.PyroModule):
        normalized = False

        def forward(self, x, y=None, subsample=None):
            pass

    from dataclasses import dataclass

    from mixzoo.options import Options

    @dataclass(frozen=True)
    class BrokenOptions(Options):
        pass

    family = Family(
        name="broken", description="", cite="", options=BrokenOptions, model=Energy,
        build=lambda d, k, o: Energy(), default_guide="posterior", default_loss="em",
        plan=lambda o, data, inference: Plan(o, Training(1, 1e-3)),
    )  # fmt: skip
    with pytest.raises(ValueError, match="loss 'em' needs a normalized model"):
        register(family)
    assert "broken" not in MODELS


def test_inference_table_of_a_class_and_of_a_name():
    class Mine(pyro.nn.PyroModule):
        def __init__(self, dim, n_clusters):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.zeros(n_clusters, dim))

        def forward(self, x, y=None, subsample=None):
            with pyro.plate("data", len(x), subsample=subsample) as idx:
                k = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(self.loc))), infer={"enumerate": "parallel"})
                pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])

    table = mixzoo.inference_table(Mine)
    assert table["posterior"]["em"] is None and table["encoder"]["rws"] is None and table["empty"]["nce"] is None
    assert "draws the cluster from the guide" in table["empty"]["vimco"]
    assert "gmvae family's own guide" in table["qzxy"]["vimco"]
    assert mixzoo.inference_table("gmvae")["qzxy"]["vimco"] is None


def test_an_old_run_config_reads_in_todays_terms():
    old = {"model": "flow-mixture", "guide": "encoder", "loss": "trace-enum", "particles": 3,
           "options": {"flow": "maf", "temperature": 4.0, "encoder_hidden": [8, 8]}}  # fmt: skip
    c = config_from_json(old, "old-run")
    assert c.loss_options == {"particles": 3} and c.options == {"flow": "maf"}
    assert c.guide_options == {"temperature": 4.0, "encoder_hidden": [8, 8]}
    assert config_from_json({"model": "neural-mixture", "guide": "e-step", "loss": "em"}, "r").guide == "posterior"
    assert config_from_json({"model": "gmm", "guide": "empty", "loss": "em"}, "r").guide == "posterior"
    assert config_from_json({"model": "gmm", "guide": "empty", "loss": "trace-enum"}, "r").guide == "empty"
    with pytest.raises(MixzooInputError, match="unknown entries: \\['nonsense'\\]"):
        config_from_json({"model": "gmm", "nonsense": 1}, "r")


def test_the_estimator_applies_the_plan_the_command_line_applies(tmp_path, capsys):
    """On 120 features the Gaussian mixture's plan clusters 50 principal components: from the command line and from
    the estimator alike, and the estimator applies the same reduction to new points."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(3, 120))
    x = np.concatenate([c + rng.normal(size=(80, 120)) for c in centres]).astype(np.float32)
    np.save(tmp_path / "wide.npy", x)
    assert main(["fit", "--model", "gmm", "--data", str(tmp_path / "wide.npy"), "--clusters", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    est = mixzoo.MixtureClusterer("gmm", 3, random_state=0).fit(x)
    assert record["pca"] == 50 and est.config_.pca == 50 and est.config_.dim == 50
    assert est.config_.epochs == 300 and est.config_.tol == 1e-4  # the plan's, for closed-form EM
    assert est.preprocessing_ is not None and est.model_.dim == 50
    new = x[:5] + 0.01
    assert est.predict(new).tolist() == est.labels_[:5].tolist()
    assert est.score_samples(new).shape == (5,)


def test_a_plan_chooses_options_for_the_data_and_keeps_the_users():
    flow = MODELS["flow-mixture"]
    wide = flow.plan(flow.make_options(), DataShape(3000, 50), Inference("empty", "trace-enum"))
    assert (wide.options.flow, wide.options.base, wide.training.epochs) == ("maf", "clusters", 30)
    mine = flow.plan(flow.make_options(flow="nsf"), DataShape(3000, 50), Inference("empty", "trace-enum", given=frozenset({"flow"})))
    assert mine.options.flow == "nsf" and mine.options.base == "clusters"
    c = FitConfig(model="flow-mixture", guide="encoder", guide_options={"temperature": 2.0}).resolved()
    from mixzoo.app.planning import planned

    planned_c, _ = planned(c, DataShape(2000, 2), 2)
    assert planned_c.guide_options == {"temperature": 2.0, "temperature_decay": 0.98, "encoder_start": "none"}


def test_mixzoo_run_is_mixzoo_fit_from_python(tmp_path):
    run = mixzoo.run("gmm", data="pinwheel", out=str(tmp_path / "run"))
    assert run.config.guide == "posterior" and run.config.loss == "em" and run.metrics["acc"] > 0.95
    assert run.proba.shape == (len(run.data.x), 5) and (tmp_path / "run" / "checkpoint.pt").is_file()
    again = mixzoo.cluster_proba(run.model, run.guide, run.data.x, temperature=run.temperature).numpy()
    np.testing.assert_allclose(again, run.proba, atol=1e-6)
    assert run.temperature == run.record["calibration"]["temperature"] > 1.0
    with pytest.raises(MixzooInputError, match="unknown setting\\(s\\) epoch"):
        mixzoo.run("gmm", data="pinwheel", epoch=3)


def test_fit_takes_guide_and_loss_names_and_checks_them_first():
    x = mixzoo.load_dataset("pinwheel").x
    model = mixzoo.GaussianMixture(2, 5).initialize(x, seed=0)
    result = mixzoo.fit(model, "encoder", x, loss="vimco", loss_options={"particles": 3}, epochs=2, progress=False)
    assert isinstance(result.guide, mixzoo.ClusterEncoder) and result.loss.num_particles == 3
    with pytest.raises(MixzooInputError, match="loss 'nce' scores the model with y summed out"):
        mixzoo.fit(model, "encoder", x, loss="nce", epochs=1, progress=False)
    with pytest.raises(MixzooInputError, match="unknown guide 'nope'"):
        mixzoo.fit(model, "nope", x, epochs=1, progress=False)
    with pytest.raises(MixzooInputError, match="guide 'qzxy' is the gmvae family's own guide"):
        mixzoo.fit(model, "qzxy", x, epochs=1, progress=False)
    with pytest.raises(MixzooInputError, match="option\\(s\\) speed do not apply to guide 'encoder'"):
        mixzoo.fit(model, "encoder", x, guide_options={"speed": 1}, epochs=1, progress=False)
