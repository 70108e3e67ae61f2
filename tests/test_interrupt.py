"""A fit killed by a signal resumes with `mixzoo fit --resume DIR` and ends where an uninterrupted run ends."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from mixzoo.training.persistence import safe_load

ARGS = ["--model", "gmm", "--data", "digits", "--pca", "8", "--subsample", "600", "--epochs", "10"]
ARGS += ["--batch-size", "24", "--n-init", "2", "--seed", "3", "--json", "--no-progress"]


def _mixzoo(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "mixzoo", "fit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for_restart(run, restart, timeout=120):
    """Block until the training state of ``restart`` is on disk."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = run / "train_state.pt"
        if state.is_file():
            try:
                if safe_load(state)["meta"]["restart"] == restart:
                    return
            except Exception:  # mid-rename on some file systems; look again
                pass
        time.sleep(0.02)
    raise AssertionError("the run never reached the expected restart")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ref = _mixzoo(*ARGS, "--out", str(whole))
    proc = _mixzoo(*ARGS, "--out", str(cut), "--checkpoint-every", "2")
    _wait_for_restart(cut, 1)  # restart 0 finished, restart 1 under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "metrics.json").exists() and (cut / "best_restart.pt").is_file()

    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    resumed = subprocess.run(
        [sys.executable, "-m", "mixzoo", "fit", "--resume", str(cut), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(out.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    for key in ("acc", "nmi", "ari", "final_loss", "epochs"):
        assert a[key] == b[key], key
    want = torch.load(whole / "checkpoint.pt", weights_only=True)
    got = torch.load(cut / "checkpoint.pt", weights_only=True)
    for part in ("model", "guide"):
        for k, v in want[part].items():
            torch.testing.assert_close(got[part][k], v, rtol=0, atol=0)
    assert not (cut / "train_state.pt").exists() and not (cut / "best_restart.pt").exists()


def test_resume_error_messages(tmp_path, capsys):
    from mixzoo.app.cli import main

    def refused(args: list[str], message: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mixzoo: error: ") and message in err[0], err

    refused(["fit", "--resume", str(tmp_path)], "is empty: the run was started without --checkpoint-every")
    (tmp_path / "note.txt").write_text("not a run")
    refused(["fit", "--resume", str(tmp_path)], "not a run directory with a config.json")
    run = tmp_path / "run"
    assert main(["fit", "--model", "gmm", "--data", "moons", "--epochs", "2", "--out", str(run), "--checkpoint-every", "1"]) == 0
    capsys.readouterr()
    refused(["fit", "--resume", str(run), "--epochs", "5", "--model", "flow-mixture"], "drop --epochs, --model")
    refused(["fit", "--resume", str(run)], "already finished")
    refused(["fit", "--model", "gmm", "--data", "moons", "--checkpoint-every", "1"], "needs --out DIR")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_with_out_alone_leaves_a_resumable_run_and_says_how(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = [*ARGS, "--loss", "trace-enum", "--epochs", "40", "--n-init", "1", "--tol", "0"]
    ref = subprocess.run([sys.executable, "-m", "mixzoo", "fit", *args, "--out", str(whole)], capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    proc = _mixzoo(*args, "--out", str(cut))  # no --checkpoint-every
    _wait_for_restart(cut, 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"continue with `mixzoo fit --resume {cut}`" in err and "Traceback" not in err
    resumed = subprocess.run([sys.executable, "-m", "mixzoo", "fit", "--resume", str(cut), "--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(ref.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert a["final_loss"] == b["final_loss"] and a["epochs"] == b["epochs"] == 40
