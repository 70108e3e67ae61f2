"""Every tutorial notebook runs top to bottom (in its cheap mode), and is stored clean or executed in full mode."""

import json
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
EXPECTED = {
    "01_getting_started.ipynb",
    "02_flow_mixtures.ipynb",
    "03_gmvae.ipynb",
    "04_nce.ipynb",
    "05_neural_mixture.ipynb",
    "06_your_own_mixture.ipynb",
    "07_swapping_inference.ipynb",
    "08_honest_uncertainty.ipynb",
    "09_choosing_k.ipynb",
}


def test_the_tutorials_are_the_expected_notebooks():
    """A missing, renamed or extra notebook fails here, so none escapes the run below."""
    assert {p.name for p in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_stored_tutorial_is_whole(path):
    """A notebook is stored either clean or as benchmarks/tutorials.py wrote it: executed in full mode, every code cell
    run in order, and no error among its outputs."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    if all(n is None for n in counts) and not any(c.get("outputs") for c in code):
        return  # stored clean
    executed = nb["metadata"].get("mixzoo", {}).get("executed", {})
    assert executed.get("mode") == "full", f"{path.name}: outputs not written by benchmarks/tutorials.py"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: cells not run once each, in order: {counts}"
    errors = [i for i, c in enumerate(code) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: code cells {errors} stored with an error"
    with_output = sum(bool(c.get("outputs")) for c in code)
    assert with_output >= 0.8 * len(code), f"{path.name}: {with_output} of {len(code)} code cells show an output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_tutorial_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("MIXZOO_TUTORIAL_CHEAP", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors


INTERNAL = ("mixzoo.app", "mixzoo.config", "mixzoo.runs", "mixzoo.restarts", "mixzoo.family", "mixzoo.models.family")
"""Modules a tutorial must not import: what it needs is public (``mixzoo.__all__`` and the documented subpackages)."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_tutorial_uses_only_the_public_api(path):
    nb = json.loads(path.read_text())
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    used = [name for name in INTERNAL if f"{name} import" in source or f"import {name}" in source or f"{name}." in source]
    assert not used, f"{path.name} imports {used}"
