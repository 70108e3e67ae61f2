"""Divergence retries, resumable training states and safe loading."""

import io
import os
import pickle
from itertools import pairwise

import pytest
import torch

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture, MixzooInputError, TrainingDivergedError
from mixzoo.guides.encoder import ClusterEncoder
from mixzoo.inference import VIMCO
from mixzoo.models import GMVAE
from mixzoo.models.gmvae import GMVAEGuide
from mixzoo.training.persistence import safe_load


class _Stop(Exception):
    pass


def _gmm(x):
    return GaussianMixture(2, 3).initialize(x, seed=0), EmptyGuide()


def _gmm_encoder(x):
    torch.manual_seed(0)
    return GaussianMixture(2, 3).initialize(x, seed=0), ClusterEncoder(2, 3, hidden=(8,)).initialize(x)


def _gmvae():
    torch.manual_seed(0)
    return GMVAE(2, 3, latent=2, hidden=(8,)), GMVAEGuide(2, 3, latent=2, hidden=(8,))


def _state(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


@pytest.mark.parametrize("family", ["gmm", "gmm-encoder-trace", "gmvae-vimco"])
def test_resumed_run_ends_with_the_uninterrupted_parameters(blobs, tmp_path, family):
    """Kill after epoch 4 of 9, resume from the epoch-4 state: bit-identical parameters and history.

    The sampling losses (the encoder's clusters drawn under ``trace``, VIMCO's particles) draw from the global torch
    generator: they repeat only if its state is saved and put back as well as the minibatch order's."""
    x = blobs[0][:600]
    kwargs = dict(epochs=9, batch_size=100, lr=0.02, lr_decay=0.9, seed=5, progress=False)
    if family == "gmm":
        build = lambda: _gmm(x)  # noqa: E731
    elif family == "gmm-encoder-trace":
        build = lambda: _gmm_encoder(x)  # noqa: E731
        kwargs["loss"] = "trace"  # the cluster drawn from the encoder at every step
    else:
        build = _gmvae
        kwargs["loss"] = VIMCO(num_particles=3)
    model, guide = build()
    full = mixzoo.fit(model, guide, x, checkpoint=tmp_path / "full.pt", checkpoint_every=2, **kwargs)
    expected, rng_after = _state(model, guide), torch.get_rng_state()

    def interrupt(epoch, result):
        if epoch == 4:
            raise _Stop

    model, guide = build()
    with pytest.raises(_Stop):
        mixzoo.fit(model, guide, x, checkpoint=tmp_path / "cut.pt", checkpoint_every=2, callback=interrupt, **kwargs)
    assert safe_load(tmp_path / "cut.pt")["epoch"] == 4
    model, guide = build()
    resumed = mixzoo.fit(model, guide, x, checkpoint=tmp_path / "cut.pt", resume=True, **kwargs)
    assert resumed.losses == full.losses and resumed.epochs == 9
    assert torch.equal(torch.get_rng_state(), rng_after)
    for got, want in zip(_state(model, guide), expected, strict=True):
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_resume_refuses_other_data_and_missing_state(blobs, tmp_path):
    x = blobs[0][:300]
    model, guide = _gmm(x)
    mixzoo.fit(model, guide, x, epochs=2, progress=False, checkpoint=tmp_path / "s.pt")
    with pytest.raises(MixzooInputError, match="written for other data"):
        mixzoo.fit(model, guide, x * 2, epochs=3, progress=False, checkpoint=tmp_path / "s.pt", resume=True)
    with pytest.raises(MixzooInputError, match="does not exist"):
        mixzoo.fit(model, guide, x, epochs=3, progress=False, checkpoint=tmp_path / "none.pt", resume=True)
    with pytest.raises(MixzooInputError, match="needs the checkpoint file"):
        mixzoo.fit(model, guide, x, epochs=3, progress=False, resume=True)


def test_checkpoint_files_are_replaced_atomically(blobs, tmp_path, monkeypatch):
    """Each save writes a new file and renames it over the old one: a reader sees a whole checkpoint or the
    previous one, never a file being written, and a save that dies halfway leaves the previous one intact."""
    x = blobs[0][:300]
    path = tmp_path / "s.pt"
    model, guide = _gmm(x)
    seen = []

    def look(epoch, result):  # called after each epoch, before that epoch's save
        if path.exists():
            seen.append((sorted(os.listdir(tmp_path)), path.stat().st_ino, safe_load(path)["epoch"]))
        else:
            seen.append((sorted(os.listdir(tmp_path)), None, None))

    mixzoo.fit(model, guide, x, epochs=4, progress=False, checkpoint=path, callback=look)
    assert [listing for listing, _, _ in seen] == [[], ["s.pt"], ["s.pt"], ["s.pt"]]  # never a temporary file
    assert [epoch for _, _, epoch in seen] == [None, 1, 2, 3]
    inodes = [ino for _, ino, _ in seen[1:]] + [path.stat().st_ino]
    assert all(a != b for a, b in pairwise(inodes)), f"a save wrote into the old file: inodes {inodes}"
    assert sorted(os.listdir(tmp_path)) == ["s.pt"]  # no temporary file left behind
    assert safe_load(path)["epoch"] == 4

    real_save, calls = torch.save, []

    def dies_halfway(obj, f, *args, **kwargs):  # the third save is killed after writing half its bytes
        calls.append(f)
        if len(calls) < 3:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        with open(f, "wb") as out:
            out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    model, guide = _gmm(x)
    with pytest.raises(OSError, match="no space left"):
        mixzoo.fit(model, guide, x, epochs=4, progress=False, checkpoint=path)
    assert len(calls) == 3
    assert safe_load(path)["epoch"] == 2  # the last whole checkpoint is still there


def _poison_once(model, at_epoch):
    done = []

    def poison(epoch):
        if epoch == at_epoch and not done:
            done.append(epoch)
            with torch.no_grad():
                model.loc[0, 0] = float("nan")

    return poison


def _recovers_after_one_retry(x, poisoned_epoch, epochs):
    """A parameter poisoned once at the start of ``poisoned_epoch``: one retry with half the lr finishes the run."""
    model, guide = _gmm(x)
    with pytest.warns(UserWarning, match=f"retrying from epoch {poisoned_epoch + 1} with half the learning rate"):
        r = mixzoo.fit(
            model, guide, x, epochs=epochs, lr=0.04, batch_size=500, progress=False, retries=1,
            schedules=[_poison_once(model, poisoned_epoch)],
        )  # fmt: skip
    assert r.epochs == epochs and r.retries == 1 and torch.isfinite(model.loc).all()


def test_divergence_names_epoch_and_step_and_retries_with_half_the_learning_rate(blobs):
    x = blobs[0]
    model, guide = _gmm(x)
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch 3, step 1: .*last good epoch \(2\)"):
        mixzoo.fit(model, guide, x, epochs=6, batch_size=500, progress=False, schedules=[_poison_once(model, 2)])
    assert torch.isfinite(model.loc).all()

    _recovers_after_one_retry(x, poisoned_epoch=2, epochs=6)


def test_a_retry_after_a_diverged_first_epoch_starts_with_fresh_optimizer_state(blobs):
    """The snapshot before epoch 1 has no Adam moments: the retry must not keep the NaN ones."""
    _recovers_after_one_retry(blobs[0], poisoned_epoch=0, epochs=3)


def test_retries_run_out(blobs):
    x = blobs[0]
    model, guide = _gmm(x)

    def always(epoch):
        if epoch == 1:
            with torch.no_grad():
                model.loc[0, 0] = float("inf")

    with pytest.warns(UserWarning, match="retrying"), pytest.raises(TrainingDivergedError, match="after 2 retries"):
        mixzoo.fit(model, guide, x, epochs=4, progress=False, retries=2, schedules=[always])


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_a_pickle_that_runs_code_is_refused_unexecuted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": _Payload()}, run / "checkpoint.pt")
    (run / "config.json").write_text('{"model": "gmm", "dim": 2, "clusters": 3}')
    with pytest.raises(MixzooInputError, match="refused: it holds objects other than tensors"):
        mixzoo.load_checkpoint(run)
    with pytest.raises(MixzooInputError, match="refused"):
        safe_load(run / "checkpoint.pt")
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    with open(run / "checkpoint.pt", "wb") as f:
        pickle.dump(_Payload(), f)
    with pytest.raises(MixzooInputError, match="refused|cannot be read"):
        mixzoo.load_checkpoint(run)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path, blobs):
    model, guide = _gmm(blobs[0])
    run = tmp_path / "run"
    run.mkdir()
    mixzoo.save_checkpoint(run, {"model": model, "guide": guide}, {"dim": 2})
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(MixzooInputError, match="cannot be read"):
        mixzoo.load_checkpoint(run)


def test_checkpoint_of_another_model_or_k_is_a_clear_error(tmp_path):
    import json

    from mixzoo.app.config import FitConfig
    from mixzoo.app.runs import load_run, run_fit

    run = tmp_path / "run"
    run_fit(FitConfig(model="gmm", data="moons", epochs=2), out=str(run), progress=False)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "clusters": 4}))
    with pytest.raises(MixzooInputError, match="does not fit a 'gmm' model with K=4, D=2.*another model or number of clusters"):
        load_run(str(run))
    (run / "config.json").write_text(json.dumps({**config, "model": "flow-mixture", "options": {}, "guide": None, "loss": None}))
    with pytest.raises(MixzooInputError, match="does not fit a 'flow-mixture' model"):
        load_run(str(run))
    (run / "config.json").write_text(json.dumps({**config, "colour": "blue"}))
    with pytest.raises(MixzooInputError, match="unknown entries: \\['colour'\\]"):
        load_run(str(run))
