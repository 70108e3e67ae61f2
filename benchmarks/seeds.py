"""One default command over several seeds: is a family's recipe stable, not only lucky on seed 0?

    python benchmarks/seeds.py --model neural-mixture --data mnist --seeds 0,1,2 [--extra "--epochs 40"]

Each seed is its own process, ``mixzoo fit --model M --data D [extra] --seed S --json``, exactly what a user
types (``--data mnist5-pca50`` stands for ``--data mnist5 --pca 50``; the MNIST sets get ``--data-dir``). Writes
the section ``seeds-M-D`` of docs/benchmarks.md (``seeds-M-D-<extra>`` when ``--extra`` is given) with each
seed's ACC, NMI, clusters in use, final training loss, epochs and seconds, and the mean and (sample) standard deviation of ACC.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from defaults import NEEDS_MNIST, _argv, _run  # noqa: E402
from report import command, machine, mnist_dir, table, write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="pinwheel, two-circles, digits, mnist5-pca50 or mnist")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--extra", default="", help="flags added to every command (the default when empty)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one command may run")
    ap.add_argument("--out", default=None, help="Markdown file to write the section into (default docs/benchmarks.md)")
    ap.add_argument("--data-dir", default=None, help="MNIST idx files (default $MIXZOO_DATA or ../shared/data/mnist)")
    a = ap.parse_args()
    data_dir = mnist_dir(a.data_dir)
    if a.data in NEEDS_MNIST and data_dir is None:
        raise SystemExit(f"{a.data} needs the MNIST idx files: pass --data-dir")
    extra = shlex.split(a.extra)
    rows, accs = [], []
    for seed in (int(s) for s in a.seeds.split(",")):
        argv = [*_argv(a.model, a.data, data_dir), *extra, "--seed", str(seed)]
        shown = "mixzoo " + " ".join(argv)
        print(f"== {shown}", flush=True)
        rec, seconds, failure = _run(argv, a.timeout)
        if rec is None:
            rows.append([str(seed), failure, "-", "-", "-", "-", "-", f"{seconds:.1f}"])
        else:
            accs.append(float(rec["acc"]))
            rows.append([str(seed), f"{rec['acc']:.3f}", f"{rec['nmi']:.3f}", str(rec.get("clusters_used", "-")),
                         f"{rec['final_loss']:.6g}", str(rec.get("epochs", "-")), f"{rec['seconds']:.1f}", f"{seconds:.1f}"])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    shown = "mixzoo " + " ".join([*_argv(a.model, a.data, data_dir), *extra, "--seed", "S"])
    if len(accs) == len(rows) and len(accs) > 1:
        summary = f"ACC mean {statistics.mean(accs):.3f}, sd {statistics.stdev(accs):.3f} over {len(accs)} seeds."
    else:
        summary = f"{len(accs)} of {len(rows)} seeds finished; no mean is given."
    suffix = "-" + re.sub(r"[^a-z0-9]+", "-", a.extra.lower()).strip("-") if extra else ""
    body = "\n".join([
        f"## `{a.model}` on {a.data} over seeds{' with ' + a.extra if extra else ' (default command)'}",
        "",
        f"Command: `{command()}`; each seed runs `{shown}`.  ",
        f"Machine: {machine()}",
        "",
        table(["seed", "ACC", "NMI", "clusters used", "final loss", "epochs", "seconds (fit)", "seconds (command)"], rows),
        "",
        summary,
    ])
    write_section(f"seeds-{a.model}-{a.data}{suffix}", body, a.out)
    print(body)


if __name__ == "__main__":
    main()
