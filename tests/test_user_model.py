"""A user's own model class on the command line: ``--model FILE.py:CLASS`` and ``module:CLASS``."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from cli_errors import one_error_line

from mixzoo.app.cli import main

MODEL = '''
import pyro, pyro.distributions as dist, torch


class MyMixture(pyro.nn.PyroModule):
    """A unit-variance Gaussian mixture with learned means."""

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


class NoClusterSite(pyro.nn.PyroModule):
    def __init__(self, dim, n_clusters):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            pyro.sample("x", dist.Normal(self.loc, 1.0).to_event(1), obs=x[idx])


class WrongSignature(pyro.nn.PyroModule):
    def __init__(self, k):
        super().__init__()

    def forward(self, x):
        pass
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL)
    return path


def _json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_model_file_trains_writes_a_run_and_is_evaluated_only_when_named_again(model_file, tmp_path, capsys):
    spec = f"{model_file}:MyMixture"
    run = tmp_path / "run"
    assert main(["fit", "--model", spec, "--data", "pinwheel", "--epochs", "30", "--out", str(run), "--json"]) == 0
    record = _json(capsys)
    assert record["model"] == spec and record["guide"] == "empty" and record["loss"] == "trace-enum"
    assert record["acc"] > 0.6  # 5 arms, unit-variance clusters: well above the 0.2 of one cluster
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == spec and len(saved["model_file_sha256"]) == 64
    # a run folder never imports code by itself
    assert main(["evaluate", "--run", str(run)]) == 2
    assert f"pass --model {spec}" in one_error_line(capsys)
    assert main(["evaluate", "--run", str(run), "--model", f"{model_file}:Other"]) == 2
    assert f"was made by --model {spec}, not {model_file}:Other" in one_error_line(capsys)
    assert main(["evaluate", "--run", str(run), "--model", spec, "--json"]) == 0
    assert _json(capsys)["acc"] == pytest.approx(record["acc"])
    model_file.write_text(MODEL + "\n# edited\n")
    assert main(["evaluate", "--run", str(run), "--model", spec]) == 2
    assert "changed since the run" in one_error_line(capsys)


def test_a_run_directory_imports_the_model_file_only_when_named_again(model_file, tmp_path, capsys):
    """Opening a run made by a model file must not run that file's code until --model names it again."""
    run = tmp_path / "run"
    assert main(["fit", "--model", f"{model_file}:MyMixture", "--data", "moons", "--epochs", "1", "--out", str(run)]) == 0
    # A model file that leaves a trace when imported, and not yet imported by this process (a fresh session
    # opening the run): the run now names it, as if it had been made by it.
    sentinel = tmp_path / "imported.txt"
    traced = tmp_path / "traced" / "traced_model.py"
    traced.parent.mkdir()
    traced.write_text(f"open({str(sentinel)!r}, 'a').write('imported\\n')\n" + MODEL)
    spec = f"{traced}:MyMixture"
    config = json.loads((run / "config.json").read_text())
    config.update(model=spec, model_file_sha256=hashlib.sha256(traced.read_bytes()).hexdigest())
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    for command in (["evaluate", "--run", str(run)], ["predict", "--run", str(run), "--data", "moons"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mixzoo: error: ") and f"pass --model {spec}" in err[0], err
        assert not sentinel.exists(), f"{command[0]} imported the model file before refusing"
    # named again, the file is imported (the trace works) and the run evaluates
    assert main(["evaluate", "--run", str(run), "--model", spec]) == 0
    assert sentinel.read_text() == "imported\n"


def test_a_module_path_names_a_class_too(model_file, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(model_file.parent))
    assert main(["fit", "--model", "my_model:MyMixture", "--data", "moons", "--epochs", "5", "--json"]) == 0
    assert _json(capsys)["model"] == "my_model:MyMixture"
    sys.modules.pop("my_model", None)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("nope.py:MyMixture", "does not exist"),
        (":Missing", "has no class 'Missing'; its model classes are: MyMixture, NoClusterSite, WrongSignature"),
        (":WrongSignature", "must be constructed as WrongSignature(dim=D, n_clusters=K)"),
        (":NoClusterSite", "the model has no sample site 'y'"),
        (":MyMixture --covariance full", "--covariance is an option of model gmm"),
        (":MyMixture --loss em", "loss 'em' needs the E-step as its guide (--guide posterior"),
        (":MyMixture --guide qzxy", "guide 'qzxy' is the gmvae family's own guide"),
    ],
)
def test_a_broken_model_file_is_one_error_line(model_file, suffix, message, capsys):
    words = suffix.split()
    spec = words[0] if words[0].startswith("nope") else f"{model_file}{words[0]}"
    if words[0].startswith("nope"):
        spec = str(model_file.parent / words[0])
    assert main(["fit", "--model", spec, "--data", "moons", "--epochs", "1", *words[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: ") and message in err[0], err
