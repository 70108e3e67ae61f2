"""Whatever units the data come in: every family's default command on the same data in other units.

    python benchmarks/units.py [--models gmm,...] [--data pinwheel,digits] [--seed 0] [--out FILE]

For pinwheel and digits, the built-in data are written as a user would bring them, ``.npz`` files of ``x`` and ``y``:
multiplied by 0.001, by 1 and by 1000, each feature multiplied by its own factor (log-uniform in [0.01, 100],
seeded), and each row divided by its length (unit-normalized embeddings). Each file is clustered by ``mixzoo fit
--model M --data FILE.npz --seed 0 --calibration none`` (the default command, without the calibrating refit, which
ACC does not need; the per-feature file also with ``--scale``, which standardises each feature), and by scikit-learn's GaussianMixture (full covariances, k-means start, its default
``reg_covar``) beside it. The table gives ACC and the clusters in use; the last column the largest difference of ACC
from the x1 file over x0.001 and x1000. A second table compares digits as an ``.npz`` of its integer pixels with
``--data digits``, for every family (the neural mixture with ``--image 8,8``, the shape the built-in data carry).
Writes the section ``units`` of docs/benchmarks.md.
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

from mixzoo.analysis.metrics import clustering_report  # noqa: E402
from mixzoo.app.config import FitConfig  # noqa: E402
from mixzoo.app.runs import run_fit  # noqa: E402
from mixzoo.data import load_dataset  # noqa: E402
from mixzoo.models import MODELS  # noqa: E402

VARIANTS = ("x0.001", "x1", "x1000", "per feature", "per feature, --scale", "unit rows")


def _variant(x: np.ndarray, name: str) -> np.ndarray:
    factors = 10 ** np.random.default_rng(0).uniform(-2, 2, x.shape[1])
    return {
        "x0.001": x * 0.001, "x1": x, "x1000": x * 1000.0, "per feature": x * factors, "per feature, --scale": x * factors,
        "unit rows": x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12),
    }[name].astype(np.float32)  # fmt: skip


def _fit(model: str, path: str, seed: int, **extra: object) -> tuple[float, int, float]:
    start = time.perf_counter()
    r = run_fit(FitConfig(model=model, data=path, seed=seed, threads=1, calibration="none", **extra), progress=False)  # type: ignore[arg-type]
    return float(r["acc"]), int(r["clusters_used"]), time.perf_counter() - start


def _sklearn(x: np.ndarray, labels: np.ndarray, k: int, seed: int) -> tuple[float, int]:
    from sklearn.mixture import GaussianMixture

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = GaussianMixture(k, covariance_type="full", random_state=seed).fit_predict(x)
    except ValueError as err:  # scikit-learn's own failure on ill-conditioned covariances
        print("sklearn failed:", err, file=sys.stderr)
        return float("nan"), 0
    return float(clustering_report(labels, np.eye(k)[pred])["acc"]), len(np.unique(pred))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--data", default="pinwheel,digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--n-init", type=int, default=None,
                    help="restarts of every fit (default: each family's); the section is then units-n-init-N")
    a = ap.parse_args()
    restarts = {} if a.n_init is None else {"n_init": a.n_init}
    restart_flag = "" if a.n_init is None else f" --n-init {a.n_init}"
    torch.set_num_threads(1)
    models, datas = a.models.split(","), a.data.split(",")
    rows, integer_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for data in datas:
            d = load_dataset(data)
            k = int(d.n_classes or 0)
            paths = {}
            for v in VARIANTS:
                paths[v] = str(Path(tmp) / f"{data}-{v.replace(' ', '_').replace(',', '')}.npz")
                np.savez(paths[v], x=_variant(d.x, v), y=d.labels)
            for model in models:
                cells, accs = [], {}
                for v in VARIANTS:
                    acc, used, secs = _fit(model, paths[v], a.seed, **restarts, **({"scale": "features"} if "--scale" in v else {}))
                    accs[v] = acc
                    cells.append(f"{acc:.3f} ({used})")
                    print(data, model, v, acc, used, f"{secs:.1f}s", flush=True)
                worst = max(abs(accs[v] - accs["x1"]) for v in ("x0.001", "x1000"))
                rows.append([data, f"`{model}`", *cells, f"{worst:.3f}"])
            cells = []
            for v in VARIANTS:
                x = np.load(paths[v])["x"]
                acc, used = _sklearn(x, d.labels, k, a.seed)
                cells.append(f"{acc:.3f} ({used})")
            rows.append([data, "scikit-learn GaussianMixture (full)", *cells, "-"])
            if data == "digits":
                ints = str(Path(tmp) / "digits-integers.npz")
                np.savez(ints, x=d.x.astype(np.int64), y=d.labels)
                for model in models:
                    extra = {"options": {"image": [8, 8]}} if model == "neural-mixture" else {}
                    built_in, used_b, _ = _fit(model, "digits", a.seed, **restarts)
                    from_file, used_f, _ = _fit(model, ints, a.seed, **restarts, **extra)
                    flag = " --image 8,8" if extra else ""
                    integer_rows.append([f"`{model}`", f"{built_in:.3f} ({used_b})", f"{from_file:.3f} ({used_f}){flag}",
                                         f"{abs(built_in - from_file):.3f}"])  # fmt: skip
                    print("integers", model, built_in, from_file, flush=True)
    body = [
        "## Units: the same data in other units, every family's default command" + (f", with{restart_flag}" if restart_flag else ""),
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "Each cell: ACC (clusters in use) of `mixzoo fit --model M --data FILE.npz --seed "
        f"{a.seed} --calibration none{restart_flag}` on the built-in data written in other units: multiplied by 0.001, 1 and 1000; each feature by its "
        "own factor, log-uniform in [0.01, 100] (without and with `--scale`, which standardises each feature); each row "
        "divided by its length. Last column: the largest |ACC - ACC at x1| over x0.001 and x1000. scikit-learn: "
        "`GaussianMixture(K, covariance_type='full')` with its defaults, on the same arrays.",
        "",
        table(["data", "method", *VARIANTS, "largest change of ACC over the common factors"], rows),
    ]
    if integer_rows:
        body += [
            "",
            "Digits as a user's `.npz` of integer pixels (0..16, no image shape) against `--data digits` (ACC, "
            "clusters in use):",
            "",
            table(["model", "--data digits", "--data digits-integers.npz", "difference"], integer_rows),
        ]
    print(f"wrote {write_section('units' if a.n_init is None else f'units-n-init-{a.n_init}', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
