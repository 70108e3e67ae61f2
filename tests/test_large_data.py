"""What keeps a run's memory bounded on large data: seeded row subsamples for the start, the temperature, the summary
and the plots, and passes over memory-mapped files that give their pages back."""

import sys

import numpy as np
import pytest
import torch

import mixzoo
from mixzoo.analysis.summary import summarize
from mixzoo.app.estimator import MixtureClusterer
from mixzoo.data.mapped import is_mapped, release, row_blocks
from mixzoo.data.rows import subsample_rows, take_rows


def test_subsample_rows_is_seeded_sorted_without_repeats_and_all_rows_below_the_limit():
    rows = subsample_rows(1000, 100, seed=4)
    assert rows is not None and len(rows) == 100 and len(set(rows.tolist())) == 100
    assert (np.diff(rows) > 0).all() and rows.min() >= 0 and rows.max() < 1000
    np.testing.assert_array_equal(rows, subsample_rows(1000, 100, seed=4))
    assert not np.array_equal(rows, subsample_rows(1000, 100, seed=5))
    assert subsample_rows(100, 100, seed=4) is None  # every row: nothing changes for data of ordinary size
    x = torch.arange(20.0).reshape(10, 2)
    assert take_rows(x, None) is x
    np.testing.assert_array_equal(take_rows(x, np.array([1, 3])).numpy(), [[2, 3], [6, 7]])


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_pass_by_row_blocks_does_not_keep_a_mapped_file_resident(tmp_path):
    path = tmp_path / "x.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1_000_000, 32))  # 128 MB
    data[:] = 1.0
    data.flush()
    del data
    x = np.asarray(np.load(path, mmap_mode="r"))  # as mixzoo.data reads a .npy: a plain view of a map
    assert is_mapped(x) and not is_mapped(np.ones(3))
    before = _resident_mib()
    total = sum(float(b.sum(dtype=np.float64)) for b in row_blocks(x, 50_000))
    after_blocks = _resident_mib()
    assert total == 32_000_000.0
    float(x.sum(dtype=np.float64))  # a plain pass keeps every page
    after_plain = _resident_mib()
    release(x)
    assert after_blocks - before < 30, (before, after_blocks)
    assert after_plain - after_blocks > 100, (after_blocks, after_plain)
    assert _resident_mib() < after_plain - 100
    np.testing.assert_array_equal(x[-1], 1.0)  # released pages read back from the file


def test_the_start_sees_a_seeded_subsample_of_large_data(monkeypatch):
    import mixzoo.app.restarts as restarts

    seen = []
    original = mixzoo.GaussianMixture.initialize

    def spy(self, x, seed=0):
        seen.append(len(x))
        return original(self, x, seed=seed)

    monkeypatch.setattr(mixzoo.GaussianMixture, "initialize", spy)
    monkeypatch.setattr(restarts, "START_POINTS", 150)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    est = MixtureClusterer(n_clusters=2, epochs=20, calibration="none", random_state=0).fit(x)
    assert seen == [150]
    assert len(np.unique(est.predict(x[:300]))) == 1 and len(np.unique(est.predict(x[300:]))) == 1


def test_a_summary_of_large_data_keeps_a_stated_subsample_and_the_full_data_curvature():
    rng = np.random.default_rng(1)
    means = np.array([[-4.0, 0.0], [4.0, 0.0]])
    x = means[rng.integers(0, 2, 4000)] + rng.standard_normal((4000, 2))
    est = MixtureClusterer(n_clusters=2, model_options={"covariance": "diag"}, epochs=40, random_state=0).fit(x)
    inputs = est.model_inputs(x)
    full = summarize(est.model_, est.guide_, inputs, n_draws=40, max_points=None)
    part = summarize(est.model_, est.guide_, inputs, n_draws=40, max_points=500)
    for group in ("log_likelihood", "cluster_posterior", "observed_data"):
        assert part[group]["obs"].size == 500 and full[group]["obs"].size == 4000
    rows = part["observed_data"]["obs"].values
    assert (np.diff(rows) > 0).all() and rows.max() < 4000
    np.testing.assert_allclose(part["observed_data"]["x"].values, inputs[torch.as_tensor(rows.copy())].double().numpy(), rtol=1e-6)
    assert int(part.attrs["mixzoo_points"]) == 500 and int(part.attrs["mixzoo_points_of"]) == 4000
    assert int(full.attrs["mixzoo_points"]) == int(full.attrs["mixzoo_points_of"]) == 4000
    # the posterior spread of the means is that of 4000 points (sigma / sqrt(N_k), about 0.022), not of 500 (0.063)
    sd_full = full["posterior"]["loc"].values[0].std(0).mean()
    sd_part = part["posterior"]["loc"].values[0].std(0).mean()
    assert 0.8 < sd_part / sd_full < 1.25, (sd_part, sd_full)
    assert 0.01 < sd_full < 0.02  # in the standardised inputs: 1 / sqrt(2000) / about 2.3
    # a diagonal Laplace approximation is exact for diagonal Gaussians: the pilot draws need no shrinking
    assert float(full.attrs["mixzoo_laplace_scale"]) == float(part.attrs["mixzoo_laplace_scale"]) == 1.0
    with pytest.raises(mixzoo.MixzooInputError, match="max_points"):
        summarize(est.model_, est.guide_, inputs, n_draws=2, max_points=0)


def test_the_laplace_pilot_counts_a_subsample_loss_for_all_the_points_it_stands_for():
    from mixzoo.analysis.summary import _laplace_scale

    moved, state = 10, {"c": 0.0}

    def perturb(c):
        state["c"] = c

    def pointwise(points):  # a quadratic log-likelihood whose draws at factor c lose 1.5 c^2 moved nats on all points
        state["c"] = 0.0  # each search starts at the fit
        return lambda: np.full(points, -1.5 * state["c"] ** 2 * moved / 1000)

    full = _laplace_scale(pointwise(1000), perturb, moved)
    assert full == pytest.approx(np.sqrt(1 / 3), rel=1e-6)  # one step, to the loss the approximation predicts
    assert _laplace_scale(pointwise(100), perturb, moved, weight=10.0) == pytest.approx(full)
    assert _laplace_scale(pointwise(100), perturb, moved) == 1.0  # a tenth of the loss, unweighted, looks fine
