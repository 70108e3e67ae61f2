"""The thread count of a fit: chosen by the size of the work, set by --threads, restored afterwards."""

import json

import pytest
import torch
from cli_errors import one_error_line

from mixzoo.app.cli import main
from mixzoo.errors import MixzooInputError
from mixzoo.training.threads import SMALL_WORK, choose_threads


def test_small_work_takes_one_thread_and_large_work_torch_default():
    assert choose_threads(None, 1797, 64, 10) == 1
    assert choose_threads(None, 70000, 784, 10) == torch.get_num_threads()
    assert 1797 * 64 * 10 < SMALL_WORK <= 70000 * 50 * 10
    assert choose_threads(3, 10, 2, 2) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(MixzooInputError, match="--threads must be a positive integer"):
            choose_threads(bad, 10, 2, 2)


def test_the_cli_records_the_threads_and_puts_torch_back(capsys):
    before = torch.get_num_threads()
    assert main(["fit", "--data", "moons", "--epochs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["threads"] == 1
    assert main(["fit", "--data", "moons", "--epochs", "2", "--threads", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["threads"] == 2
    assert torch.get_num_threads() == before
    assert main(["fit", "--data", "moons", "--threads", "0"]) == 2
    assert "--threads must be an integer of at least 1" in one_error_line(capsys)


def test_the_estimator_takes_threads():
    from mixzoo.app.estimator import MixtureClusterer

    x = torch.randn(60, 2).numpy()
    before = torch.get_num_threads()
    MixtureClusterer(n_clusters=2, epochs=2, threads=1, random_state=0).fit(x)
    assert torch.get_num_threads() == before
    with pytest.raises(MixzooInputError, match="--threads"):
        MixtureClusterer(n_clusters=2, epochs=2, threads=0).fit(x)
