import json

import numpy as np
import pytest

from mixzoo.analysis.plots import plot_clusters, plot_confidence, plot_confusion, plot_loss
from mixzoo.app.cli import main


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    x = np.eye(5)[labels] * 4 + rng.standard_normal((200, 5))
    proba = rng.dirichlet(np.ones(3), 200)
    return x, labels, proba


def test_each_plot_is_written(tmp_path, fitted):
    x, labels, proba = fitted
    paths = [
        plot_loss(np.linspace(3, 1, 50), tmp_path / "loss.png", val_losses=np.linspace(3.2, 1.2, 50)),
        plot_clusters(x, labels, tmp_path / "clusters.png"),  # 5-D: drawn through PCA
        plot_clusters(x[:, :2], labels, tmp_path / "clusters2d.png"),
        plot_confidence(proba, tmp_path / "confidence.png"),
        plot_confusion(labels, (labels + 1) % 4, tmp_path / "confusion.png"),  # 4 clusters, 3 classes
    ]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"


def test_plots_reject_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="one label per row"):
        plot_clusters(np.zeros((5, 2)), np.zeros(4), tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        plot_confidence(np.zeros(5), tmp_path / "p.png")
    with pytest.raises(ValueError, match="no losses"):
        plot_loss([], tmp_path / "l.png")


def test_fit_out_writes_summary_and_plots(tmp_path, capsys):
    import arviz as az

    out = tmp_path / "run"
    argv = ["fit", "--data", "pinwheel", "--subsample", "300", "--epochs", "30", "--out", str(out), "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("loss.png", "clusters.png", "confidence.png", "confusion.png", "reliability.png", "summary.nc"):
        assert (out / name).stat().st_size > 1000, name
    data = az.from_netcdf(str(out / "summary.nc"))
    assert data["log_likelihood"]["x"].shape == (1, 100, record["n"])
    assert data["cluster_posterior"]["responsibility"].shape == (1, 1, record["n"], record["clusters"])
