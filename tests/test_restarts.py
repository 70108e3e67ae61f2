"""--n-init: the run record lists every restart and which one was kept, and why."""

from __future__ import annotations

import math

import numpy as np

from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_fit


def _separated(tmp_path, n=300):
    """Three Gaussian clusters 8 standard deviations apart, as a table with a label column: every restart of a
    Gaussian mixture finds them (ACC near 1), and an ACC measured on anything else would not be near 1."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    x = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])[labels] + rng.normal(size=(n, 2))
    path = tmp_path / "separated.csv"
    path.write_text("a,b,label\n" + "".join(f"{a:.6f},{b:.6f},{k}\n" for (a, b), k in zip(x, labels, strict=True)))
    return str(path)


def test_the_record_lists_every_restart_and_keeps_the_lowest_score(tmp_path):
    config = FitConfig(model="gmm", data=_separated(tmp_path), label_column="label", clusters=3, n_init=3, seed=4,
                       threads=1, loss="trace-enum", epochs=5)  # fmt: skip
    record = run_fit(config, progress=False)
    restarts = record["restarts"]
    assert [r["seed"] for r in restarts] == [4, 5, 6]
    assert sum(r["kept"] for r in restarts) == 1
    kept = next(r for r in restarts if r["kept"])
    assert kept["score"] == min(r["score"] for r in restarts)
    assert math.isclose(kept["final_loss"], record["final_loss"])
    assert all(r["score"] == r["final_loss"] for r in restarts)  # the Gaussian mixture is compared by its loss
    assert all(r["acc"] > 0.95 for r in restarts), restarts  # each restart's ACC, measured on its own clusters
    assert math.isclose(kept["acc"], record["acc"]) and record["acc"] > 0.95


def test_one_start_has_no_restart_list():
    record = run_fit(FitConfig(model="gmm", data="moons", seed=0, threads=1), progress=False)
    assert "restarts" not in record
