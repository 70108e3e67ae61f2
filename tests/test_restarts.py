"""--n-init: the run record lists every restart and which one was kept, and why."""

from __future__ import annotations

import math

from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_fit


def test_the_record_lists_every_restart_and_keeps_the_lowest_score():
    record = run_fit(FitConfig(model="gmm", data="moons", n_init=3, seed=4, threads=1, loss="trace-enum", epochs=5), progress=False)
    restarts = record["restarts"]
    assert [r["seed"] for r in restarts] == [4, 5, 6]
    assert sum(r["kept"] for r in restarts) == 1
    kept = next(r for r in restarts if r["kept"])
    assert kept["score"] == min(r["score"] for r in restarts)
    assert math.isclose(kept["final_loss"], record["final_loss"])
    assert all(r["score"] == r["final_loss"] for r in restarts)  # the Gaussian mixture is compared by its loss
    assert all(0.5 <= r["acc"] <= 1 for r in restarts)  # moons has labels: each restart's ACC is reported
    assert math.isclose(kept["acc"], record["acc"])


def test_one_start_has_no_restart_list():
    record = run_fit(FitConfig(model="gmm", data="moons", seed=0, threads=1), progress=False)
    assert "restarts" not in record
