import json

import numpy as np
import pytest
import torch
from cli_errors import one_error_line

from mixzoo import MixtureClusterer
from mixzoo.app.cli import main
from mixzoo.app.selection import parse_clusters, select_clusters, split_holdout
from mixzoo.errors import MixzooInputError


def test_parse_clusters():
    assert parse_clusters("2..5") == [2, 3, 4, 5]
    assert parse_clusters("2,4, 8,4") == [2, 4, 8]
    assert parse_clusters("1..3,7") == [1, 2, 3, 7]
    bad = {
        "2-5": "is not understood",
        "5..2": "runs backwards",
        "0..3": "at least 1, got 0",
        "3": "gives one candidate",
        "a,b": "is not understood",
        "": "is not understood",
    }
    for text, message in bad.items():
        with pytest.raises(MixzooInputError, match=message):
            parse_clusters(text)


def test_split_holdout_is_seeded_and_disjoint():
    tr, va = split_holdout(100, 0.2, seed=3)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    np.testing.assert_array_equal(va, split_holdout(100, 0.2, seed=3)[1])
    assert not np.array_equal(va, split_holdout(100, 0.2, seed=4)[1])


def _four(n=400, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, -5.0]])
    return means[rng.integers(0, 4, n)] + rng.standard_normal((n, 2))


def test_every_criterion_picks_the_true_k_and_structure_on_a_toy():
    sel = select_clusters(_four(), [1, 2, 4, 6], structures=["spherical", "full"], seed=0)
    assert [(r.clusters, r.options["covariance"]) for r in sel.rows] == [
        (k, c) for c in ("spherical", "full") for k in (1, 2, 4, 6)
    ]
    assert sel.criterion == "bic" and sel.choice == 4 and sel.choice_options == {"covariance": "spherical"}
    for criterion in ("icl", "heldout"):
        assert sel.choices[criterion][0] == 4, criterion
    assert sel.choices["loo"][0] in (4, 6)  # diagonal Laplace draws: LOO rules out the underfit, not the overfit
    row = next(r for r in sel.rows if r.clusters == 4 and r.options["covariance"] == "spherical")
    k, d = 4, 2
    assert row.bic == pytest.approx(-2 * row.loglik * 400 + (k - 1 + k * d + k) * np.log(400), rel=1e-6)
    assert row.icl >= row.bic  # ICL adds the entropy of the assignments
    one = next(r for r in sel.rows if r.clusters == 1 and r.options["covariance"] == "full")
    assert one.icl == pytest.approx(one.bic)  # one cluster: no assignment is uncertain
    assert all(type(r.elpd_loo) is float and type(r.p_loo) is float for r in sel.rows)  # plain, on both ArviZ lines


def test_one_cluster_is_chosen_where_there_is_no_structure():
    x = np.random.default_rng(1).normal(size=(300, 3))
    sel = select_clusters(x, [1, 2, 3], structures=["full"], loo=False)
    assert sel.choice == 1


def test_the_choice_is_the_same_from_every_seed():
    x = _four(seed=2)
    choices = {select_clusters(x, [2, 3, 4, 5], seed=s, loo=False).choices["bic"][0] for s in range(3)}
    assert choices == {4}


def test_a_family_without_a_likelihood_says_what_it_can_offer():
    with pytest.raises(MixzooInputError, match="neural-mixture' cannot be selected: its sigmoid relevance scores"):
        select_clusters(_four(60), [1, 2], model="neural-mixture")
    with pytest.raises(MixzooInputError, match="cannot be ranked by bic: the normalizers are estimated by NCE"):
        select_clusters(_four(60), [1, 2], model="energy-mixture", criterion="bic")


class _Means(torch.nn.Module):
    """A user's model class: unit-variance Gaussians with learned means, counting its parameters."""

    def __init__(self, dim, n_clusters):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.randn(n_clusters, dim))

    def forward(self, x, y=None, subsample=None):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(self.loc))), infer={"enumerate": "parallel"},
                            obs=None if y is None else y[idx])  # fmt: skip
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])

    def n_parameters(self):
        return self.loc.numel()


def test_a_users_model_class_is_selected_as_the_cli_selects_a_file():
    sel = select_clusters(_four(), [2, 4], model=_Means, seed=0, epochs=150, loo=False)
    assert sel.criteria == ("bic", "icl", "heldout") and sel.choice == 4


def test_select_cli_prints_table_and_json(capsys):
    code = main(["select", "--data", "moons", "--subsample", "200", "--clusters", "1..3", "--covariance", "full",
                 "--no-loo", "--json"])  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[1].split() == ["K", "covariance", "loglik", "bic", "icl", "heldout_ll", "elpd_loo", "seconds"]
    record = json.loads(out[-1])
    assert [r["clusters"] for r in record["table"]] == [1, 2, 3] and record["criterion"] == "bic"
    best = min(record["table"], key=lambda r: r["bic"])
    assert record["choice"] == best["clusters"] and record["choice_options"] == {"covariance": "full"}
    assert record["choices"]["heldout"]["clusters"] == max(record["table"], key=lambda r: r["heldout_loglik"])["clusters"]
    assert any(line.endswith("<- bic, icl") or "<- bic" in line for line in out)
    assert out[-2].startswith(f"choice: K={record['choice']}, covariance=full (best bic)")


def test_select_searches_the_structures_and_takes_a_criterion(capsys):
    assert main(["select", "--data", "pinwheel", "--subsample", "300", "--clusters", "4,5", "--criterion", "heldout",
                 "--no-loo", "--json"]) == 0  # fmt: skip
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {r["options"]["covariance"] for r in record["table"]} == {"full", "diag", "spherical", "tied", "tied-diag", "tied-spherical"}
    assert record["criterion"] == "heldout"
    assert main(["select", "--data", "moons", "--criterion", "loo", "--no-loo", "--clusters", "1,2"]) == 2
    assert "cannot be ranked by loo: --no-loo was given" in one_error_line(capsys)


def test_select_cli_bad_clusters_exit_2(capsys):
    assert main(["select", "--data", "moons", "--clusters", "2-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: --clusters")


def test_clusters_auto_from_the_cli_and_the_estimator(tmp_path, capsys):
    path = tmp_path / "four.csv"
    np.savetxt(path, _four(), delimiter=",", header="a,b", comments="")
    assert main(["fit", "--data", str(path), "--clusters", "auto", "--json", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out.splitlines()[-1])
    assert record["clusters"] == 4 and record["selection"]["choice"] == 4 and record["selection"]["criterion"] == "bic"
    assert "mixzoo: --clusters auto chose K=4, covariance " in captured.err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["clusters"] == 4 and saved["options"]["covariance"] == record["selection"]["choice_options"]["covariance"]
    est = MixtureClusterer(n_clusters="auto", random_state=0).fit(_four())
    assert est.n_clusters_ == 4 and est.n_clusters == "auto" and est.selection_.choice == 4
    assert est.predict_proba(_four(10)).shape == (10, 4)
    assert main(["fit", "--model", "neural-mixture", "--data", "moons", "--clusters", "auto"]) == 2
    assert "--clusters auto cannot choose K for model 'neural-mixture'" in one_error_line(capsys)
