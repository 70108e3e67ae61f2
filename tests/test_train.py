import pyro
import pytest
import torch

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture, MixzooInputError, TrainingDivergedError
from mixzoo.app.run_dir import load_checkpoint, prepare_run_dir, save_checkpoint


def _pair(x, seed=0):
    return GaussianMixture(2, 3).initialize(x, seed=seed), EmptyGuide()


def test_seeded_runs_repeat_exactly(blobs):
    x = blobs[0]
    runs = []
    for _ in range(2):
        model, guide = _pair(x)
        r = mixzoo.fit(model, guide, x, epochs=5, batch_size=128, lr=0.05, seed=3, progress=False)
        runs.append((r.losses, model.loc.detach().clone()))
    assert runs[0][0] == runs[1][0]
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)
    model, guide = _pair(x)
    other = mixzoo.fit(model, guide, x, epochs=5, batch_size=128, lr=0.05, seed=4, progress=False)
    assert other.losses != runs[0][0]


def test_nan_stops_with_message_and_restores_last_good_parameters(blobs):
    x = blobs[0]
    model, guide = _pair(x)
    seen = {}

    def record(epoch, result):
        seen[epoch] = model.loc.detach().clone()

    def poison(epoch):
        if epoch == 3:
            with torch.no_grad():
                model.loc[0, 0] = float("nan")

    with pytest.raises(
        TrainingDivergedError, match="diverged in epoch 4.*restored the parameters of the last good epoch \\(3\\)"
    ) as info:
        mixzoo.fit(model, guide, x, epochs=10, lr=0.05, schedules=[poison], callback=record, progress=False)
    torch.testing.assert_close(model.loc.detach(), seen[2], rtol=0, atol=0)
    assert len(info.value.history.losses) == 3


def test_schedules_called_once_per_epoch_before_steps(blobs):
    x = blobs[0]
    calls = []
    model, guide = _pair(x)
    mixzoo.fit(model, guide, x, epochs=4, batch_size=500, schedules=[calls.append], progress=False)
    assert calls == [0, 1, 2, 3]


def test_early_stopping_restores_best(blobs):
    x = blobs[0]
    model, guide = _pair(x)
    r = mixzoo.fit(model, guide, x[:1000], val_data=x[1000:], epochs=400, lr=0.3, patience=3, progress=False)
    assert r.stopped == "early_stopping" and r.epochs < 400
    assert len(r.val_losses) == r.epochs
    best = min(r.val_losses)
    val = -mixzoo.log_likelihood(model, guide, x[1000:]).mean().item()
    assert val == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("decay, ratio", [(0.5, 0.5), (None, 1.0)])
def test_lr_decay_shrinks_the_steps(blobs, decay, ratio):
    x = blobs[0]
    model, guide = GaussianMixture(2, 3), EmptyGuide()
    locs = [model.loc.detach().clone()]
    mixzoo.fit(
        model,
        guide,
        x,
        epochs=6,
        lr=0.05,
        lr_decay=decay,
        progress=False,
        callback=lambda epoch, r: locs.append(model.loc.detach().clone()),
    )
    # one full-batch Adam step per epoch moves the fastest parameter by about the learning rate
    moves = torch.stack([(b - a).abs().max() for a, b in zip(locs, locs[1:], strict=False)])
    assert moves[0].item() == pytest.approx(0.05, rel=0.02)
    torch.testing.assert_close(moves[1:] / moves[:-1], torch.full((5,), ratio), atol=0.03, rtol=0)


def test_no_param_store_leakage(blobs):
    x = blobs[0]
    pyro.clear_param_store()
    pyro.param("users_own", torch.tensor(1.0))
    a, ga = _pair(x, seed=0)
    b, gb = _pair(x * 2, seed=0)
    mixzoo.fit(a, ga, x, epochs=30, lr=0.05, progress=False)
    mixzoo.fit(b, gb, x * 2, epochs=30, lr=0.05, progress=False)
    # same parameter names, yet each model kept its own values
    assert not torch.allclose(a.loc, b.loc)
    assert set(pyro.get_param_store().keys()) == {"users_own"}
    mixzoo.cluster_proba(a, ga, x)
    assert set(pyro.get_param_store().keys()) == {"users_own"}


def test_checkpoint_round_trip_gives_identical_proba(blobs, tmp_path):
    x = blobs[0]
    model, guide = _pair(x)
    mixzoo.fit(model, guide, x, epochs=20, lr=0.05, progress=False)
    run = prepare_run_dir(tmp_path / "run")
    save_checkpoint(run, {"model": model, "guide": guide}, {"dim": 2, "clusters": 3})
    state, config = load_checkpoint(run)
    fresh = GaussianMixture(config["dim"], config["clusters"])
    fresh.load_state_dict(state["model"])
    torch.testing.assert_close(
        mixzoo.cluster_proba(fresh, EmptyGuide(), x), mixzoo.cluster_proba(model, guide, x), rtol=0, atol=0
    )
    with pytest.raises(MixzooInputError, match="already holds a run; pass --overwrite"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, overwrite=True) == run


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr": -1.0}, "learning rate must be positive"),
        ({"patience": 3}, "patience .* needs val_data"),
        ({"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
    ],
)
def test_bad_options(blobs, kwargs, message):
    model, guide = _pair(blobs[0])
    with pytest.raises(MixzooInputError, match=message):
        mixzoo.fit(model, guide, blobs[0], progress=False, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_missing_is_a_clear_error(blobs):
    model, guide = _pair(blobs[0])
    with pytest.raises(MixzooInputError, match="this torch sees no CUDA GPU"):
        mixzoo.fit(model, guide, blobs[0], device="cuda", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_matches_cpu(blobs):
    x = blobs[0]
    results = []
    for device in ("cpu", "cuda"):
        model, guide = _pair(x)
        r = mixzoo.fit(model, guide, x, epochs=20, lr=0.05, device=device, progress=False)
        assert r.device.startswith(device)
        results.append(mixzoo.cluster_proba(model, guide, x.to(device)).cpu())
    torch.testing.assert_close(results[0], results[1], rtol=1e-3, atol=1e-3)


def test_a_guide_given_by_name_starts_from_the_seed():
    """The encoder built by name inside fit takes its starting weights after the seed is set, whatever the global
    random state was before the call."""
    import mixzoo
    from mixzoo.data import load_dataset

    d = load_dataset("moons", subsample=200)
    first = []
    for disturb in (1, 7):
        torch.rand(disturb)
        m = mixzoo.GaussianMixture(2, 2).initialize(d.x, seed=0)
        first.append(mixzoo.fit(m, "encoder", d.x, loss="trace-enum", epochs=1, seed=5, progress=False).losses[0])
    assert first[0] == first[1]
