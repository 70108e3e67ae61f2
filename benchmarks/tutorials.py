"""Execute the tutorials in full mode and store them with their outputs.

    python benchmarks/tutorials.py [01,06,...] [--timeout 1200]

Each notebook of ``tutorials/`` (or those whose number prefix is given) is executed top to bottom in a fresh kernel,
in full mode (``MIXZOO_TUTORIAL_CHEAP`` and ``CI`` unset), from the ``tutorials/`` folder, and written back with its
outputs, its execution counts, and the machine and seconds it took in its metadata (``mixzoo.executed``). A notebook
that fails is left as it was, and the script says which cell failed. The documentation renders the stored outputs;
the test suite executes every notebook again in its cheap mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _machine_notice(output: dict) -> bool:
    return output.get("output_type") == "stream" and "IProgress not found" in "".join(output.get("text", ""))


def execute(path: Path, timeout: int) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("MIXZOO_TUTORIAL_CHEAP", "CI")}
    start = time.perf_counter()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # tqdm's notice that ipywidgets is missing is about this machine, not the tutorial
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _machine_notice(o)]
    nb.metadata["mixzoo"] = {"executed": {"mode": "full", "seconds": round(seconds, 1), "machine": machine(),
                                          "date": time.strftime("%Y-%m-%d")}}  # fmt: skip
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default=None, help="comma-separated number prefixes, e.g. 01,06 (default all)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds a cell may take")
    a = ap.parse_args()
    prefixes = None if a.which is None else set(a.which.split(","))
    failed = []
    for path in sorted((ROOT / "tutorials").glob("*.ipynb")):
        if prefixes is not None and path.name.split("_", 1)[0] not in prefixes:
            continue
        try:
            seconds = execute(path, a.timeout)
        except Exception as err:  # one failing notebook does not stop the others
            failed.append(path.name)
            lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
            print(f"{path.name}: failed:", *lines[-12:], sep="\n", flush=True)  # the cell and its error, not just a heading
            continue
        print(f"{path.name}: {seconds:.0f} s", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
