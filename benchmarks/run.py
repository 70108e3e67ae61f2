"""The benchmark suite: every table of docs/benchmarks.md that the suite covers, one process per table.

    python benchmarks/run.py [--quick] [--seeds N] [--data-dir DIR] [--device cpu|cuda|auto]
                             [--only NAME[,NAME...]] [--out FILE] [--lock PATH | --no-lock] [--threads 1]

Tables, in order: the clustering tables (``benchmarks/clustering.py --data NAME`` for pinwheel, two-circles,
moons, digits, mnist1d, mnist, mnist-pca50, mnist5-pca50), the Pyro-against-PyTorch step table
(``benchmarks/step_speed.py``), the batched K-flow pass against a loop (``benchmarks/flow_mixture.py ratio``),
the FLOP-rate table (``benchmarks/flops.py``), then the headline (``benchmarks/headline.py``) and this
driver's own section ``benchmark-suite`` (wall time per table). With a CUDA GPU the speed tables run once
more on it, labelled with the device. Each table replaces its own section of docs/benchmarks.md (or of
``--out``); the other sections stay.

The default is the full run (3 seeds, MNIST subsampled to 10000 points; about an hour on 2 CPU cores);
``--quick`` runs one seed, a fifth of the epochs and MNIST subsamples of 2000 (minutes). The MNIST tables
need the idx files (``--data-dir`` or ``$MIXZOO_DATA``; ``../shared/data/mnist`` when it exists) and are
skipped without them. Every table process takes an exclusive ``flock`` on ``--lock``
(``/tmp/mixzoo-cpu.lock``) for its duration, so other jobs that use the same lock get turns between tables.

Threads: each table runs with ``--threads`` threads (1 by default) for torch, BLAS and OpenMP alike, so
mixzoo and scikit-learn get the same share of the CPU. On the shared 2-core machine where the suite was
written, two OpenMP threads competing with another process ran a 3-epoch flow-mixture fit in 95 s against
3.7 s with one thread; ``--threads 2`` uses both cores when the machine is yours.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from report import DOC_ENV, command, machine, mnist_dir, parse_table, read_section, table, write_section  # noqa: E402

CLUSTERING = ["pinwheel", "two-circles", "moons", "digits", "mnist1d", "mnist", "mnist-pca50", "mnist5-pca50"]
NEEDS_MNIST = {"mnist", "mnist-pca50", "mnist5-pca50"}


def plan(a: argparse.Namespace, cuda: bool) -> list[tuple[str, list[str]]]:
    """(name, argv after ``python``) of each table process, in order."""
    mode = ["--quick"] if a.quick else []
    seeds = ["--seeds", str(a.seeds)] if a.seeds else []
    data_dir = mnist_dir(a.data_dir)
    threads = ["--threads", str(a.threads)]
    out: list[tuple[str, list[str]]] = []
    for name in CLUSTERING:
        if name in NEEDS_MNIST and data_dir is None:
            print(f"skipping clustering-{name}: no MNIST idx directory (--data-dir or $MIXZOO_DATA)", flush=True)
            continue
        extra = ["--data-dir", os.path.relpath(data_dir, ROOT)] if name in NEEDS_MNIST and data_dir else []
        out.append((f"clustering-{name}", ["benchmarks/clustering.py", "--data", name, *mode, *seeds,
                                           "--device", a.device, *threads, *extra]))
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    for dev in devices:
        out.append((f"step-speed-{dev}", ["benchmarks/step_speed.py", "--device", dev, *mode, *threads]))
    for dev in devices:
        n = "4096" if dev == "cuda" else "1000"
        repeats = ["--repeats", "5"] if a.quick else []
        out.append((f"flow-ratio-{dev}", ["benchmarks/flow_mixture.py", "ratio", "--device", dev, "--n", n, *repeats]))
    for dev in devices:
        out.append((f"flops-{dev}", ["benchmarks/flops.py", "--device", dev, *mode, *threads]))
    if a.only:
        keep = set(a.only.split(","))
        out = [t for t in out if t[0] in keep or t[0].split("-", 1)[-1] in keep]
    return out


def status(name: str, rc: int, doc: str | None) -> str:
    """``ok``, ``exit N``, or for a clustering table whose process ended well how many of its methods trained on no
    seed (a method's failure is a row of the table, so its exit code alone does not show it)."""
    if rc != 0:
        return f"exit {rc}"
    if name.startswith("clustering-"):
        rows = parse_table(read_section(name, doc) or "")
        failed = [r for r in rows if r.get("seeds ok", "").startswith("0/")]
        if failed:
            return f"{len(failed)} of {len(rows)} methods failed"
    return "ok"


def run_table(argv: list[str], lock: str | None, env: dict[str, str]) -> tuple[int, float, float]:
    """Run one table process under the lock; (exit code, seconds waiting for the lock, seconds running)."""
    t0 = time.perf_counter()
    handle = None
    if lock:
        handle = open(lock, "a")  # noqa: SIM115 - held for the duration of the table
        fcntl.flock(handle, fcntl.LOCK_EX)
    t1 = time.perf_counter()
    try:
        rc = subprocess.call([sys.executable, *argv], cwd=ROOT, env=env)
    finally:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
    return rc, t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, a fifth of the epochs, MNIST subsample 2000")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per clustering row (default 3; 1 with --quick)")
    ap.add_argument("--data-dir", default=None, help="MNIST idx directory (default $MIXZOO_DATA, ../shared/data/mnist)")
    ap.add_argument("--device", default="cpu", help="device of the clustering fits: cpu, cuda or auto")
    ap.add_argument("--only", default=None, help="comma-separated table names, e.g. digits,step-speed-cpu")
    ap.add_argument("--out", default=None, help="Markdown file to write (default docs/benchmarks.md)")
    ap.add_argument("--lock", default="/tmp/mixzoo-cpu.lock", help="file to flock while a table runs")
    ap.add_argument("--no-lock", action="store_true", help="do not take the lock")
    ap.add_argument("--threads", type=int, default=1, help="threads per table process (torch, BLAS, OpenMP); default 1")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)  # the machine line below names the tables' thread count
    cuda = torch.cuda.is_available()
    env = dict(os.environ)
    if a.out:
        env[DOC_ENV] = str(Path(a.out).resolve())
    env.setdefault("PYTHONPATH", str(ROOT))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(a.threads)
    lock = None if a.no_lock else a.lock
    tables = plan(a, cuda)
    start = time.perf_counter()
    rows = []
    failed = 0
    for name, targv in tables:
        print(f"== {name}: python {shlex.join(targv)}", flush=True)
        rc, waited, ran = run_table(targv, lock, env)
        state = status(name, rc, a.out)
        failed += state != "ok"
        load = os.getloadavg()[0]
        rows.append([f"`{name}`", f"`python {shlex.join(targv)}`", state, ran, waited, load])
        print(f"== {name}: exit {rc}, {ran:.0f} s (waited {waited:.0f} s for the lock)", flush=True)
    hl = subprocess.call([sys.executable, "benchmarks/headline.py", *(["--out", a.out] if a.out else [])], cwd=ROOT,
                         env=env)
    failed += hl != 0
    total = time.perf_counter() - start
    body = "\n".join(
        [
            "## Benchmark suite run",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine()}  ",
            f"Mode: {'quick' if a.quick else 'full'}; {total:.0f} s wall time in all ({total / 60:.1f} min), of which "
            f"{sum(r[4] for r in rows):.0f} s waiting for `{lock}` while other jobs held it"
            + ("" if lock else " (no lock)")
            + f". One process per table; each replaces its own section below. `load`: the 1-minute load average "
            f"when the table finished ({os.cpu_count()} cores; above the core count, other processes shared the CPU "
            "and the table's wall times are inflated).",
            "",
            table(["section", "command", "status", "seconds", "waited for the lock (s)", "load"], rows),
        ]
    )
    write_section("benchmark-suite", body, a.out)
    print(body, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
