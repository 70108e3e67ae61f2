"""Calibration of every family's default command: expected against actual misclassified, with and without the
replicate temperature.

    python benchmarks/calibration.py [--models gmm,...] [--data pinwheel,moons,digits,wine,breast-cancer]
                                     [--seed 0] [--out FILE] [--figures DIR]

Each family's default command, ``mixzoo fit --model M --data D --seed 0`` (wine and breast cancer are
scikit-learn's tables, written as a user's CSV with a ``target`` column: ``--data FILE.csv --label-column target``),
is run once; its record gives the calibrated probabilities (the default, ``--calibration replicate``), and the
trained pair gives the model's own (what ``--calibration none`` reports) on the same fit. For both: the expected
number of misclassified points (sum of one minus the largest probability), the actual number after the Hungarian
match, their ratio, and the expected calibration error over 10 bins; "honest" marks a ratio within 0.5-2 or an
expected count within 5 points of the actual one. ``mnist5`` (MNIST digits 0-4, 50 principal components) can be
added to ``--data`` when the MNIST files are at hand (``MIXZOO_DATA``). A reliability plot per data set
(``mixzoo.analysis.plots.plot_reliability``, every family calibrated) goes to ``--figures``. Writes the section
``calibration`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import torch  # noqa: E402
from report import command, machine, table, write_section  # noqa: E402

from mixzoo.analysis.metrics import calibration_metrics, clustering_report  # noqa: E402
from mixzoo.analysis.plots import plot_reliability  # noqa: E402
from mixzoo.analysis.posterior import cluster_proba  # noqa: E402
from mixzoo.app.config import FitConfig  # noqa: E402
from mixzoo.app.runs import execute  # noqa: E402
from mixzoo.models import MODELS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _csv(name: str, directory: Path) -> str:
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast-cancer": datasets.load_breast_cancer}[name]
    frame = loader(as_frame=True).frame
    path = directory / f"{name}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _config(model: str, data: str, seed: int, directory: Path) -> FitConfig:
    if data in ("wine", "breast-cancer"):
        return FitConfig(model=model, data=_csv(data, directory), label_column="target", seed=seed)
    if data == "mnist5":
        return FitConfig(model=model, data="mnist", seed=seed, pca=50, cluster_classes="0,1,2,3,4")
    return FitConfig(model=model, data=data, seed=seed)


def _honest(expected: float, actual: int) -> bool:
    return abs(expected - actual) <= 5 or (actual > 0 and 0.5 <= expected / actual <= 2)


def _cell(expected: float, actual: int) -> str:
    ratio = f"{expected / actual:.2f}" if actual else "-"
    return f"{expected:.1f} / {actual} ({ratio}){' ✓' if _honest(expected, actual) else ''}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--data", default="pinwheel,moons,digits,wine,breast-cancer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows, counts = [], {"raw": 0, "calibrated": 0, "runs": 0}
    figures = Path(a.figures)
    figures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for data in a.data.split(","):
            reliability: dict[str, np.ndarray] = {}
            labels = None
            for model in a.models.split(","):
                start = time.perf_counter()
                try:
                    run = execute(_config(model, data, a.seed, Path(tmp)), progress=False)
                except Exception as err:  # a failing run is a row of the table
                    rows.append([data, f"`{model}`", "-", f"error: {type(err).__name__}: {err}"[:120], "", "", "", "", ""])
                    continue
                wall = time.perf_counter() - start
                r, labels = run.record, run.data.labels
                raw = cluster_proba(run.model, run.guide, torch.as_tensor(run.data.x)).double().numpy()
                raw_report = {**clustering_report(labels, raw), **calibration_metrics(labels, raw)}
                reliability[model] = run.proba
                counts["runs"] += 1
                counts["raw"] += _honest(raw_report["expected_misclassified"], raw_report["misclassified"])
                counts["calibrated"] += _honest(r["expected_misclassified"], r["misclassified"])
                rows.append([
                    data, f"`{model}`", f"{r['acc']:.3f}",
                    _cell(raw_report["expected_misclassified"], raw_report["misclassified"]),
                    _cell(r["expected_misclassified"], r["misclassified"]),
                    f"{raw_report['ece']:.3f} → {r['ece']:.3f}",
                    f"{r['temperature']:.3g}" + (" (≥ 1)" if r["calibration"]["floor"] else ""),
                    f"{r['calibration']['disagreement']:.3f}" if r["calibration"]["disagreement"] is not None else "-",
                    f"{r['seconds']:.1f} + {r['calibration_seconds']:.1f}",
                ])  # fmt: skip
                print(data, model, rows[-1], f"{wall:.0f} s", flush=True)
            if reliability and labels is not None:
                plot_reliability(labels, reliability, figures / f"reliability-{data}.png", title=f"{data}, calibrated")
    body = [
        "## Calibration: expected against actual misclassified",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "Every family's default command (seed "
        f"{a.seed}); wine and breast cancer are scikit-learn's tables as a CSV with a `target` column. For the "
        "model's own probabilities (`--calibration none`) and the default replicate temperature, on the same fit: the "
        "expected number of misclassified points / the actual number after the Hungarian match (their ratio; ✓ "
        "within 0.5-2, or within 5 points), the expected calibration error over 10 bins, the temperature (≥ 1 where "
        "it is held at least 1, the probabilities being an exact posterior), the share of points the aligned refit "
        "puts elsewhere, and the seconds of the fit + the calibrating refit. Reliability plots: "
        f"`docs/figures/reliability-<data>.png`. Honest runs: {counts['raw']} of {counts['runs']} with the model's "
        f"own probabilities, {counts['calibrated']} of {counts['runs']} calibrated.",
        "",
        table(["data", "model", "ACC", "expected / actual, own", "expected / actual, calibrated", "ECE own → calibrated",
               "temperature", "refit disagrees", "seconds"], rows),  # fmt: skip
    ]
    print(f"wrote {write_section('calibration', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
