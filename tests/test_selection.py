import json

import numpy as np
import pytest

from mixzoo.app.cli import main
from mixzoo.app.selection import parse_clusters, select_clusters, split_holdout
from mixzoo.errors import MixzooInputError


def test_parse_clusters():
    assert parse_clusters("2..5") == [2, 3, 4, 5]
    assert parse_clusters("2,4, 8,4") == [2, 4, 8]
    assert parse_clusters("2..3,7") == [2, 3, 7]
    bad = {
        "2-5": "is not understood",
        "5..2": "runs backwards",
        "1..3": "at least 2, got 1",
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


def test_select_picks_the_true_k_on_a_toy():
    rng = np.random.default_rng(0)
    means = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, -5.0]])
    x = means[rng.integers(0, 4, 400)] + rng.standard_normal((400, 2))
    sel = select_clusters(x, [2, 4, 6], seed=0, epochs=100)
    assert [r.clusters for r in sel.rows] == [2, 4, 6]
    assert sel.choice == 4
    # LOO (diagonal Laplace draws) is reported beside it; it must at least rule out the underfit K = 2
    elpd = {r.clusters: r.elpd_loo for r in sel.rows}
    assert min(elpd, key=elpd.get) == 2 and sel.choice_loo in (4, 6)
    assert all(type(r.elpd_loo) is float and type(r.p_loo) is float for r in sel.rows)  # plain, on both ArviZ lines
    bic = {r.clusters: r.bic for r in sel.rows}
    assert min(bic, key=bic.get) == 4
    assert sel.n_heldout == 80


def test_select_cli_prints_table_and_json(capsys):
    code = main(["select", "--data", "moons", "--subsample", "200", "--clusters", "2,3", "--epochs", "20", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[1].split()[:3] == ["K", "train_ll", "heldout_ll"]
    assert any("<- choice" in line for line in out)
    record = json.loads(out[-1])
    assert [r["clusters"] for r in record["table"]] == [2, 3]
    best = max(record["table"], key=lambda r: r["heldout_loglik"])
    assert record["choice"] == best["clusters"] and record["n_train"] == 160
    assert record["choice_loo"] == max(record["table"], key=lambda r: r["elpd_loo"])["clusters"]


def test_select_cli_bad_clusters_exit_2(capsys):
    assert main(["select", "--data", "moons", "--clusters", "2-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: --clusters")
