import json

import pytest
import torch
from conftest import for_shape

import mixzoo
from mixzoo.analysis.metrics import clustering_report
from mixzoo.app.cli import main
from mixzoo.errors import MixzooInputError
from mixzoo.guides import PosteriorGuide
from mixzoo.inference import EM, two_fold
from mixzoo.models import NeuralMixture
from mixzoo.nets.augment import Augment, sobel


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(x: torch.Tensor, k: int, normalize: bool, epochs: int = 8, seed: int = 0):
    model = NeuralMixture(x.shape[1], k, hidden=(16, 16), normalize=normalize)
    guide = PosteriorGuide(model)
    model.initialize(x, seed=seed)
    mixzoo.fit(model, guide, x, loss=EM(), epochs=epochs, batch_size=128, lr=3e-3, seed=seed, progress=False)
    return model, guide


def _batch_means(model: NeuralMixture, xb: torch.Tensor) -> torch.Tensor:
    """Table 1: the batch mean of h_k(x) = sigmoid(a*/gamma) per cluster, as in training."""
    with torch.no_grad():
        return torch.sigmoid(model.scores(xb, batch_stats=True) / model.gamma).mean(0)


def test_normalization_keeps_every_cluster_and_batch_means_near_one_half(blobs):
    x, labels, _, _ = blobs
    model, guide = _train(x, 3, normalize=True)
    means = _batch_means(model, x[:128])
    assert torch.allclose(means, torch.full((3,), 0.5), atol=0.02), means
    proba = mixzoo.cluster_proba(model, guide, x)
    assert len(proba.argmax(1).unique()) == 3
    assert clustering_report(labels, proba.numpy())["acc"] > 0.95


def test_without_normalization_training_collapses(blobs):
    x, labels, _, _ = blobs
    model, guide = _train(x, 3, normalize=False)
    proba = mixzoo.cluster_proba(model, guide, x)
    assert len(proba.argmax(1).unique()) < 3  # fewer clusters than the data has
    means = _batch_means(model, x[:128])
    assert float((means - 0.5).abs().max()) > 0.2, means  # nothing holds h_k near 0.5 (Table 1, un-normalized row)


def test_predictions_use_running_statistics_and_do_not_depend_on_batch_size(blobs):
    x = blobs[0]
    model, guide = _train(x, 3, normalize=True, epochs=2)
    small = mixzoo.cluster_proba(model, guide, x, batch_size=7)
    large = mixzoo.cluster_proba(model, guide, x, batch_size=4096)
    torch.testing.assert_close(small, large, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # batch statistics of 7 points would give other probabilities
        batch = torch.softmax(model.scores(x[:7], batch_stats=True), -1)
    assert (batch - large[:7]).abs().max() > 1e-2
    assert not torch.allclose(model.norm.running_mean, torch.zeros(3))


def test_guide_posterior_is_softmax_of_normalized_scores(blobs):
    x = blobs[0][:50]
    model = NeuralMixture(2, 3, hidden=(8,)).initialize(x)
    guide = PosteriorGuide(model)
    with torch.no_grad():
        want = torch.softmax(model.scores(x, batch_stats=False), -1)
    torch.testing.assert_close(mixzoo.cluster_proba(model, guide, x), want)
    assert not list(guide.parameters())  # the E-step evaluates the model's network, it owns nothing


def test_augment_and_sobel():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 64, generator=g)
    aug = Augment((8, 8))
    a1 = aug(x, torch.Generator().manual_seed(1))
    a2 = aug(x, torch.Generator().manual_seed(1))
    assert a1.shape == x.shape and torch.equal(a1, a2)
    assert (a1 - x).abs().mean() > 0.01
    edges = sobel(x.reshape(4, 1, 8, 8))
    assert edges.shape == (4, 2, 8, 8)
    flat = sobel(torch.ones(1, 1, 8, 8))[..., 1:-1, 1:-1]
    assert flat.abs().max() == 0  # no edges inside a constant image


def _slant(images):
    """Covariance of the rows and columns of the ink over the variance of its rows: + leans one way, - the other."""
    ii, jj = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    m = images.sum((1, 2))
    ci, cj = (images * ii).sum((1, 2)) / m, (images * jj).sum((1, 2)) / m
    di, dj = ii - ci[:, None, None], jj - cj[:, None, None]
    return (images * di * dj).sum((1, 2)) / (images * di * di).sum((1, 2))


def test_shear_changes_the_slant_within_its_bound():
    bar = torch.zeros(64, 28, 28)
    bar[:, 4:24, 13:15] = 1.0  # an upright stroke, slant 0
    only = {"shift": 0.0, "scale": 0.0, "rotation": 0.0, "brightness": 0.0, "contrast": 0.0}
    sheared = Augment((28, 28), shear=0.3, **only)(bar.reshape(64, -1), torch.Generator().manual_seed(0))
    slant = _slant(sheared.reshape(64, 28, 28).clamp(min=0)).abs()
    assert slant.max() < 0.33 and slant.max() > 0.2 and slant.min() < 0.1  # spread over [-0.3, 0.3]
    still = Augment((28, 28), **only)(bar.reshape(64, -1), torch.Generator().manual_seed(0))
    assert _slant(still.reshape(64, 28, 28).clamp(min=0)).abs().max() < 1e-4


def test_two_fold_runs_both_steps_and_differs_from_em_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 64, generator=g)
    states = []
    for consistency in (True, False):
        model = NeuralMixture(64, 4, arch="cnn", channels=(4, 8), hidden=(16,), augment=True, sobel=True)
        guide = PosteriorGuide(model)
        model.initialize(x, seed=0)
        result = mixzoo.fit(model, guide, x, loss=EM(), step=two_fold(consistency=consistency), epochs=2, batch_size=128,
                            lr=1e-3, progress=False)
        assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
        assert (result.step_history["kl"][-1] > 0) == consistency
        states.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (states[0] - states[1]).abs().max() > 1e-4


def test_bad_options_are_refused():
    with pytest.raises(MixzooInputError, match="gamma"):
        NeuralMixture(2, 3, gamma=0.0)
    with pytest.raises(MixzooInputError, match="square image"):
        NeuralMixture(10, 3, arch="cnn")
    with pytest.raises(MixzooInputError, match="arch"):
        NeuralMixture(4, 3, arch="rnn")
    with pytest.raises(MixzooInputError, match="augmentations"):
        model = NeuralMixture(4, 2)
        mixzoo.fit(model, PosteriorGuide(model), torch.rand(20, 4), loss=EM(), step=two_fold(), epochs=1, progress=False)


def test_cli_fit_neural_mixture(capsys):
    assert main(["fit", "--model", "neural-mixture", "--data", "moons", "--epochs", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"] == "neural-mixture" and record["loss"] == "em" and record["guide"] == "posterior"
    assert record["acc"] > 0.8  # 0.85 on this seed; two clusters always score at least 0.5
    code = main(["fit", "--model", "neural-mixture", "--data", "moons", "--epochs", "1", "--gamma", "-1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: --gamma (model 'neural-mixture') must be at least")


def test_images_get_the_cnn_recipe_with_augmentations_unless_the_user_chose():
    from mixzoo.app.config import FitConfig
    from mixzoo.models.family import DataShape

    digits = for_shape(FitConfig(model="neural-mixture"), DataShape(n=1797, dim=64, image_shape=(8, 8), levels=17))
    assert digits.options["arch"] == "cnn" and digits.options["augment"] is True
    assert digits.options["channels"] == [32, 64] and digits.options["hidden"] == [32] and digits.epochs == 100
    mnist = for_shape(FitConfig(model="neural-mixture"), DataShape(n=70000, dim=784, image_shape=(28, 28), levels=256))
    assert mnist.options["channels"] == [16, 32, 64] and mnist.epochs == 5
    assert digits.options["shear"] == mnist.options["shear"] == 0.3  # the copy changes the slant too
    mlp = for_shape(FitConfig(model="neural-mixture", options={"arch": "mlp"}), DataShape(n=1797, dim=64, image_shape=(8, 8)))
    assert mlp.options["arch"] == "mlp" and "augment" not in mlp.options and "channels" not in mlp.options
    assert "shear" not in mlp.options
    plain = for_shape(FitConfig(model="neural-mixture", options={"augment": False}), DataShape(n=1797, dim=64, image_shape=(8, 8)))
    assert plain.options["arch"] == "cnn" and "shear" not in plain.options
    mine = for_shape(FitConfig(model="neural-mixture", options={"shear": 0.1}), DataShape(n=1797, dim=64, image_shape=(8, 8)))
    assert mine.options["shear"] == 0.1
    table = for_shape(FitConfig(model="neural-mixture"), DataShape(n=500, dim=4))
    assert "arch" not in table.options and table.epochs == 100


def test_options_the_data_turn_on_are_checked_once_the_data_are_known():
    from mixzoo.app.config import FitConfig
    from mixzoo.models.family import DataShape

    images = DataShape(n=1797, dim=64, image_shape=(8, 8), levels=17)
    table = DataShape(n=500, dim=4)
    c = FitConfig(model="neural-mixture", options={"sobel": True}).resolved()  # the data may still choose the CNN
    assert for_shape(c, images).options["arch"] == "cnn"
    with pytest.raises(MixzooInputError, match="cannot apply with --arch mlp"):
        for_shape(c, table)
    with pytest.raises(MixzooInputError, match="cannot apply with --arch mlp"):  # a switch the user set: before any data
        FitConfig(model="neural-mixture", options={"arch": "mlp", "sobel": True}).resolved()


def test_agreement_counts_points_whose_transformed_copy_keeps_the_cluster():
    class Same(torch.nn.Module):
        def forward(self, xb, generator=None):
            return xb

    class Shuffled(torch.nn.Module):
        def forward(self, xb, generator=None):
            return xb[torch.randperm(len(xb), generator=generator)]

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 64, generator=g)
    model = NeuralMixture(64, 3, arch="cnn", channels=(4,), hidden=(8,), augment=True).initialize(x, seed=0)
    model.augment = Same()  # every point keeps its cluster
    assert model.agreement(x, torch.Generator().manual_seed(0)) == 1.0
    model.augment = Shuffled()  # another point's cluster: agreement by chance only
    assert model.agreement(x, torch.Generator().manual_seed(0)) < 0.9
    with pytest.raises(MixzooInputError, match="augment=True"):
        NeuralMixture(64, 3).agreement(x, g)


def test_restarts_keep_the_most_consistent_one_not_the_lowest_loss(monkeypatch):
    from mixzoo.app.config import FitConfig
    from mixzoo.app.restarts import fit_restarts
    from mixzoo.data import load_dataset

    x = torch.as_tensor(load_dataset("digits", subsample=200).x, dtype=torch.float32)
    from mixzoo.app.planning import planned
    from mixzoo.models.family import DataShape

    c = FitConfig(model="neural-mixture", data="digits", epochs=1, threads=1).resolved()
    c, plan = planned(c, DataShape(n=200, dim=64, image_shape=(8, 8), levels=17), 10)
    scores = iter([0.2, 0.9, 0.5])  # agreement of restarts 0, 1, 2
    kept = []

    def agreement(self, probe, generator):
        kept.append({k: v.clone() for k, v in self.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(NeuralMixture, "agreement", agreement)
    final, model, guide, result = fit_restarts(c, plan, x, [0, 1, 2], loss=EM())
    for k, v in model.state_dict().items():
        assert torch.equal(v, kept[1][k])
