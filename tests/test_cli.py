import json
import re

import pytest
import torch
from cli_errors import one_error_line

from mixzoo.app.cli import main

CONTRACT = {
    "model",
    "guide",
    "loss",
    "data",
    "n",
    "clusters",
    "acc",
    "nmi",
    "ari",
    "purity",
    "expected_misclassified",
    "misclassified",
    "seconds",
    "device",
    "seed",
}


def _json_last_line(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_models_lists_gmm(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gmm" in out and "trace-enum" in out


def test_fit_json_contract_and_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["fit", "--model", "gmm", "--data", "pinwheel", "--epochs", "60", "--seed", "0", "--out", str(run), "--json"]
    assert main(args) == 0
    rec = _json_last_line(capsys)
    assert CONTRACT <= rec.keys()
    assert rec["clusters"] == 5 and rec["n"] == 2500 and rec["acc"] > 0.6
    assert {"checkpoint.pt", "config.json", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    ev = _json_last_line(capsys)
    assert ev["acc"] == pytest.approx(rec["acc"])
    # an existing run is never overwritten silently
    assert main(args) == 2
    assert "already holds a run; pass --overwrite" in one_error_line(capsys)
    assert main(args + ["--overwrite", "--epochs", "2"]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--model", "nope"], "unknown model 'nope'"),
        (["fit", "--loss", "nope"], "unknown loss 'nope'; choose one of: trace-enum, trace, trace-graph, vimco, rws, em, nce"),
        (["fit", "--guide", "nope"], "unknown guide 'nope'; choose one of: empty, .*posterior"),
        (["fit", "--guide", "empty", "--loss", "trace"], "model 'gmm' cannot be trained this way: loss 'trace' draws the cluster"),
        (["fit", "--guide", "empty", "--loss", "em"], "loss 'em' needs the E-step as its guide \\(--guide posterior"),
        (["fit", "--model", "gmvae", "--guide", "encoder"], "guide 'encoder' covers y alone, and the model also has z"),
        (["fit", "--model", "gmm", "--guide", "qzxy"], "guide 'qzxy' is the gmvae family's own guide"),
        (["fit", "--model", "energy-mixture", "--loss", "trace-enum"], "loss 'trace-enum' needs a normalized model"),
        (["fit", "--model", "gmm", "--guide", "encoder", "--loss", "nce"], "loss 'nce' .* needs the empty guide, not 'encoder'"),
        (["fit", "--data", "nope"], "unknown data 'nope'"),
        (["fit", "--data", "mnist"], "pass --data-dir PATH or set MIXZOO_DATA"),
        (["fit", "--clusters", "0"], "number of clusters must be at least 1, got 0"),
        (
            ["fit", "--data", "moons", "--subsample", "3", "--clusters", "4"],
            "fewer points \\(3\\) than clusters \\(4\\)",
        ),
        (["fit", "--epochs", "0"], "--epochs must be an integer of at least 1, got 0"),
        (["fit", "--model", "gmvae", "--particles", "1"], r"--particles \(loss 'vimco'\) must be at least 2, got 1"),
        (["fit", "--model", "gmvae", "--loss", "trace", "--particles", "0"], r"--particles \(loss 'trace'\) must be at least 1, got 0"),
        (["fit", "--model", "neural-mixture", "--particles", "3"], "--particles is an option of loss .*; it does not apply to loss 'em'"),
        (["fit", "--model", "gmm", "--temperature", "2"], "--temperature is an option of guide encoder; it does not apply to guide 'posterior'"),
        (["fit", "--model", "gmvae", "--anneal-start", "0"], r"--anneal-start \(model 'gmvae'\) must be at least 0.0001, got 0.0"),
        (["evaluate", "--run", "/nonexistent/run"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.delenv("MIXZOO_DATA", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixzoo: error: ") and len(err.splitlines()) == 1
    import re

    assert re.search(message, err)


def test_flow_mixture_semi_supervised_from_the_cli(capsys):
    args = ["fit", "--model", "flow-mixture", "--guide", "encoder", "--data", "two-circles", "--labels", "32"]
    assert main(args + ["--epochs", "2", "--hidden", "8", "--transforms", "1", "--json"]) == 0
    rec = _json_last_line(capsys)
    assert rec["model"] == "flow-mixture" and rec["guide"] == "encoder" and rec["labels"] == 32 and rec["n"] == 2000
    # the same run without labels: the 32 revealed labels are what separates the circles (0.75 against 0.60)
    assert main([a for a in args if a not in ("--labels", "32")] + ["--epochs", "2", "--hidden", "8", "--transforms", "1", "--json"]) == 0
    assert rec["acc"] > _json_last_line(capsys)["acc"] + 0.1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "flow-mixture", "--covariance", "full"],
            "--covariance is an option of model gmm; it does not apply to model 'flow-mixture'",
        ),
        (["--model", "flow-mixture", "--data", "two-circles", "--labels", "1"], "--labels must lie between 2"),
        (
            ["--model", "flow-mixture", "--loss", "trace", "--data", "moons"],
            "loss 'trace' draws the cluster from the guide, and guide 'empty' samples none",
        ),
    ],
)
def test_flow_mixture_bad_input(args, message, capsys):
    assert main(["fit", "--epochs", "1", *args]) == 2
    assert re.search(message, one_error_line(capsys))


def test_deep_transfer_recipe_from_the_cli(capsys):
    args = ["fit", "--model", "energy-mixture", "--loss", "nce", "--data", "digits", "--pretrain-classes", "0,1,2,3,4"]
    assert main(args + ["--clusters", "5", "--epochs", "2", "--classifier-epochs", "2", "--json"]) == 0
    rec = _json_last_line(capsys)
    assert rec["model"] == "energy-mixture" and rec["dim"] == 64 and rec["classifier_accuracy"] > 0.8
    assert 850 < rec["n"] < 950  # digits 5-9 only


@pytest.mark.parametrize(
    "classes, message",
    [("a,b", "comma-separated integers"), ("0,99", "are not classes of the data"), ("0", "at least 2 classes on each side")],
)
def test_deep_transfer_bad_classes(classes, message, capsys):
    args = ["fit", "--model", "energy-mixture", "--data", "digits", "--pretrain-classes", classes, "--epochs", "1"]
    assert main(args) == 2
    assert re.search(message, one_error_line(capsys))


def test_neural_mixture_two_fold_from_the_cli(capsys):
    args = ["fit", "--model", "neural-mixture", "--data", "digits", "--arch", "cnn", "--channels", "4,8"]
    assert main(args + ["--two-fold", "--augment", "--epochs", "1", "--consistency-lr", "1e-3", "--json"]) == 0
    rec = _json_last_line(capsys)
    assert rec["model"] == "neural-mixture" and rec["loss"] == "em" and rec["epochs"] == 1


def test_seeded_cli_runs_repeat_exactly_for_randomly_initialised_networks(capsys):
    args = ["fit", "--model", "flow-mixture", "--data", "moons", "--epochs", "2", "--hidden", "8", "--seed", "3", "--json"]
    records = []
    for _ in range(2):
        torch.manual_seed(len(records) * 1000 + 7)  # a different global state each time must not matter
        assert main(args) == 0
        records.append(_json_last_line(capsys))
    assert records[0]["final_loss"] == records[1]["final_loss"] and records[0]["acc"] == records[1]["acc"]
