"""The default command of every family on every built-in data set: ``mixzoo fit --model M --data D``, no other flag.

    python benchmarks/defaults.py [--models gmm,student-t] [--data digits,pinwheel] [--timeout 1800] [--data-dir DIR]

Each run is its own process (``mixzoo fit --model M --data D --json``, plus ``--data-dir`` for the MNIST
sets and ``--pca 50`` for "mnist5-pca50"), so that what is measured is exactly what a user types; a run
that does not finish within ``--timeout`` seconds is recorded as such. Rows already in the section for
other (model, data) pairs are kept, so the table can be filled in several sittings; each row says
when it was measured. Writes the section ``defaults`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import machine, mnist_dir, read_section, table, write_section  # noqa: E402

import mixzoo.models  # noqa: E402, F401  (registers every family)
from mixzoo.models.family import MODELS

DATA = {
    "pinwheel": [],
    "two-circles": [],
    "digits": [],
    "mnist5-pca50": ["--data", "mnist5", "--pca", "50"],
    "mnist": [],
}
NEEDS_MNIST = {"mnist5-pca50", "mnist"}
ROOT = Path(__file__).resolve().parent.parent
HEADER = ["model", "data", "command", "ACC", "NMI", "epochs", "converged", "seconds (fit)", "seconds (command)", "measured"]


def _argv(model: str, data: str, data_dir: str | None) -> list[str]:
    argv = ["fit", "--model", model, *(DATA[data] or ["--data", data])]
    if data in NEEDS_MNIST:
        argv += ["--data-dir", os.path.relpath(data_dir, ROOT)]  # type: ignore[arg-type]
    return argv


def _run(argv: list[str], timeout: float) -> tuple[dict[str, object] | None, float, str]:
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "mixzoo", *argv, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - start, f"did not finish in {timeout:.0f} s"
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return None, seconds, f"exit {done.returncode}: {last}"
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds, ""


def _old_rows() -> dict[tuple[str, str], list[str]]:
    body = read_section("defaults") or ""
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(HEADER) and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[(cells[0].strip("`"), cells[1])] = cells
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated families (default: all)")
    ap.add_argument("--data", default=",".join(DATA), help=f"comma-separated data sets out of {', '.join(DATA)}")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one command may run")
    ap.add_argument("--data-dir", default=None, help="MNIST idx files (default $MIXZOO_DATA or ../shared/data/mnist)")
    a = ap.parse_args()
    data_dir = mnist_dir(a.data_dir)
    rows = _old_rows()
    today = datetime.date.today().isoformat()
    for data in a.data.split(","):
        if data in NEEDS_MNIST and data_dir is None:
            print(f"skipping {data}: no MNIST idx directory", flush=True)
            continue
        for model in a.models.split(","):
            argv = _argv(model, data, data_dir)
            shown = "mixzoo " + " ".join(argv)
            print(f"== {shown}", flush=True)
            rec, seconds, failure = _run(argv, a.timeout)
            if rec is None:
                rows[(model, data)] = [f"`{model}`", data, f"`{shown}`", failure, "-", "-", "-", "-", f"{seconds:.1f}", today]
            else:
                rows[(model, data)] = [
                    f"`{model}`", data, f"`{shown}`", f"{rec['acc']:.3f}", f"{rec['nmi']:.3f}", str(rec.get("epochs", "-")),
                    str(rec.get("converged", "-")).lower(), f"{rec['seconds']:.1f}", f"{seconds:.1f}", today,
                ]
            print(" | ".join(rows[(model, data)]), flush=True)
    order = {d: i for i, d in enumerate(DATA)}
    models = list(MODELS)
    ordered = sorted(rows.values(), key=lambda r: (order.get(r[1], 99), models.index(r[0].strip("`")) if r[0].strip("`") in models else 99))
    body = "\n".join([
        "## Default commands: every family on every built-in data set",
        "",
        "Command: `python benchmarks/defaults.py` (rows may come from several sittings; `measured` gives each row's date)  ",
        f"Machine: {machine()}  ",
        "Each row is one `mixzoo fit --model M --data D --json` with no other flag (MNIST sets: `--data-dir`, and "
        "`--pca 50` for MNIST5), seed 0, the family's recipe for data of that shape, the default thread choice. "
        "`seconds (fit)`: training with its restarts, from the JSON; `seconds (command)`: the whole process, loading "
        "and preprocessing included. A failed or unfinished command is recorded with its message.",
        "",
        table(HEADER, ordered),
    ])
    write_section("defaults", body)
    write_section("defaults", _matrix(rows), ROOT / "docs" / "families.md")
    print(body)


def _matrix(rows: dict[tuple[str, str], list[str]]) -> str:
    """The compact form in docs/families.md: one row per family, one column per data set, ACC and seconds of the command."""
    names = [d for d in DATA if any(key[1] == d for key in rows)]
    lines = []
    for model in MODELS:
        cells = []
        for data in names:
            row = rows.get((model, data))
            if row is None:
                cells.append("not measured")
            elif row[4] == "-":
                cells.append(row[3].split(":")[0])
            else:
                cells.append(f"{row[3]} ({float(row[8]):.0f} s)")
        lines.append([f"`{model}`", *cells])
    return "\n".join([
        "ACC of `mixzoo fit --model M --data D` with no other flag (seed 0) and the seconds the whole command took on a",
        "2-core CPU; the commands, NMI, epochs and dates are in [the benchmarks](benchmarks.md#default-commands-every-family-on-every-built-in-data-set)",
        "(`python benchmarks/defaults.py`).",
        "",
        table(["model", *names], lines),
    ])


if __name__ == "__main__":
    main()
