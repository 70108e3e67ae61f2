"""Progress reports: plain lines with epoch, loss and time left when not on a terminal; no bar in logs."""

from __future__ import annotations

import io

import numpy as np
import pytest

import mixzoo
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


def test_fit_writes_no_bar_into_a_log(capfd: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    mixzoo.fit(mixzoo.GaussianMixture(2, 2), mixzoo.EmptyGuide(), x, epochs=5)
    assert "\r" not in capfd.readouterr().err
