"""Deep transfer (Matsuda and Hyvärinen 2019, section 4.3): the MLP and CNN feature classifiers, eq. (28)'s noise,
and the ``--classifier`` option."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_errors import one_error_line

from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig, config_from_json
from mixzoo.app.transfer import (
    ConvFeatureClassifier,
    FeatureClassifier,
    default_classifier,
    noise_log_density,
    resolve_classifier,
    train_classifier,
    transfer_split,
)
from mixzoo.data import load_dataset
from mixzoo.errors import MixzooInputError

TRANSFER = ["fit", "--model", "energy-mixture", "--data", "digits", "--pretrain-classes", "0,1,2,3,4"]
SMALL = ["--cluster-classes", "5,8", "--classifier-epochs", "2", "--epochs", "2"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_cnn_features_feed_eq_28_noise_density_through_the_heads_logits(digits):
    """log noise(f(x)) = log(M_1/M) - b_1 + logsumexp_l(w_l . f(x) + b_l), with f(x) the CNN's last hidden layer."""
    pre = digits.labels < 5
    x, y = torch.as_tensor(digits.x[pre]), torch.as_tensor(digits.labels[pre])
    net = train_classifier(x, y, 5, epochs=2, seed=0, feature_dim=16, kind="cnn", image_shape=digits.image_shape)
    assert isinstance(net, ConvFeatureClassifier)
    with torch.no_grad():
        f, logits = net.features(x), net(x)
    assert f.shape == (len(x), 16) and (f >= 0).all()  # ReLU features
    torch.testing.assert_close(net.head(f), logits)  # the logits depend on x only through f(x)
    counts = torch.bincount(y, minlength=5).float()
    expected = math.log(counts[0] / counts.sum()) - net.head.bias[0].detach() + torch.logsumexp(logits, -1)
    torch.testing.assert_close(noise_log_density(net, counts)(f), expected)
    td = transfer_split(digits.x, digits.labels, [0, 1, 2, 3, 4], epochs=2, seed=0, feature_dim=16, classifier="cnn",
                        image_shape=digits.image_shape)  # fmt: skip
    assert td.classifier == "cnn"
    torch.testing.assert_close(td.noise.samples, f)  # the same seed trains the same network: its features are the noise
    torch.testing.assert_close(td.noise.log_prob(f), expected)


def test_the_classifier_follows_the_image_shape_and_cnn_needs_one(digits):
    assert default_classifier(digits.image_shape) == "cnn"
    assert default_classifier(None) == "mlp" and default_classifier((2, 2)) == "mlp"
    assert resolve_classifier("mlp", digits.image_shape) == "mlp"
    with pytest.raises(MixzooInputError, match="--classifier cnn needs images"):
        resolve_classifier("cnn", None)
    with pytest.raises(MixzooInputError, match="at least 4x4"):
        resolve_classifier("cnn", (3, 3))
    td = transfer_split(digits.x, digits.labels, [0, 1, 2, 3, 4], epochs=1, seed=0, feature_dim=8)
    assert td.classifier == "mlp"  # no image shape given: the MLP, as before
    net = train_classifier(torch.as_tensor(digits.x[:50]), torch.as_tensor(digits.labels[:50]), 10, epochs=1, feature_dim=8)
    assert type(net) is FeatureClassifier


def test_a_small_transfer_run_on_digits_trains_with_the_cnn_by_default(tmp_path, capsys, monkeypatch):
    import mixzoo.app.runs
    from mixzoo.app.run_dir import save_checkpoint

    def checkpoint_only(run_dir, c, record, model, guide, *args, **kwargs):  # the summary and plots are tested elsewhere
        save_checkpoint(run_dir, {"model": model, "guide": guide}, c.to_dict())

    monkeypatch.setattr(mixzoo.app.runs, "_write_run", checkpoint_only)
    run = tmp_path / "run"
    assert main([*TRANSFER, *SMALL, "--subsample", "600", "--out", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["classifier"] == "cnn" and record["classifier_accuracy"] > 0.8
    assert record["clusters"] == 2 and record["dim"] == 64 and record["acc"] > 0.6
    config = json.loads((run / "config.json").read_text())
    assert config["classifier"] == "cnn"  # the run records the classifier it chose
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["acc"] == record["acc"]  # the saved choice rebuilds the same features


def test_the_classifier_option_is_saved_and_refused_where_it_cannot_apply(capsys):
    assert main([*TRANSFER, *SMALL, "--subsample", "400", "--classifier", "mlp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["classifier"] == "mlp"
    config = FitConfig(model="energy-mixture", pretrain_classes="0,1,2,3,4", classifier="mlp").resolved()
    assert config_from_json(json.loads(json.dumps(config.to_dict())), "run").classifier == "mlp"  # config.json keeps it
    cases = {
        ("fit", "--data", "digits", "--classifier", "cnn"): "--classifier chooses the transfer classifier; it needs --pretrain-classes",
        (*TRANSFER, "--classifier", "cnn", "--pca", "10"): "--classifier cnn needs images",
        ("fit", "--model", "energy-mixture", "--data", "pinwheel", "--pretrain-classes", "0,1", "--classifier", "cnn"): "--classifier cnn needs images",
        (*TRANSFER, "--classifier", "resnet"): "--classifier",
    }  # fmt: skip
    for args, message in cases.items():
        assert main(list(args)) == 2
        err = one_error_line(capsys)
        assert message in err, err
    with pytest.raises(MixzooInputError, match="--classifier must be one of mlp, cnn"):
        FitConfig(model="energy-mixture", pretrain_classes="0,1,2,3,4", classifier="resnet").resolved()


def test_a_config_written_before_the_option_reads_back_as_the_mlp_it_used():
    raw = FitConfig(model="energy-mixture", pretrain_classes="0,1,2,3,4").to_dict()
    del raw["classifier"]
    assert config_from_json(raw, "old").classifier == "mlp"
    plain = FitConfig().to_dict()
    del plain["classifier"]
    assert config_from_json(plain, "old").classifier is None
