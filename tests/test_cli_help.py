"""The command line explains itself: --version, grouped --help with defaults and examples, readable models."""

import pytest

import mixzoo
from mixzoo.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mixzoo {mixzoo.__version__}"


def test_fit_help_has_groups_defaults_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    for group in ("data:", "training (defaults: the gmm recipe):", "output:", "options of model gmm:"):
        assert group in out, group
    assert "(default: 300)" in out and "(default: 0.1)" in out and "(default: 2048)" in out  # gmm's recipe
    assert "examples:" in out and "mixzoo fit --model my_model.py:MyMixture" in out


def test_models_names_papers_by_authors_and_year(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for cite in ("Matsuda and Hyvärinen 2019", "Tissera et al. 2022", "Li et al. 2020", "Ciobanu 2021", "Pires 2020"):
        assert cite in out
    assert " 000" not in out and " 004" not in out


def test_ctrl_c_says_how_to_resume(capsys, monkeypatch):
    import mixzoo.runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mixzoo.runs, "run_fit", interrupted)
    assert main(["fit", "--data", "moons"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume DIR" in err and "Traceback" not in err
