"""Honest probabilities: the replicate temperature, its estimator, and how calibration is measured and reported."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import norm

from mixzoo import MixtureClusterer
from mixzoo.analysis.calibration import Calibration, align_labels, bootstrap_indices, fit_temperature, temper
from mixzoo.analysis.metrics import calibration_metrics, clustering_report, expected_calibration_error, reliability
from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig
from mixzoo.app.runs import execute


def test_aligning_undoes_a_relabelling():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 4, 500)
    other = np.array([2, 0, 3, 1])[reference]
    other[:20] = rng.integers(0, 4, 20)  # a few points moved
    aligned = align_labels(reference, other, 4)
    assert np.mean(aligned[20:] == reference[20:]) == 1.0


def test_the_temperature_that_drew_the_labels_is_recovered():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (20000, 3))
    for true_t in (0.5, 2.0, 8.0):
        p = temper(logits, true_t)
        labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
        assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(logits, temper(logits, 0.5).argmax(1), floor=1.0) == pytest.approx(1.0)  # held at the floor


def test_tempering_keeps_zero_probabilities_and_the_argmax():
    lp = np.log(np.array([[0.7, 0.3, 0.0], [0.1, 0.2, 0.7]]))
    p = temper(lp, 3.0)
    assert p[0, 2] == 0.0 and np.allclose(p.sum(1), 1.0) and (p.argmax(1) == [0, 2]).all()
    assert p[0, 0] < 0.7  # softer


def test_bootstrap_indices_are_seeded_and_capped():
    a, b = bootstrap_indices(50, 3), bootstrap_indices(50, 3)
    assert (a == b).all() and len(a) == 50 and len(np.unique(a)) < 50
    assert len(bootstrap_indices(10**6, 0, points=1000)) == 1000


def test_expected_calibration_error_by_hand():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = [0, 1, 1, 1]  # cluster 0 matches class 0: the third point is wrong
    assert expected_calibration_error(labels, proba) == pytest.approx((0.1 + 0.2 + 0.6 + 0.3) / 4)
    conf, acc, counts = reliability(labels, proba)
    assert counts.sum() == 4 and acc[6] == 0.0 and conf[9] == pytest.approx(0.9)
    m = calibration_metrics(labels, proba)
    assert m["calibration_ratio"] == pytest.approx(1.0 / 1) and m["ece"] == pytest.approx(0.3)
    assert calibration_metrics([0, 1], np.eye(2))["calibration_ratio"] is None  # nothing misclassified
    report = clustering_report(labels, proba)
    assert report["calibration_ratio"] == pytest.approx(1.0) and report["ece"] == pytest.approx(0.3)


def _overlapping(n=2000, seed=0):
    """Two unit Gaussians 2 apart in the first of two features: the Bayes posterior is known."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.c_[2.0 * y, np.zeros(n)] + rng.standard_normal((n, 2))
    bayes = 1 / (1 + np.exp(norm.logpdf(x[:, 0], 0) - norm.logpdf(x[:, 0], 2)))
    return x.astype(np.float32), y, float(np.minimum(bayes, 1 - bayes).sum())


def test_a_well_specified_mixture_expects_the_bayes_error(tmp_path):
    x, y, bayes_expected = _overlapping()
    np.savez(tmp_path / "two.npz", x=x, y=y)
    run = execute(FitConfig(model="gmm", data=str(tmp_path / "two.npz"), seed=0, threads=1), progress=False)
    r = run.record
    assert r["calibration"]["method"] == "replicate" and r["calibration"]["floor"] == 1.0
    assert r["temperature"] >= 1.0 and r["calibration"]["disagreement"] < 0.1
    assert r["expected_misclassified"] == pytest.approx(bayes_expected, rel=0.15)
    assert 0.8 < r["calibration_ratio"] < 1.25


def test_a_gaussian_mixture_on_digits_is_no_longer_sure_of_every_point():
    from mixzoo.data import load_dataset

    d = load_dataset("digits", subsample=600, seed=0)
    raw = MixtureClusterer(n_clusters=10, random_state=0, calibration="none").fit(d.x)
    honest = MixtureClusterer(n_clusters=10, random_state=0).fit(d.x)
    assert raw.temperature_ == 1.0 and honest.temperature_ > 2.0
    assert (honest.predict(d.x) == raw.predict(d.x)).all()  # the clustering is the same
    expected = {name: float((1 - e.predict_proba(d.x).max(1)).sum()) for name, e in (("raw", raw), ("honest", honest))}
    actual = clustering_report(d.labels, honest.predict_proba(d.x))["misclassified"]
    assert expected["raw"] < 0.1 * actual and 0.4 * actual < expected["honest"] < 3 * actual


def test_an_under_confident_model_may_sharpen():
    """The energy mixture's NCE probabilities are no exact posterior: its temperature may fall below 1."""
    run = execute(FitConfig(model="energy-mixture", data="pinwheel", seed=0, threads=1), progress=False)
    cal = run.record["calibration"]
    assert cal["floor"] is None and cal["temperature"] < 1.0
    raw = execute(FitConfig(model="energy-mixture", data="pinwheel", seed=0, threads=1, calibration="none"), progress=False)
    assert run.record["expected_misclassified"] < 0.5 * raw.record["expected_misclassified"]
    assert run.record["acc"] == raw.record["acc"]


def test_revealed_labels_fit_the_temperature_without_a_refit():
    run = execute(FitConfig(model="flow-mixture", data="two-circles", guide="encoder", seed=0, threads=1, labels=32,
                            epochs=3, options={"transforms": 1, "hidden": [8]}), progress=False)  # fmt: skip
    cal = run.record["calibration"]
    assert cal["method"] == "labels" and cal["points"] == 32 and cal["seed"] is None and cal["floor"] is None


def test_the_run_keeps_its_temperature_for_predict_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--model", "gmm", "--data", "digits", "--subsample", "500", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["temperature"] == pytest.approx(record["temperature"], rel=1e-3) and saved["temperature"] > 1.0
    assert {"calibration_ratio", "ece", "temperature"} <= set(record)
    proba = np.load(out / "proba.npy")
    assert float((1 - proba.max(1)).sum()) == pytest.approx(record["expected_misclassified"], rel=1e-4)
    assert main(["evaluate", "--run", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["expected_misclassified"] == pytest.approx(record["expected_misclassified"], rel=1e-3)
    from mixzoo.app.predict import predict_run
    from mixzoo.data import load_dataset

    d = load_dataset("digits", subsample=500, seed=0)
    np.save(tmp_path / "digits.npy", d.x)
    p = predict_run(str(out), str(tmp_path / "digits.npy"))
    assert float((1 - p.max(1)).sum()) > 10 * float((1 - _raw_proba(out, tmp_path / "digits.npy").max(1)).sum())


def _raw_proba(run_dir, data):
    """The run's probabilities with the temperature removed (as a run written before calibration would give)."""
    (run_dir / "calibration.json").rename(run_dir / "kept.json")
    try:
        from mixzoo.app.predict import predict_run

        return predict_run(str(run_dir), str(data))
    finally:
        (run_dir / "kept.json").rename(run_dir / "calibration.json")


def test_calibration_none_reports_the_models_own_probabilities(capsys):
    assert main(["fit", "--model", "gmm", "--data", "moons", "--subsample", "300", "--calibration", "none", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["temperature"] == 1.0 and record["calibration"] == Calibration().to_dict()
    assert main(["fit", "--calibration", "bootstrap"]) == 2
    assert "invalid choice: 'bootstrap'" in capsys.readouterr().err


def test_a_bad_calibration_record_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--model", "gmm", "--data", "moons", "--subsample", "200", "--out", str(out)]) == 0
    (out / "calibration.json").write_text(json.dumps({"temperature": -1}))
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "temperature -1.0, which must be positive" in err[0]


def test_the_estimator_refuses_an_unknown_calibration():
    from mixzoo.errors import MixzooInputError

    with pytest.raises(MixzooInputError, match="--calibration must be one of replicate, none, got 'always'"):
        MixtureClusterer(n_clusters=2, calibration="always").fit(np.random.default_rng(0).normal(size=(30, 2)))


def test_tempered_cluster_proba_matches_the_formula():
    from mixzoo import GaussianMixture, cluster_log_proba, cluster_proba

    m = GaussianMixture(2, 3).initialize(torch.randn(50, 2), seed=0)
    from mixzoo import EmptyGuide

    x = torch.randn(20, 2)
    lp = cluster_log_proba(m, EmptyGuide(), x).double()
    assert torch.allclose(cluster_proba(m, EmptyGuide(), x, temperature=4.0).double(), torch.softmax(lp / 4, -1), atol=1e-5)
