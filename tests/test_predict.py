"""Users' data files on the command line, and ``mixzoo predict`` on new rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_errors import one_error_line

from mixzoo.app.cli import main


def _write_table(path, x, labels=None, names=("a", "b")):
    head = ",".join(names) + (",kind" if labels is not None else "")
    rows = [",".join(f"{v:.6f}" for v in r) + (f",{labels[i]}" if labels is not None else "") for i, r in enumerate(x)]
    path.write_text(head + "\n" + "\n".join(rows) + "\n")


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) * 0.5 + [6.0, 3.0]])
    return x, np.array(["left"] * 150 + ["right"] * 150)


def test_fit_a_csv_then_predict_new_rows_in_input_order(blobs, tmp_path, capsys):
    x, labels = blobs
    _write_table(tmp_path / "train.csv", x, labels)
    run = tmp_path / "run"
    args = ["fit", "--data", str(tmp_path / "train.csv"), "--label-column", "kind", "--scale", "--pca", "2"]
    assert main([*args, "--out", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["clusters"] == 2 and record["acc"] > 0.99
    new = np.array([[6.1, 2.9], [0.1, -0.2], [5.8, 3.2]])
    # the columns in another order: predict reads them by name
    (tmp_path / "new.csv").write_text("b,a\n" + "\n".join(f"{r[1]},{r[0]}" for r in new) + "\n")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "cluster,confidence,p_0,p_1" and len(lines) == 4
    clusters = [int(line.split(",")[0]) for line in lines[1:]]
    assert clusters[0] == clusters[2] != clusters[1]
    train_proba = np.load(run / "proba.npy")
    right = int(train_proba[-1].argmax())
    assert clusters[0] == right
    conf = [float(line.split(",")[1]) for line in lines[1:]]
    assert min(conf) > 0.99
    # round trip: predict on the training file gives the fit's clusters
    again = tmp_path / "again.csv"
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "train.csv"), "--out", str(again)]) == 0
    table = np.loadtxt(again, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0].astype(int), train_proba.argmax(1))
    np.testing.assert_allclose(table[:, 2:], train_proba, atol=1e-5)
    # never overwritten without --overwrite; stdout without --out
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(out)]) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "new.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == lines[1:]


def test_predict_refuses_other_columns_and_feature_counts(blobs, tmp_path, capsys):
    x, labels = blobs
    _write_table(tmp_path / "train.csv", x, labels)
    run = tmp_path / "run"
    assert main(["fit", "--data", str(tmp_path / "train.csv"), "--label-column", "kind", "--epochs", "3", "--out", str(run)]) == 0
    capsys.readouterr()
    _write_table(tmp_path / "other.csv", x, names=("a", "c"))
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "other.csv")]) == 2
    assert "the run was fitted on the columns a, b" in one_error_line(capsys)
    np.save(tmp_path / "three.npy", np.ones((4, 3)))
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "three.npy")]) == 2
    assert "fitted on 2 features, these data have 3" in one_error_line(capsys)
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "three.npy"), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".csv, .parquet, .npy" in one_error_line(capsys)


def test_npy_prediction_of_a_built_in_run_applies_its_scaling(tmp_path, capsys):
    from mixzoo.data import load_dataset

    run = tmp_path / "run"
    assert main(["fit", "--data", "moons", "--scale", "--epochs", "20", "--out", str(run)]) == 0
    raw = load_dataset("moons")
    np.save(tmp_path / "moons.npy", raw.x)
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "moons.npy"), "--out", str(tmp_path / "p.npy")]) == 0
    table = np.load(tmp_path / "p.npy")
    np.testing.assert_allclose(table[:, 2:], np.load(run / "proba.npy"), atol=1e-5)
    np.testing.assert_array_equal(table[:, 0], np.load(run / "proba.npy").argmax(1))
