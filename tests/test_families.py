"""Every registered model family, found in the registry (a new family file joins by itself).

For each family, with its own ``quick`` configuration: seeded runs repeat exactly, an
interrupted run resumes to the same parameters, and every command-line flag is honoured
(it reaches the configuration that training uses) or refused with exit 2 before any data
are read, never silently ignored.
"""

from __future__ import annotations

import pytest
import torch
from conftest import planned, quick_config

import mixzoo.app.runs
from mixzoo.app.cli import main
from mixzoo.app.config import FitConfig
from mixzoo.app.restarts import train_one
from mixzoo.app.runs import load_data, run_fit
from mixzoo.guides import GUIDES
from mixzoo.inference import ALGORITHMS
from mixzoo.models import MODELS
from mixzoo.options import flag_name

FAMILIES = sorted(MODELS)


def _quick(name: str, **more) -> FitConfig:
    return quick_config(name, **more)


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_metrics(name):
    records = [run_fit(_quick(name, seed=7, n_init=1), progress=False) for _ in range(2)]
    for key in ("acc", "nmi", "ari", "final_loss", "expected_misclassified"):
        assert records[0][key] == records[1][key], key


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", FAMILIES)
def test_an_interrupted_run_resumes_to_the_same_parameters(name, tmp_path):
    c, x, plan = planned(_quick(name, seed=3))
    c.epochs = max(3, c.epochs)

    def run(**kwargs):
        model, guide, result = train_one(
            c, plan, x, c.seed, loss=c.algorithm.loss(c.loss_opts()), x_train=x, progress=False, **kwargs
        )
        return {
            **{f"m.{k}": v for k, v in model.state_dict().items()},
            **{f"g.{k}": v for k, v in guide.state_dict().items()},
        }, result

    whole, whole_result = run()

    def stop(epoch, result):
        if epoch == 1:
            raise _Interrupt

    state = tmp_path / "state.pt"
    with pytest.raises(_Interrupt):
        run(checkpoint=state, checkpoint_every=1, callback=stop)
    resumed, resumed_result = run(checkpoint=state, checkpoint_every=1, resume=True)
    assert resumed_result.losses == whole_result.losses
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)


class _DataRead(Exception):
    def __init__(self, config):
        self.config = config


def _sample_value(info):
    """A valid value of an option that differs from its default, as command-line words."""
    if info.kind is bool:
        return [info.flag if not info.default else "--no-" + info.flag[2:]], not info.default
    if info.choices:
        value = next(c for c in info.choices if c != info.default)
        return [info.flag, str(value)], value
    if info.kind is tuple:
        return [info.flag, "8,8"], [8, 8]
    if info.kind is int:
        return [info.flag, str(info.default + 1)], info.default + 1
    value = info.default * 0.5 if info.default else 0.5
    return [info.flag, str(value)], value


GENERAL = {  # flag words -> (config attribute, value it must reach)
    "--clusters 3": ("clusters", 3),
    "--epochs 2": ("epochs", 2),
    "--batch-size 16": ("batch_size", 16),
    "--lr 0.02": ("lr", 0.02),
    "--lr-decay 0.9": ("lr_decay", 0.9),
    "--n-init 2": ("n_init", 2),
    "--labels 10": ("labels", 10),
    "--retries 2": ("retries", 2),
    "--pretrain-classes 0": ("pretrain_classes", "0"),
    "--classifier-epochs 2": ("classifier_epochs", 2),
    "--classifier cnn": ("classifier", "cnn"),
    "--cluster-classes 5,6": ("cluster_classes", "5,6"),
    "--seed 4": ("seed", 4),
    "--pca 2": ("pca", 2),
    "--scale": ("scale", "features"),
    "--dequantize": ("dequantize", True),
    "--subsample 100": ("subsample", 100),
    "--data-dir /somewhere": ("data_dir", "/somewhere"),
    "--checkpoint-every 1": ("checkpoint_every", 1),
    "--threads 2": ("threads", 2),
    "--tol 0.001": ("tol", 0.001),
}


def _flag_cases():
    for name in FAMILIES:
        family = MODELS[name]
        for words, (attr, value) in GENERAL.items():
            yield name, words.split(), attr, value
        table = family.inference_table()
        other = next(((g, loss) for g, row in table.items() for loss, why in row.items()
                      if why is None and (g, loss) != (family.default_guide, family.default_loss)), None)  # fmt: skip
        if other is not None:
            yield name, ["--guide", other[0], "--loss", other[1]], "loss", other[1]
        for other in MODELS.values():
            for info in other.options.infos():
                words, value = _sample_value(info)
                yield name, words, ("options", info.name), value
        for spec in GUIDES.values():
            for info in spec.options.infos():
                words, value = _sample_value(info)
                yield name, words, ("guide_options", info.name), value
        for algorithm in ALGORITHMS.values():
            for info in algorithm.options.infos():
                words, value = _sample_value(info)
                yield name, words, ("loss_options", info.name), value


@pytest.mark.parametrize(
    ("name", "words", "attr", "value"),
    [pytest.param(*case, id=f"{case[0]} {' '.join(case[1])}") for case in _flag_cases()],
)
def test_every_flag_is_honoured_or_refused_before_the_data_are_read(name, words, attr, value, monkeypatch, capsys):
    def read(config, **_):
        raise _DataRead(config)

    monkeypatch.setattr(mixzoo.app.runs, "load_data", read)
    try:
        code = main(["fit", "--model", name, "--data", "moons", *words])
    except _DataRead as reached:
        c = reached.config
        got = getattr(c, attr[0]).get(attr[1]) if isinstance(attr, tuple) else getattr(c, attr)
        assert got == value, f"{words} did not reach the configuration ({got!r})"
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mixzoo: error: ")
    assert words[0] in err[0] or flag_name(words[0][2:]) in err[0] or words[0].replace("--no-", "--") in err[0], err[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_option_values_are_refused_with_the_flag_named(name, capsys, monkeypatch):
    monkeypatch.setattr(mixzoo.app.runs, "load_data", lambda c, **_: pytest.fail("data were read"))
    for info in MODELS[name].options.infos():
        if info.kind is bool:
            continue
        bad = "not-a-number" if info.kind in (int, float) else "x,y" if info.kind is tuple else "no-such-choice"
        if info.kind is str and not info.choices:
            continue
        assert main(["fit", "--model", name, info.flag, bad]) == 2
        err = capsys.readouterr().err
        assert info.flag in err, err


def _help_entries(out: str) -> dict[str, str]:
    """Each option's entry in an argparse help text, by its first flag: the flag's line and the wrapped lines under it."""
    entries: dict[str, str] = {}
    flag = None
    for line in out.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif flag is not None and line.startswith("   ") and line.strip():
            entries[flag] += "\n" + line
        else:
            flag = None
    return entries


@pytest.mark.parametrize("name", FAMILIES)
def test_help_shows_exactly_the_family_options_with_their_defaults(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--model", name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    own = {i.flag for i in MODELS[name].options.infos()}
    entries = _help_entries(out)
    for info in MODELS[name].options.infos():
        assert info.flag in entries, f"{info.flag} has no entry in the help"
        default = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else str(info.default)
        entry = "".join(entries[info.flag].split())  # argparse wraps lines at spaces and hyphens
        assert f"(default:{''.join((default or 'none').split())}" in entry, (info.flag, info.default, entries[info.flag])
    others = {i.flag for f in MODELS.values() for i in f.options.infos()} - own
    assert not any(f"  {flag} " in out or f"  {flag}\n" in out for flag in others)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_estimator_checks_model_options_with_the_family_dataclass(name):
    from mixzoo.app.estimator import MixtureClusterer

    with pytest.raises(ValueError, match="do not apply to model"):
        MixtureClusterer(model=name, n_clusters=2, model_options={"no_such_option": 1}).fit(
            [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]
        )


@pytest.mark.parametrize("name", FAMILIES)
def test_a_reloaded_run_gives_the_same_probabilities(name, tmp_path):
    """Annealed state (temperatures, std floors) is saved with the run, not rebuilt at its initial value."""
    import numpy as np

    from mixzoo.analysis.posterior import cluster_proba
    from mixzoo.app.run_dir import run_temperature
    from mixzoo.app.runs import load_run

    run = tmp_path / "run"
    run_fit(_quick(name, seed=5), out=str(run), progress=False)
    model, guide, c = load_run(str(run))
    data, _ = load_data(c)
    proba = cluster_proba(model, guide, data.x, temperature=run_temperature(run)).numpy()
    np.testing.assert_allclose(proba, np.load(run / "proba.npy"), atol=1e-5)
