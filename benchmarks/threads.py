"""Default thread count against one thread and two threads, on a quiet and on a busy machine.

    python benchmarks/threads.py [--epochs 10]

Runs ``mixzoo fit --model flow-mixture --data pinwheel`` and ``mixzoo fit --model gmm --data digits --tol 0``
(each a subprocess, so torch starts fresh) with the default thread choice and with ``--threads 2``, first on
a quiet machine, then while a busy-loop process keeps one core busy (the situation of a shared machine),
and writes the section ``threads`` of docs/benchmarks.md with the training seconds from the JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402

JOBS = {
    "flow-mixture, pinwheel": ["--model", "flow-mixture", "--data", "pinwheel"],
    "gmm diag, digits": ["--model", "gmm", "--data", "digits", "--tol", "0"],
}


def _busy() -> None:  # a process that keeps one core busy
    while True:
        pass


def _fit(args: list[str], epochs: int, threads: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "mixzoo", "fit", *args, "--epochs", str(epochs), *threads, "--json", "--no-progress"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    a = ap.parse_args()
    rows = []
    for load in ("quiet", "one core busy"):
        busy = multiprocessing.Process(target=_busy, daemon=True) if load != "quiet" else None
        if busy is not None:
            busy.start()
        try:
            for name, args in JOBS.items():
                default = _fit(args, a.epochs, [])
                two = _fit(args, a.epochs, ["--threads", "2"])
                rows.append([name, load, default["threads"], f"{default['seconds']:.2f}", f"{two['seconds']:.2f}",
                             f"{two['seconds'] / default['seconds']:.1f}x"])  # fmt: skip
                print(rows[-1], flush=True)
        finally:
            if busy is not None:
                busy.terminate()
    body = (
        "## Threads: the default choice against two threads\n\n"
        f"Command: `{command()}`  \nMachine: {machine()}  \n"
        f"Each fit runs {a.epochs} epochs in a fresh process; seconds are the training time from the JSON. "
        "The default uses one thread for small work (points x features x clusters < 2e7), torch's default above.\n\n"
        + table(["fit", "machine", "default threads", "default: s", "--threads 2: s", "2 threads / default"], rows)
    )
    write_section("threads", body)
    print(body)


if __name__ == "__main__":
    main()
