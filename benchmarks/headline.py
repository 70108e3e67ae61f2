"""The headline table: per data set, the best mixzoo row of its clustering table against the best baseline row.

    python benchmarks/headline.py [--out FILE]

Reads the ``clustering-*`` sections of docs/benchmarks.md (or ``--out``), picks the rows with the highest
mean ACC, and writes the section ``clustering-headline``; the README's results table copies it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import command, commit, parse_table, read_section, table, write_section  # noqa: E402

TABLES = ["pinwheel", "two-circles", "moons", "digits", "mnist1d", "mnist", "mnist-pca50", "mnist5-pca50"]


def _mean(cell: str) -> float:
    m = re.match(r"\s*(-?[0-9.]+)", cell)
    return float(m.group(1)) if m else float("-inf")


def _title(section: str) -> str:
    m = re.search(r"^## Clustering: (.*)$", section, re.M)
    return m.group(1) if m else "?"


def _mode(section: str) -> str:
    m = re.search(r"^Mode: ([a-zA-Z]+)", section, re.M)
    return m.group(1).lower() if m else "?"


def _date(section: str) -> str:
    m = re.search(r"^Machine: .*; (\d{4}-\d{2}-\d{2})", section, re.M)
    return m.group(1) if m else "?"


def headline_rows(doc: str | Path | None = None) -> list[list[str]]:
    rows = []
    for key in TABLES:
        section = read_section(f"clustering-{key}", doc)
        if section is None:
            continue
        parsed = [r for r in parse_table(section) if r.get("seeds ok", "0/").split("/")[0] not in ("0", "")]
        ours = [r for r in parsed if r.get("library") == "mixzoo"]
        theirs = [r for r in parsed if r.get("library") == "scikit-learn"]
        if not ours or not theirs:
            continue
        best = max(ours, key=lambda r: _mean(r["ACC"]))
        base = max(theirs, key=lambda r: _mean(r["ACC"]))
        mode = _mode(section)
        rows.append(
            [
                _title(section) + ("" if mode == "full" else f" ({mode} mode)"),
                f"{best['method']} ({best['inference'].split(',')[0]})",
                best["ACC"],
                best["ARI"],
                base["method"],
                base["ACC"],
                base["ARI"],
                f"`clustering-{key}`",
            ]
        )
    return rows


HEADER = ["data", "best mixzoo model", "ACC", "ARI", "best scikit-learn baseline", "ACC", "ARI", "section"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="Markdown file to read and write (default docs/benchmarks.md)")
    a = ap.parse_args(argv)
    rows = headline_rows(a.out)
    body = "\n".join(
        [
            "## Headline: best mixzoo model against the best baseline, per data set",
            "",
            f"Command: `{command()}` (run by `benchmarks/run.py` after the tables)  ",
            f"Machine: each table's own (see its section); commit {commit()}  ",
            f"From the sections {', '.join(row[-1] for row in rows)} (`benchmarks/freshness.py` dates this one by them).  ",
            "Picked from the clustering tables below: per data set the mixzoo row and the scikit-learn row with the "
            "highest mean ACC (mean ± std over the seeds of that table); the last column names the section that holds "
            "the row, with its command, machine, settings and timings. Best of several methods per data set: a "
            "selection over the rows, so read it as an upper envelope, not as one method's score.",
            "",
            table(HEADER, rows),
        ]
    )
    path = write_section("clustering-headline", body, a.out)
    print(body)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
