"""Data-parallel training throughput: one process against two (gloo, localhost) on this machine.

Each configuration is one ``mixzoo fit`` (two of them under ``torchrun --nproc_per_node=2``) on the same
data, epochs and global batch size; throughput is training points per second of the training loop
(``seconds`` in the JSON record: the restarts and the final loss, without data loading).

    python benchmarks/distributed.py [--data-dir ../shared/data/mnist] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import report

WORKLOADS = {  # name: (arguments, points, epochs)
    "gmm diag, MNIST PCA 50": (["--model", "gmm", "--pca", "50", "--batch-size", "512", "--n-init", "1"], 20000, 3),
    "gmvae VIMCO, MNIST raw": (["--model", "gmvae", "--pretrain", "0", "--batch-size", "256"], 5000, 1),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], processes: int, threads: int) -> dict:
    fit = ["-m", "mixzoo", "fit", *args, "--json", "--no-progress"]
    if processes == 1:
        cmd = [sys.executable, *fit]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={_port()}", *fit]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="2000 points, 1 epoch per workload")
    a = p.parse_args()
    rows = []
    for name, (args, n, epochs) in WORKLOADS.items():
        if a.quick:
            n, epochs = 2000, 1
        common = ["--data", "mnist", "--subsample", str(n), "--epochs", str(epochs), "--seed", "0"]
        if a.data_dir:
            common += ["--data-dir", a.data_dir]
        name = f"{name} ({n} points, {epochs} epoch{'s' if epochs > 1 else ''})"
        base = None
        for processes, threads in ((1, 1), (1, 2), (2, 1)):
            rec = run([*args, *common], processes, threads)
            rate = rec["n"] * rec["epochs"] / rec["seconds"]
            base = base or rate
            rows.append([name, processes, threads, f"{rate:,.0f}", f"{rate / base:.2f}", f"{rec['acc']:.3f}"])
            print(rows[-1], flush=True)
    body = (
        "## Data-parallel training: 1 against 2 processes (gloo, localhost, MNIST subsamples)\n\n"
        f"Machine: {report.machine('cpu')}. Command: `{report.command()}`.\n\n"
        "Throughput = training points per second of the whole fit (all processes together); ratio against "
        "one process with one thread. The global batch is the same in every row, so the runs take the same "
        "optimisation steps (for enumerated losses the same parameters, to float tolerance).\n\n"
        + report.table(["workload", "processes", "threads each", "points/s", "ratio", "ACC"], rows)
    )
    report.write_section("distributed", body)


if __name__ == "__main__":
    main()
