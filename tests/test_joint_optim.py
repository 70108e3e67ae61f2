import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from pyro.optim import Adam, ExponentialLR

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture
from mixzoo.inference.optimizer import JointOptim
from mixzoo.param_store import isolated_param_store


def _start(x):
    with isolated_param_store():
        return GaussianMixture(2, 3).initialize(x, seed=0).state_dict()


def _batches(x, steps, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(len(x), generator=g)[:128] for _ in range(steps)]


def _run(x, optim, model_state, batches, *, every=None, optim_state=None):
    """SVI steps of a GMM from ``model_state`` in a param store of its own; returns (parameters, optimizer state)."""
    with isolated_param_store():
        model = GaussianMixture(2, 3)
        model.load_state_dict(model_state)
        svi = SVI(model, EmptyGuide(), optim, TraceEnum_ELBO(max_plate_nesting=1))
        if optim_state is not None:
            optim.set_state(optim_state)
        for i, idx in enumerate(batches):
            svi.step(x, subsample=idx)
            if every and (i + 1) % every == 0:
                optim.step()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, optim.get_state()


def _joint(decay):
    return lambda: JointOptim(torch.optim.Adam, {"lr": 0.05}, gamma=decay)


def _per_param(decay):
    if decay is None:
        return lambda: Adam({"lr": 0.05})
    return lambda: ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.05}, "gamma": decay})


def _assert_same(a, b, msg=""):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{msg} {k}")


@pytest.mark.parametrize("decay", [None, 0.9])
def test_joint_adam_equals_per_parameter_adam_exactly(blobs, decay):
    x = blobs[0]
    start, batches, every = _start(x), _batches(x, 40, 0), 10 if decay else None
    per_param, _ = _run(x, _per_param(decay)(), start, batches, every=every)
    joint, _ = _run(x, _joint(decay)(), start, batches, every=every)
    _assert_same(joint, per_param)
    assert not torch.equal(joint["loc"], start["loc"])


@pytest.mark.parametrize("decay", [None, 0.9])
def test_state_moves_between_joint_and_per_parameter_optimizers(blobs, decay):
    """A state saved halfway by either optimizer continues in either as if never interrupted."""
    x = blobs[0]
    start, every = _start(x), 10 if decay else None
    first, second = _batches(x, 20, 0), _batches(x, 20, 1)
    whole, _ = _run(x, _joint(decay)(), start, first + second, every=every)
    for save, load in ((_joint, _joint), (_joint, _per_param), (_per_param, _joint)):
        half, state = _run(x, save(decay)(), start, first, every=every)
        assert set(state) == {"loc", "log_scale", "logits"}
        resumed, _ = _run(x, load(decay)(), half, second, every=every, optim_state=state)
        _assert_same(resumed, whole, f"{save.__name__} -> {load.__name__}")
    fresh, _ = _run(x, _joint(decay)(), half, second, every=every)  # without the state: another path
    assert not torch.equal(fresh["loc"], whole["loc"])


def test_parameters_absent_from_a_step_are_not_updated():
    pyro.clear_param_store()

    def model(use_b):
        a = pyro.param("a", torch.tensor(0.0))
        loc = a + (pyro.param("b", torch.tensor(0.0)) if use_b else 0.0)
        pyro.sample("obs", dist.Normal(loc, 1.0), obs=torch.tensor(3.0))

    def guide(use_b):
        pass

    optim = JointOptim(torch.optim.Adam, {"lr": 0.1})
    svi = SVI(model, guide, optim, Trace_ELBO())
    svi.step(True)
    b = pyro.param("b").item()
    for _ in range(5):
        svi.step(False)  # "b" keeps its Adam momentum but is not in these traces: it must not move
    assert pyro.param("b").item() == b
    svi.step(True)
    assert pyro.param("b").item() != b


def test_fit_uses_one_optimizer_step_per_svi_step(blobs, monkeypatch):
    x = blobs[0]
    calls = []
    original = torch.optim.Adam.step

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    model = GaussianMixture(2, 3).initialize(x, seed=0)
    mixzoo.fit(model, EmptyGuide(), x, epochs=2, batch_size=500, lr=0.05, progress=False)
    assert len(calls) == 2 * 3  # 2 epochs of 3 minibatches, one optimizer step each (not one per parameter)


def _staged_model(step):
    """Parameters "a", "b", "c" first appear at steps 0, 1 and 2: three parameter groups."""
    names = "abc"[: min(step, 2) + 1]
    loc = sum(pyro.param(n, torch.zeros(3)) for n in names)
    pyro.sample("obs", dist.Normal(loc, 1.0).to_event(1), obs=torch.ones(3))


def test_state_with_several_groups_and_decay_keeps_each_learning_rate():
    with isolated_param_store():
        optim = JointOptim(torch.optim.Adam, {"lr": 0.1}, gamma=0.5)
        svi = SVI(_staged_model, lambda step: None, optim, Trace_ELBO())
        for step in range(3):
            svi.step(step)
            optim.step()  # decay after each step: "a" has decayed most
        state = optim.get_state()  # several groups of equal-sized tensors: must not compare tensors
        lrs = {n: st["optimizer"]["param_groups"][0]["lr"] for n, st in state.items()}
        assert lrs == pytest.approx({"a": 0.0125, "b": 0.025, "c": 0.05})
    with isolated_param_store():
        resumed = JointOptim(torch.optim.Adam, {"lr": 0.1}, gamma=0.5)
        resumed.set_state(state)
        svi = SVI(_staged_model, lambda step: None, resumed, Trace_ELBO())
        svi.step(2)  # all three appear at once, in one group, then take their saved rates
        again = {n: st["optimizer"]["param_groups"][0]["lr"] for n, st in resumed.get_state().items()}
        assert again == pytest.approx(lrs)
        resumed.step()
        after = {n: st["optimizer"]["param_groups"][0]["lr"] for n, st in resumed.get_state().items()}
        assert after == pytest.approx({n: v / 2 for n, v in lrs.items()})


def test_restore_clears_the_state_of_parameters_the_snapshot_did_not_have(blobs):
    x = blobs[0]
    with isolated_param_store():
        model = GaussianMixture(2, 3)
        model.load_state_dict(_start(x))
        optim = JointOptim(torch.optim.Adam, {"lr": 0.05})
        svi = SVI(model, EmptyGuide(), optim, TraceEnum_ELBO(max_plate_nesting=1))
        svi.step(x)
        assert optim.optimizer.state  # Adam moments exist now
        optim.restore({})  # the snapshot from before the first step: no moments at all
        assert not optim.optimizer.state
