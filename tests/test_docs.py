"""The documentation site builds with warnings as errors: every page, every cross-reference into the API, every
docstring the API reference shows, and the tutorials as stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_documentation_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path / "html"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"),
         "docs", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"sphinx -W failed:\n{done.stderr[-6000:]}"
    for page in ("index.html", "api/index.html", "api/training.html", "concepts.html", "cli.html",
                 "tutorials/index.html", "tutorials/01_getting_started.html"):  # fmt: skip
        assert (out / page).is_file(), page
    assert "mixzoo fit" in (out / "cli.html").read_text()  # the generated command-line reference is included
