"""The training state, part by part: random generators captured and put back, atomic writes, safe loading, the data
fingerprint and the checkpoint's checks. ``tests/test_resume.py`` runs them end to end."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import dataclass

import numpy as np
import pyro
import pytest
import torch

from mixzoo.errors import MixzooInputError
from mixzoo.inference.data_parallel import DistributedContext
from mixzoo.training import persistence
from mixzoo.training.persistence import FORMAT, atomic_save, capture_rng, data_fingerprint, restore_rng, safe_load
from mixzoo.training.resumable import TrainingCheckpoint


def _draws(batches: torch.Generator) -> list[object]:
    return [
        torch.rand(3).tolist(),
        torch.randint(0, 1000, (3,), generator=batches).tolist(),
        np.random.standard_normal(3).tolist(),  # a Gaussian pair: the second of it is cached
        np.random.randint(0, 1000, 3).tolist(),
        random.random(),
        random.gauss(0.0, 1.0),  # leaves its own cached second value
    ]


def test_every_generator_is_put_back_where_it_was():
    batches = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(4)
    np.random.standard_normal()  # numpy now holds a cached Gaussian
    random.gauss(0.0, 1.0)
    state = capture_rng(batches)
    assert state["numpy"]["has_gauss"] == 1 and isinstance(state["numpy"]["cached_gaussian"], float)
    assert state["python"]["gauss"] is not None
    first = _draws(batches)
    _draws(batches)  # move every generator on
    restore_rng(state, batches)
    assert _draws(batches) == first


def test_a_state_survives_the_safe_round_trip(tmp_path):
    batches = torch.Generator().manual_seed(5)
    np.random.seed(6)
    state = capture_rng(batches)
    atomic_save({"rng": state}, tmp_path / "s.pt")
    first = _draws(batches)
    restore_rng(safe_load(tmp_path / "s.pt")["rng"], batches)
    assert _draws(batches) == first


def test_atomic_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(3)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]
    assert torch.equal(safe_load(path)["a"], torch.zeros(3))


def test_a_save_that_fails_halfway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    atomic_save({"a": torch.ones(2)}, path)

    def broken(obj, f):
        with open(f, "wb") as out:
            out.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(persistence.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(safe_load(path)["a"], torch.ones(2))


class _Code:
    def __reduce__(self):
        return (print, ("ran",))


def test_safe_load_names_what_is_wrong(tmp_path):
    with pytest.raises(MixzooInputError, match=r"^training state '.*missing.pt' does not exist\.$"):
        safe_load(tmp_path / "missing.pt", "training state")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a torch file at all")
    with pytest.raises(MixzooInputError, match=r"^checkpoint '.*damaged.pt' cannot be read; it is damaged or not a torch"):
        safe_load(damaged)
    truncated = tmp_path / "truncated.pt"
    torch.save({"a": torch.ones(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(MixzooInputError, match=r"^checkpoint '.*truncated.pt' cannot be read \(.+\); it is damaged"):
        safe_load(truncated)
    code = tmp_path / "code.pt"
    torch.save({"x": _Code()}, code)
    with pytest.raises(MixzooInputError, match=r"^model '.*code.pt' was refused: it holds objects other than tensors "
                                               r"and plain containers \(.+\); mixzoo loads checkpoints with weights_only"):  # fmt: skip
        safe_load(code, "model")
    plain = tmp_path / "plain.pt"
    with open(plain, "wb") as f:
        pickle.dump({"a": 1}, f)  # a pickle, not a torch file: no code in it, so no refusal either
    with pytest.raises(MixzooInputError, match=r"cannot be read; it is damaged or not a torch file"):
        safe_load(plain)


def test_safe_load_reads_onto_the_cpu(tmp_path):
    atomic_save({"a": torch.arange(3.0)}, tmp_path / "s.pt")
    assert safe_load(tmp_path / "s.pt")["a"].device.type == "cpu"


@pytest.mark.parametrize("shape", [(7, 3), (persistence.FINGERPRINT_ROWS * 2 + 3, 2), (5, 1, 2, 2), (11,)])
def test_the_fingerprint_is_the_shape_and_float64_sums_of_every_value(shape):
    x = torch.from_numpy(np.random.default_rng(0).normal(3.0, 2.0, shape).astype(np.float32))
    fp = data_fingerprint(x)
    exact = x.numpy().astype(np.float64)
    assert fp["shape"] == list(shape)
    assert fp["sum"] == pytest.approx(float(exact.sum()), rel=1e-12)
    assert fp["sq"] == pytest.approx(float((exact * exact).sum()), rel=1e-12)
    assert isinstance(fp["sum"], float) and isinstance(fp["sq"], float)


def test_the_fingerprint_tells_data_apart():
    x = torch.arange(12.0).reshape(6, 2)
    assert data_fingerprint(x)["sum"] != data_fingerprint(x + 1e-3)["sum"]
    assert data_fingerprint(x)["shape"] != data_fingerprint(x.reshape(3, 4))["shape"]


def _checkpoint(path, x, world=1, rank=0, every=2, meta=None):
    return TrainingCheckpoint(path, every, x, _Context(rank, world), meta)


@dataclass(frozen=True)
class _Context(DistributedContext):
    """A process of a pretended group: gathering gives every rank this one's value."""

    def gather(self, obj):
        return [obj] * self.world


def _save(ck, epochs=3):
    module = torch.nn.Linear(2, 1)
    pyro.clear_param_store()
    ck.save(epochs, [module], {"adam": torch.ones(1)}, torch.Generator().manual_seed(0), {"loss": [1.0]}, None)
    return module


@pytest.mark.parametrize("every", [0, -1, True, 1.5, "2"])
def test_a_checkpoint_period_must_be_a_positive_integer(tmp_path, every):
    with pytest.raises(MixzooInputError, match=rf"^checkpoint_every must be a positive integer, got {every!r}\.$"):
        TrainingCheckpoint(tmp_path / "s.pt", every, torch.zeros(2, 2), DistributedContext())


def test_a_checkpoint_is_due_every_period_and_at_the_end(tmp_path):
    ck = _checkpoint(tmp_path / "s.pt", torch.zeros(2, 2), every=3)
    assert [e for e in range(1, 10) if ck.due(e, last=False)] == [3, 6, 9]
    assert ck.due(4, last=True)


def test_the_state_round_trips_and_is_checked_against_the_data_and_the_processes(tmp_path):
    x = torch.randn(20, 2)
    path = tmp_path / "state.pt"
    ck = _checkpoint(path, x, meta={"restart": 2})
    module = _save(ck)
    saved = ck.load()
    assert saved["format"] == FORMAT and saved["epoch"] == 3 and saved["world"] == 1
    assert saved["meta"] == {"restart": 2} and saved["history"] == {"loss": [1.0]} and saved["best"] is None
    assert torch.equal(saved["modules"][0]["weight"], module.weight.detach())
    assert torch.equal(saved["optim"]["adam"], torch.ones(1)) and saved["data"] == data_fingerprint(x)
    assert _checkpoint(path, x.clone()).load()["epoch"] == 3  # the same values: resumable
    with pytest.raises(MixzooInputError, match=r"was written for other data \(shape \[20, 2\]\); resume with the data "
                                               r"it started on \(shape \[20, 2\]\)"):  # fmt: skip
        _checkpoint(path, x + 0.01).load()
    with pytest.raises(MixzooInputError, match=r"\(shape \[20, 2\]\); resume with the data it started on \(shape \[10, 4\]\)"):
        _checkpoint(path, x.reshape(10, 4)).load()
    with pytest.raises(MixzooInputError, match=r"written by 1 process\(es\); resume with the same number, not 2\."):
        _checkpoint(path, x, world=2).load()


def test_the_data_check_tolerates_float_rounding_only(tmp_path):
    x = torch.full((4, 1), 1e6, dtype=torch.float64)
    path = tmp_path / "state.pt"
    _save(_checkpoint(path, x))
    nudged = x.clone()
    nudged[0, 0] += 1e-4  # a relative change of 2.5e-11 in the sum
    assert _checkpoint(path, nudged).load()["epoch"] == 3
    nudged[0, 0] += 1.0
    with pytest.raises(MixzooInputError, match="written for other data"):
        _checkpoint(path, nudged).load()
    tiny = torch.zeros(4, 1)
    _save(_checkpoint(path, tiny))
    assert _checkpoint(path, tiny + 1e-7).load()["epoch"] == 3  # a sum of 4e-7 is zero within 1e-6
    assert math.isclose(data_fingerprint(tiny + 1e-7)["sum"], 4e-7, rel_tol=1e-5)


def test_a_file_that_is_not_a_training_state_is_named(tmp_path):
    path = tmp_path / "other.pt"
    atomic_save({"format": "something else"}, path)
    with pytest.raises(MixzooInputError, match=r"'.*other.pt' is not a mixzoo training state; pass the file "
                                               r"fit\(checkpoint=\.\.\.\) wrote\."):  # fmt: skip
        _checkpoint(path, torch.zeros(2, 2)).load()
    atomic_save([1, 2], path)
    with pytest.raises(MixzooInputError, match="is not a mixzoo training state"):
        _checkpoint(path, torch.zeros(2, 2)).load()
    with pytest.raises(MixzooInputError, match=r"^training state '.*none.pt' does not exist"):
        _checkpoint(tmp_path / "none.pt", torch.zeros(2, 2)).load()


def test_only_the_main_process_writes_and_it_keeps_every_ranks_generators(tmp_path):
    x = torch.randn(6, 2)
    _save(_checkpoint(tmp_path / "other.pt", x, world=2, rank=1))
    assert not (tmp_path / "other.pt").exists()
    path = tmp_path / "main.pt"
    _save(_checkpoint(path, x, world=2, rank=0))
    saved = safe_load(path)
    assert saved["world"] == 2 and isinstance(saved["rng"], list) and len(saved["rng"]) == 2
    assert torch.equal(saved["rng"][1]["batches"], torch.Generator().manual_seed(0).get_state())
