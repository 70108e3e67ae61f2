"""The posterior by NUTS against the EM fit: ACC, calibration, R-hat, ESS and seconds.

    python benchmarks/nuts.py [--data pinwheel,wine] [--model gmm] [--seed 0] [--out FILE] [--append]

Each row is a command a user types, run as a subprocess (so that the chains run in worker processes, as from the
command line): the family's default ``mixzoo fit --model M --data D --seed S --json`` (EM and the replicate
temperature), and the same with ``--sampler nuts`` (4 chains, 300 warm-up steps and 300 draws each; the posterior
predictive probabilities). Wine is scikit-learn's table written as a CSV with a ``target`` column (``--data FILE.csv
--label-column target``). A data name may carry flags of its own after a colon, ``wine:--covariance=diag``.
Writes the section ``nuts`` of docs/benchmarks.md; ``--append`` adds the rows (and the command) to it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, parse_table, read_section, table, write_section  # noqa: E402


def _data_args(data: str, directory: Path) -> list[str]:
    if data in ("wine", "breast-cancer"):
        from sklearn import datasets

        loader = {"wine": datasets.load_wine, "breast-cancer": datasets.load_breast_cancer}[data]
        path = directory / f"{data}.csv"
        loader(as_frame=True).frame.to_csv(path, index=False)
        return ["--data", str(path), "--label-column", "target"]
    return ["--data", data]


def _run(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "mixzoo", "fit", *args, "--json", "--no-progress"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(r: dict) -> str:
    actual = r["misclassified"]
    ratio = f"{r['expected_misclassified'] / actual:.2f}" if actual else "-"
    return f"{r['expected_misclassified']:.1f} / {actual} ({ratio})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="pinwheel,wine")
    ap.add_argument("--model", default="gmm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--append", action="store_true", help="add the rows to the section instead of replacing it")
    a = ap.parse_args()
    rows, commands = [], [command()]
    if a.append:
        old = read_section("nuts", a.out) or ""
        rows = [list(r.values()) for r in parse_table(old)]
        line = next((ln for ln in old.splitlines() if ln.startswith(("Commands:", "Command:"))), "")
        commands = re.findall(r"`(python benchmarks/nuts\.py[^`]*)`", line) + commands
    with tempfile.TemporaryDirectory() as tmp:
        for item in a.data.split(","):
            data, *flags = item.split(":")
            extra_flags = [part for f in flags for part in f.split("=", 1)]
            data_label = " ".join([data, *flags])
            base = ["--model", a.model, *_data_args(data, Path(tmp)), "--seed", str(a.seed), *extra_flags]
            for name, extra in (("EM (default)", []), ("NUTS", ["--sampler", "nuts"])):
                try:
                    r = _run(base + extra)
                except RuntimeError as err:
                    rows.append([data_label, name, "-", f"error: {err}"[:120], "", "", "", "", ""])
                    continue
                sampled = r.get("sampler") == "nuts"
                seconds = r["seconds"] + (r["sampling_seconds"] if sampled else r["calibration_seconds"])
                rows.append([
                    data_label, name + (f", {r['nuts_rounds']} round(s)" if sampled else ""), f"{r['acc']:.3f}", _ratio(r),
                    f"{r['ece']:.3f}", f"{r['r_hat_max']:.3f}" if sampled else "-",
                    f"{r['ess_min']:.0f}" if sampled else "-", str(r["divergences"]) if sampled else "-",
                    f"{r['seconds']:.1f} + {seconds - r['seconds']:.1f}",
                ])  # fmt: skip
                print(rows[-1], flush=True)
    body = [
        "## NUTS: the posterior against the EM fit",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in commands) + "  ",
        f"Machine: {machine()}  ",
        f"`mixzoo fit --model {a.model} --data D --seed {a.seed}` (EM, with the default replicate temperature) and the "
        "same with `--sampler nuts` (4 chains in worker processes, 300 warm-up steps and 300 draws each, from the EM "
        "fit; the posterior predictive probabilities over the relabelled draws). Wine is scikit-learn's table as a CSV "
        "with a `target` column. Expected / actual misclassified (their ratio), the expected calibration error over "
        "10 bins, the largest R-hat and the smallest bulk ESS over the model's quantities (weights, means, "
        "covariances), divergent transitions, and the seconds of the fit + the calibrating refit or the sampling. "
        "\"Rounds\" counts the runs of the chains: a second one starts them all at the best mode the first found "
        "(`mixzoo.inference.nuts`).",
        "",
        table(["data", "method", "ACC", "expected / actual", "ECE", "R-hat max", "ESS min", "divergences", "seconds"],
              rows),  # fmt: skip
    ]
    print(f"wrote {write_section('nuts', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
