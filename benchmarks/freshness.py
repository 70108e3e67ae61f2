"""Which sections of docs/benchmarks.md are older than the code they measure.

    python benchmarks/freshness.py [--doc FILE] [--stale]

For each ``<!-- key -->`` section: the commit it records (``commit <hash>`` on its ``Machine:`` line, written by
``report.machine``), the script that writes it (the file of ``benchmarks/`` that calls ``write_section`` with its
key), and the commits since then that changed ``mixzoo/`` or that script. A section is **stale** when such commits
exist, **unrecorded** when it names no commit (written before sections recorded one), and marked **README** when the
README links to it: those are the figures to rerun first. A section drawn from others ("From the section `key`",
"From the sections `a`, `b`": a summary, the headline) is as old as the first of them that is not fresh; while they
all are, it is stale only when its own script changed since it was written (its own commit, else theirs).
``--stale`` lists only stale, unrecorded and uncommitted ones (a hash ending in ``+`` was measured on changes no
commit holds). Lists; it does not fail.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import DOC, ROOT, table  # noqa: E402

SECTION = re.compile(r"<!-- ([\w.-]+) -->\n(.*?)\n<!-- /\1 -->", re.S)
COMMIT = re.compile(r"^Machine:.*?; commit ([0-9a-f]{7,40}\+?)", re.M)
DERIVED = re.compile(r"^From the sections? ((?:`[\w.-]+`(?:, | and |, and )?)+)", re.M)


def sections(text: str) -> dict[str, str]:
    """``{key: body}`` of every marked section."""
    return {m.group(1): m.group(2) for m in SECTION.finditer(text)}


def recorded_commit(body: str) -> str | None:
    """The commit a section's ``Machine:`` line records, or ``None``."""
    m = COMMIT.search(body)
    return m.group(1) if m else None


def sources(body: str) -> list[str]:
    """The sections a section says it is drawn from (:data:`DERIVED`), in its order."""
    m = DERIVED.search(body)
    return re.findall(r"`([\w.-]+)`", m.group(1)) if m else []


WRITE = re.compile(r"""write_section\(\s*(f?)["']([\w.-]+)(\{|["']\s*\+|["'])""")
"""A call that writes a section: its key, or the literal start of a key built from values (``f"clustering-{name}"``,
``"nce-transfer-pairs" + suffix``), which names every section that starts with it."""


NAMED = re.compile(r"""^\s*(\w+) = f["']([\w.-]+)\{""", re.M)
"""A key built in a variable first, ``key = f"prefix{...}"``."""


def writers(root: Path = ROOT) -> dict[str, Path]:
    """``{key: script}``: which file of ``benchmarks/`` writes each section; a key that ends in ``*`` is a prefix
    (:data:`WRITE`)."""
    out = {}
    for path in sorted((root / "benchmarks").glob("*.py")):
        text = path.read_text()
        for _, key, end in WRITE.findall(text):
            out.setdefault(key + ("*" if end == "{" or end.endswith("+") else ""), path)
        for name, key in NAMED.findall(text):  # key = f"gmvae-annealing-{data}"; write_section(key + ...)
            if re.search(rf"write_section\(\s*{name}\b", text):
                out.setdefault(key + "*", path)
    return out


def writer_of(key: str, scripts: dict[str, Path]) -> Path | None:
    """The script that writes ``key``: the one naming it whole, else the one whose longest prefix starts it."""
    if key in scripts:
        return scripts[key]
    prefixes = [k[:-1] for k in scripts if k.endswith("*") and key.startswith(k[:-1])]
    return scripts[max(prefixes, key=len) + "*"] if prefixes else None


def _state(commit: str, paths: list[str]) -> str:
    later = changes_since(commit, paths)
    return ("uncommitted" if commit.endswith("+") else "unknown commit" if later == ["?"]
            else f"stale ({len(later)} commits)" if later else "fresh")  # fmt: skip


def assess(key: str, found: dict[str, str], scripts: dict[str, Path]) -> tuple[str | None, str]:
    """``(commit, state)`` of the section ``key`` among ``found``: measured sections by their commit against later
    changes to ``mixzoo/`` and their script; sections drawn from others as the module docstring says."""
    body, script = found[key], writer_of(key, scripts)
    own, mine = recorded_commit(body), [str(script.relative_to(ROOT))] if script else []
    drawn = [assess(s, found, scripts) for s in sources(body) if s in found and s != key]
    if not drawn:
        return own, "unrecorded" if own is None else _state(own, ["mixzoo", *mine])
    first = next((d for d in drawn if d[1] != "fresh"), None)
    if first is not None:
        return own or first[0], first[1]
    own = own or drawn[0][0]
    return own, _state(own, mine) if mine else "fresh"


def changes_since(commit: str, paths: list[str], root: Path = ROOT) -> list[str]:
    """One line per commit after ``commit`` that touched ``paths`` (``["?"]`` when git does not know the commit)."""
    done = subprocess.run(["git", "log", "--oneline", f"{commit.rstrip('+')}..HEAD", "--", *paths], cwd=root,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.splitlines() if done.returncode == 0 else ["?"]


def linked_from_readme(root: Path = ROOT) -> set[str]:
    """The section anchors the README links to (``docs/benchmarks.md#anchor``)."""
    return set(re.findall(r"benchmarks\.md#([\w-]+)", (root / "README.md").read_text()))


def _anchor(body: str) -> str:
    m = re.search(r"^#+ (.*)$", body, re.M)
    return re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-") if m else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doc", default=str(DOC))
    ap.add_argument("--stale", action="store_true", help="list only sections to rerun")
    a = ap.parse_args()
    scripts, readme = writers(), linked_from_readme()
    rows = []
    found = sections(Path(a.doc).read_text())
    for key, body in found.items():
        script = writer_of(key, scripts)
        measured, state = assess(key, found, scripts)
        if a.stale and state == "fresh":
            continue
        rows.append([key, "README" if _anchor(body) in readme else "", measured or "-", state,
                     script.name if script else "-"])  # fmt: skip
    print(table(["section", "quoted", "commit", "state", "written by"], rows))


if __name__ == "__main__":
    main()
