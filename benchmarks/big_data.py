"""Big data files: peak memory, wall time and ACC of ``mixzoo fit`` on a large array, and the CSV reader's speed.

    python benchmarks/big_data.py [--n 12000000] [--dim 16] [--epochs 3] [--threads N] [--runs npy,npz,npz-out]
                                  [--sklearn-max-gib 8] [--csv-rows 300000] [--csv-cols 10] [--out FILE]

Writes, in a temporary directory, a seeded array of three well-separated Gaussian blobs (``--n`` points in ``--dim``
dimensions, float32: 12M x 16 is 768 MB) as ``big.npy`` (no labels) and ``big.npz`` (``x`` stored uncompressed and
the labels ``y``), then runs each command as a subprocess under ``/usr/bin/time -v`` (or, without it, polling the
process's resident memory with psutil) and reports its peak resident memory, its wall time and its ACC (``--json``
key ``acc``; ``.npy`` files carry no labels):

- ``npy``: ``mixzoo fit --model gmm --data big.npy --clusters 3 --epochs E --json --no-progress``;
- ``npz``: the same on ``big.npz``;
- ``npy-out``, ``npz-out``: the same with ``--out DIR`` (checkpoint, probabilities, summary and plots written);
- ``neural``: ``mixzoo fit --model neural-mixture --data big.npz --clusters 3 --epochs 1 --json --no-progress`` (the
  neural mixture's batch-wise EM, one epoch);
- ``torchrun``: the ``npz`` command under ``torchrun --nproc_per_node=2`` (its peak is that of the larger process).

scikit-learn's ``GaussianMixture`` (diagonal covariances, as mixzoo's ``gmm``; ``max_iter`` = the epochs) runs on the
same data in a subprocess of its own where its estimated need (float64 data and temporaries, about 3 x N x D x 8
bytes) is under ``--sklearn-max-gib`` and half the memory available. Last, a ``--csv-rows`` x ``--csv-cols`` CSV
file is read by ``mixzoo.data.load_file`` and by ``pandas.read_csv`` (best of 3; pandas' pyarrow engine too when
pyarrow is installed). Writes the section ``big-data`` of docs/benchmarks.md (or of ``--out``); with another
``--n``, the section ``big-data-<millions>m``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from report import command, machine, table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("npy", "npy-out", "npz", "npz-out", "neural", "torchrun")
TIME = "/usr/bin/time"
CHUNK = 1_000_000


def blobs(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centres of three well-separated blobs (about 14 standard deviations apart) and the labels of ``n`` points."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, (3, dim)).astype(np.float32)
    return centres, rng.integers(0, 3, n)


def write_data(folder: Path, n: int, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """``big.npy`` (features) and ``big.npz`` (``x`` uncompressed and ``y``), written a million rows at a time."""
    centres, y = blobs(n, dim, seed)
    rng = np.random.default_rng([seed, 1])
    npy = folder / "big.npy"
    x = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        x[s:e] = centres[y[s:e]] + rng.standard_normal((e - s, dim), dtype=np.float32)
    x.flush()
    npz = folder / "big.npz"
    np.savez(npz, x=x, y=y)  # streams the memory map into the archive
    del x
    return npy, npz


def measure(cmd: list[str]) -> tuple[float, float, str, str, int]:
    """Peak resident memory (GiB), wall seconds, stdout, stderr and exit status of ``cmd`` run to the end."""
    start = time.perf_counter()
    if os.path.exists(TIME):
        done = subprocess.run([TIME, "-v", *cmd], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        return (int(m.group(1)) / 2**20 if m else float("nan")), seconds, done.stdout, done.stderr, done.returncode
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return peak / 2**30, seconds, out.read(), err.read(), proc.returncode


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mixzoo_run(kind: str, npy: Path, npz: Path, folder: Path, epochs: int, threads: int | None) -> list[object]:
    data = npy if kind.startswith("npy") else npz
    model, epochs = ("neural-mixture", 1) if kind == "neural" else ("gmm", epochs)
    args = ["fit", "--model", model, "--data", str(data), "--clusters", "3", "--epochs", str(epochs), "--json",
            "--no-progress"]  # fmt: skip
    if threads:
        args += ["--threads", str(threads)]
    if kind.endswith("-out"):
        args += ["--out", str(folder / "run"), "--overwrite"]
    launcher = [sys.executable, "-m", "mixzoo"]
    if kind == "torchrun":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={_free_port()}", "-m", "mixzoo"]  # fmt: skip
    cmd = launcher + args
    gib, seconds, out, err, rc = measure(cmd)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}):\n{err[-3000:]}")
    record = json.loads(out.strip().splitlines()[-1])
    shown = " ".join(["torchrun --nproc_per_node=2 -m mixzoo" if kind == "torchrun" else "mixzoo", *args[:4],
                      data.name, *args[5:]])  # fmt: skip
    shown = shown.replace(str(folder / "run"), "DIR")
    acc = record.get("acc")
    return [f"`{shown}`", f"{gib:.2f}", f"{gib * 2**30 / data.stat().st_size:.2f}", f"{seconds:.1f}",
            "-" if acc is None else f"{acc:.4f}"]  # fmt: skip


def imports_floor(size: int) -> list[object]:
    """The peak of a process that only imports what ``mixzoo fit --out`` imports: no run can go below it."""
    code = "import mixzoo.app.cli, mixzoo.analysis.summary, mixzoo.analysis.plots, arviz, matplotlib"
    gib, seconds, _, err, rc = measure([sys.executable, "-c", code])
    if rc != 0:
        raise SystemExit(f"importing failed ({rc}):\n{err[-3000:]}")
    return [f"`python -c '{code}'` (imports only)", f"{gib:.2f}", f"{gib * 2**30 / size:.2f}", f"{seconds:.1f}", "-"]


def sklearn_child(npz: str, epochs: int) -> None:
    """Runs in its own process: scikit-learn's GaussianMixture on the archive; prints ACC as JSON."""
    from sklearn.mixture import GaussianMixture

    from mixzoo.analysis.metrics import cluster_accuracy

    with np.load(npz) as z:
        x, y = z["x"], z["y"]
    gm = GaussianMixture(3, covariance_type="diag", max_iter=epochs, random_state=0).fit(x)
    print(json.dumps({"acc": cluster_accuracy(y, gm.predict(x)), "n_iter": int(gm.n_iter_)}))


def sklearn_run(npz: Path, n: int, dim: int, epochs: int, max_gib: float) -> list[object] | str:
    need = 3 * n * dim * 8 / 2**30
    try:
        import psutil

        available = psutil.virtual_memory().available / 2**30
    except ImportError:
        available = float("inf")
    limit = min(max_gib, available / 2)
    if need > limit:
        return f"scikit-learn skipped: it would need about {need:.1f} GiB (limit {limit:.1f} GiB)."
    cmd = [sys.executable, __file__, "--sklearn-child", str(npz), "--epochs", str(epochs)]
    gib, seconds, out, err, rc = measure(cmd)
    if rc != 0:
        return f"scikit-learn failed ({rc}): {err.strip().splitlines()[-1] if err.strip() else ''}"
    record = json.loads(out.strip().splitlines()[-1])
    name = f"`GaussianMixture(3, covariance_type='diag', max_iter={epochs})` on big.npz ({record['n_iter']} iterations)"
    return [name, f"{gib:.2f}", f"{gib * 2**30 / npz.stat().st_size:.2f}", f"{seconds:.1f}", f"{record['acc']:.4f}"]


def best_of(fn, repeat: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def csv_times(folder: Path, rows: int, cols: int) -> list[list[object]]:
    import pandas as pd

    from mixzoo.data import load_file

    rng = np.random.default_rng(2)
    path = folder / "table.csv"
    pd.DataFrame(rng.normal(0, 1, (rows, cols)), columns=[f"f{j}" for j in range(cols)]).to_csv(path, index=False)
    mb = path.stat().st_size / 1e6
    out = [["`mixzoo.data.load_file`", f"{best_of(lambda: load_file(path)):.3f}"],
           ["`pandas.read_csv` (C engine)", f"{best_of(lambda: pd.read_csv(path, engine='c')):.3f}"]]  # fmt: skip
    try:
        import pyarrow  # noqa: F401

        seconds = best_of(lambda: pd.read_csv(path, engine="pyarrow"))
        out.append(["`pandas.read_csv` (pyarrow engine)", f"{seconds:.3f}"])
    except ImportError:
        pass
    for row in out:
        row.insert(1, f"{rows} x {cols} ({mb:.0f} MB)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12_000_000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="--threads of mixzoo fit (its own choice without it)")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"which commands, of {', '.join(RUNS)}")
    ap.add_argument("--sklearn-max-gib", type=float, default=8.0)
    ap.add_argument("--csv-rows", type=int, default=300_000)
    ap.add_argument("--csv-cols", type=int, default=10)
    ap.add_argument("--tmp", default=None, help="folder for the temporary files (the system's default without it)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--sklearn-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.sklearn_child:
        sklearn_child(a.sklearn_child, a.epochs)
        return
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        ap.error(f"--runs: unknown {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    folder = Path(tempfile.mkdtemp(prefix="mixzoo-big-", dir=a.tmp))
    try:
        start = time.perf_counter()
        npy, npz = write_data(folder, a.n, a.dim)
        mb = npy.stat().st_size / 1e6
        print(f"wrote {a.n} x {a.dim} float32 ({mb:.0f} MB) in {time.perf_counter() - start:.0f} s", flush=True)
        rows = [imports_floor(npy.stat().st_size)]
        print(rows[-1], flush=True)
        for kind in runs:
            rows.append(mixzoo_run(kind, npy, npz, folder, a.epochs, a.threads))
            print(rows[-1], flush=True)
        sk = sklearn_run(npz, a.n, a.dim, a.epochs, a.sklearn_max_gib)
        if isinstance(sk, list):
            rows.append(sk)
        print(sk, flush=True)
        csv_rows = csv_times(folder, a.csv_rows, a.csv_cols)
        print(csv_rows, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gib = a.n * a.dim * 4 / 2**30
    body = [
        "## Big data: peak memory of a fit on a memory-mapped file" + ("" if a.n == 12_000_000 else f", {a.n} rows"),
        "",
        f"{a.n} x {a.dim} float32 ({gib:.2f} GiB), three Gaussian blobs.",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "Peak resident memory (the whole process, from `/usr/bin/time -v`, or psutil's polling without it) and wall "
        "time of each command as a subprocess; ACC from `--json` (`-`: an `.npy` file has no labels). `big.npz` holds "
        "`x` uncompressed, which mixzoo memory-maps as it does an `.npy` file, and the labels `y`. The first row is a "
        "process that only imports what `mixzoo fit --out` imports (torch, Pyro, scikit-learn, ArviZ, matplotlib): "
        "no run goes below it; *above the imports* is a run's peak less that floor, as a multiple of the file.",
        "",
        table(["command", "peak RSS (GiB)", "x file", "above the imports, x file", "wall s", "ACC"],
              [[*r[:3], f"{(float(r[1]) - float(rows[0][1])) * 2**30 / (a.n * a.dim * 4):.2f}", *r[3:]] for r in rows]),
    ]
    if isinstance(sk, str):
        body += ["", sk]
    body += ["", "Reading a CSV file of standard normal values (best of 3, seconds):", "",
             table(["reader", "table", "seconds"], csv_rows)]  # fmt: skip
    suffix = "" if a.n == 12_000_000 else f"-{a.n // 1_000_000}m"
    print(f"wrote {write_section(f'big-data{suffix}', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
