"""Stopping when converged: tol on the relative change of the epoch loss, recorded in the JSON."""

import json

import pytest
from cli_errors import one_error_line

import mixzoo
from mixzoo.app.cli import main
from mixzoo.errors import MixzooInputError
from mixzoo.training import Convergence


def test_convergence_needs_patience_quiet_epochs():
    c = Convergence(tol=1e-3, patience=2)
    assert not c.update([10.0, 5.0, 4.999])  # one quiet change
    assert c.update([10.0, 5.0, 4.999, 4.9985])  # two
    assert not c.update([10.0, 5.0, 4.999, 4.9])  # the last change is large
    assert not Convergence(tol=None).update([1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(MixzooInputError, match="tol must be a non-negative number"):
        Convergence(tol=-1.0)


def test_fit_stops_when_converged_and_says_so():
    d = mixzoo.load_dataset("pinwheel", subsample=500)
    model, guide = mixzoo.GaussianMixture(2, 5), mixzoo.EmptyGuide()
    model.initialize(d.x, seed=0)
    result = mixzoo.fit(model, guide, d.x, epochs=500, lr=0.05, tol=1e-4, progress=False)
    assert result.converged and result.stopped == "converged" and result.epochs < 500
    tail = result.losses[-4:]
    assert all(abs(b - a) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(tail, tail[1:], strict=False))


def test_the_default_gmm_command_stops_when_done_and_tol_0_trains_every_epoch(capsys):
    assert main(["fit", "--data", "moons", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["converged"] and record["epochs"] < 300
    assert main(["fit", "--data", "moons", "--tol", "0", "--epochs", "40", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert not record["converged"] and record["epochs"] == 40
    assert main(["fit", "--data", "moons", "--tol", "-1"]) == 2
    assert "--tol must be a number >= 0" in one_error_line(capsys)
