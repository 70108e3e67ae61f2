"""Peak resident memory of MNIST training, one model family per process, measured by ``/usr/bin/time -v``.

Training streams minibatches from the data held once in memory (70000 x 784 float32 = 220 MB); this
table shows that every family stays well under the 4 GiB target while training on the whole of MNIST.

    python benchmarks/memory.py [--data-dir ../shared/data/mnist] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

import report

RUNS = {
    "gmm (diag), raw 784-D": ["--model", "gmm", "--batch-size", "256"],
    "flow-mixture (MAF), PCA 50": ["--model", "flow-mixture", "--pca", "50", "--flow", "maf"],
    "neural-mixture (MLP, EM)": ["--model", "neural-mixture"],
    "gmvae (VIMCO), raw 784-D": ["--model", "gmvae", "--pretrain", "1"],
    "energy-mixture (NCE), 0-4 -> 5-9 features": ["--model", "energy-mixture", "--pretrain-classes", "0,1,2,3,4"],
}
LIMIT_GIB = 4.0


def peak(args: list[str], data: str, data_dir: str | None, epochs: int) -> tuple[float, float, dict]:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "mixzoo", "fit", "--data", data, "--epochs", str(epochs)]
    cmd += ["--classifier-epochs", "1", "--no-progress", "--json", *args]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kb / 2**20, seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="digits instead of MNIST (a smoke run of the table)")
    a = p.parse_args()
    data = "digits" if a.quick else a.data
    rows = []
    for name, args in RUNS.items():
        gib, seconds, rec = peak(args, data, a.data_dir, a.epochs)
        rows.append([name, rec["n"], f"{gib:.2f}", "yes" if gib < LIMIT_GIB else "**no**", f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    body = (
        f"## Peak memory of training ({data}, {a.epochs} epoch{'s' if a.epochs > 1 else ''} per family)\n\n"
        f"Machine: {report.machine('cpu')}. Command: `{report.command()}`.\n\n"
        "Maximum resident set size of the whole `mixzoo fit` process (Python, torch, data, model, metrics) "
        "from `/usr/bin/time -v`; the target is under 4 GiB.\n\n"
        + report.table(["model", "n", "peak RSS (GiB)", f"< {LIMIT_GIB:g} GiB", "wall s"], rows)
    )
    report.write_section(f"memory-{data}", body)


if __name__ == "__main__":
    main()
