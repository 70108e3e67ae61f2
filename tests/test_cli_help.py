"""The command line explains itself: --version, grouped --help with defaults and examples, readable models."""

import pytest
from cli_errors import one_error_line

import mixzoo
from mixzoo.app.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mixzoo {mixzoo.__version__}"


def test_fit_help_has_groups_defaults_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    for group in ("data:", "training (defaults: the gmm plan for the data; shown for a 2-D table of 1000 points):", "output:", "options of model gmm:"):
        assert group in out, group
    assert "(default: 300)" in out and "(default: 10000)" in out and "loss em takes none" in " ".join(out.split())  # gmm's plan
    assert "examples:" in out and "mixzoo fit --model my_model.py:MyMixture" in out
    with pytest.raises(SystemExit):  # the options of the chosen guide and loss join the help
        main(["fit", "--model", "gmm", "--guide", "encoder", "--loss", "vimco", "--help"])
    out = capsys.readouterr().out
    for group in ("options of guide encoder:", "--temperature", "options of loss vimco:", "--particles"):
        assert group in out, group


def test_models_names_papers_by_authors_and_year(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for cite in ("Matsuda and Hyvärinen 2019", "Tissera et al. 2022", "Li et al. 2020", "Ciobanu 2021", "Pires 2020"):
        assert cite in out
    assert " 000" not in out and " 004" not in out


def test_ctrl_c_says_how_to_resume(capsys, monkeypatch):
    import mixzoo.app.runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mixzoo.app.runs, "run_fit", interrupted)
    assert main(["fit", "--data", "moons"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume DIR" in err and "Traceback" not in err


def test_select_takes_the_family_options_and_refuses_others(capsys, monkeypatch):
    import mixzoo.app.selection

    seen = {}
    real = mixzoo.app.selection.select_clusters

    def recording(x, ks, **kwargs):
        seen.update(kwargs)
        return real(x, ks, **kwargs)

    monkeypatch.setattr(mixzoo.app.selection, "select_clusters", recording)
    assert main(["select", "--data", "moons", "--clusters", "2,3", "--covariance", "full", "--epochs", "3", "--no-loo"]) == 0
    assert seen["model_options"] == {"covariance": "full"}
    assert "LOO prefers" not in capsys.readouterr().out
    assert main(["select", "--data", "moons", "--clusters", "2,3", "--flow", "maf"]) == 2
    assert "--flow is an option of model flow-mixture" in one_error_line(capsys)
