"""The benchmark scripts run end to end in their tiny mode and write well-formed sections elsewhere than docs/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> None:
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True, timeout=120)


def _section(text: str, key: str) -> str:
    start, end = text.index(f"<!-- {key} -->"), text.index(f"<!-- /{key} -->")
    return text[start:end]


def test_clustering_table_and_headline(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\n<!-- older -->\n## An older section\n<!-- /older -->\n")
    _run("benchmarks/clustering.py", "--data", "moons", "--tiny", "--out", str(doc))
    _run("benchmarks/headline.py", "--out", str(doc))  # reads the tables back: no torch, about a second
    text = doc.read_text()
    assert "## An older section" in text  # other sections stay
    section = _section(text, "clustering-moons")
    assert "## Clustering: moons" in section
    assert "Command: `python benchmarks/clustering.py --data moons --tiny --out " in section
    assert "Machine: " in section and "torch " in section and "device cpu" in section
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| method | library | inference |")
    body = lines[1:]
    assert any("| mixzoo |" in ln for ln in body) and any("| scikit-learn |" in ln for ln in body)
    assert all(" ± " in ln for ln in body)  # mean ± std of every row
    headline = _section(text, "clustering-headline")
    assert "| moons (tiny mode) |" in headline
    assert not (ROOT / "docs" / "benchmarks.md").read_text().count("--tiny")  # docs/ untouched
