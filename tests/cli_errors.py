"""What every refused command must write: one line on standard error, ``mixzoo: error: ...``."""

from __future__ import annotations

import pytest


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The standard error captured since the last read, checked to be a single ``mixzoo: error:`` line; returns it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixzoo: error: "), err
    return err[0]
