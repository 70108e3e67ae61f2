"""Progress reports: plain lines with epoch, loss and time left when not on a terminal; no bar in logs."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest

import mixzoo
from mixzoo.training import loop
from mixzoo.training.progress import Progress


def test_plain_lines_name_epoch_loss_and_time_left() -> None:
    out = io.StringIO()
    report = Progress(0, 10, interval=0.0, stream=out)
    for epoch in range(3):
        report.update(epoch, 12.5 - epoch, val=13.0)
    report.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[-1].startswith("fit: epoch 3/10, loss 10.5, held-out 13") and "left" in lines[-1]


def test_a_short_run_or_a_silent_process_prints_nothing() -> None:
    out = io.StringIO()
    quiet = Progress(0, 10, interval=60.0, stream=out)
    silent = Progress(0, 10, interval=0.0, stream=out, enabled=False)
    for epoch in range(10):
        quiet.update(epoch, 1.0)
        silent.update(epoch, 1.0)
    assert out.getvalue() == ""


def test_fit_writes_no_bar_into_a_log(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard error is not a terminal here: fit reports each epoch as a plain line (every epoch once the
    interval is zero), with no carriage return."""
    monkeypatch.setattr(loop, "Progress", functools.partial(Progress, interval=0.0))
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    result = mixzoo.fit(mixzoo.GaussianMixture(2, 2), mixzoo.EmptyGuide(), x, epochs=5)
    err = capfd.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("fit: ")]
    assert len(lines) == 5, err
    for epoch, (line, loss) in enumerate(zip(lines, result.losses, strict=True), start=1):
        assert line.startswith(f"fit: epoch {epoch}/5, loss {loss:.4g}, ") and line.endswith(" left"), line


def test_fit_without_progress_prints_nothing(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "Progress", functools.partial(Progress, interval=0.0))
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    mixzoo.fit(mixzoo.GaussianMixture(2, 2), mixzoo.EmptyGuide(), x, epochs=5, progress=False)
    assert "fit: " not in capfd.readouterr().err
