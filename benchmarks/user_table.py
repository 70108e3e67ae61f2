"""A user's own table end to end: a CSV file through ``mixzoo fit --data FILE``, against scikit-learn on the same file.

    python benchmarks/user_table.py [--seeds 3]

The tables are scikit-learn's embedded wine (178 wines, 13 chemical measurements, 3 cultivars) and breast
cancer (569 tumours, 30 features, 2 diagnoses), written as CSV files with a text label column, as a user
would have them. mixzoo reads each file with ``--label-column class --scale``; scikit-learn's
``GaussianMixture`` (full and diag, n_init 5) and ``KMeans`` (n_init 10) cluster the same standardised
features. Writes the section ``user-table`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.mixture import GaussianMixture

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402

from mixzoo.analysis.metrics import clustering_report
from mixzoo.app.cli import main as mixzoo_main
from mixzoo.data import load_dataset

TABLES = {"wine.csv": load_wine, "breast_cancer.csv": load_breast_cancer}


def _write_csv(path: Path, loader) -> None:
    d = loader()
    names = [n.replace(" ", "_").replace("/", "_") for n in d.feature_names]
    rows = [",".join(f"{v:.6g}" for v in x) + f",{d.target_names[y]}" for x, y in zip(d.data, d.target, strict=True)]
    path.write_text(",".join([*names, "class"]) + "\n" + "\n".join(rows) + "\n")


def _mixzoo(path: Path, model: str, seed: int, extra: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = mixzoo_main(["fit", "--model", model, "--data", str(path), "--label-column", "class", "--scale",
                            "--seed", str(seed), "--json", "--no-progress", *extra])  # fmt: skip
    if code != 0:
        raise SystemExit(f"mixzoo fit failed on {path.name}")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, loader in TABLES.items():
            path = Path(tmp) / name
            _write_csv(path, loader)
            d = load_dataset(str(path), label_column="class", scale=True)
            k = int(d.n_classes)
            methods = {
                "mixzoo gmm (default)": lambda s, p=path: _mixzoo(p, "gmm", s, []),
                "mixzoo gmm --covariance full": lambda s, p=path: _mixzoo(p, "gmm", s, ["--covariance", "full"]),
                "mixzoo student-t (default)": lambda s, p=path: _mixzoo(p, "student-t", s, []),
            }
            for label, cov in (("GaussianMixture full, n_init 5", "full"), ("GaussianMixture diag, n_init 5", "diag")):
                methods[label] = lambda s, c=cov, dd=d, kk=k: _sk(GaussianMixture(kk, covariance_type=c, n_init=5, random_state=s), dd, kk)
            methods["KMeans, n_init 10"] = lambda s, dd=d, kk=k: _sk(KMeans(kk, n_init=10, random_state=s), dd, kk)
            for label, fit in methods.items():
                accs, secs = [], []
                for seed in range(a.seeds):
                    r = fit(seed)
                    accs.append(r["acc"])
                    secs.append(r["seconds"])
                rows.append([name, f"{len(d.x)} x {d.x.shape[1]}, K={k}", label, f"{np.mean(accs):.3f} ± {np.std(accs):.3f}",
                             f"{np.mean(secs):.3f}"])  # fmt: skip
                print(rows[-1], flush=True)
    body = (
        "## Your own table: CSV files through `mixzoo fit --data FILE`, against scikit-learn\n\n"
        f"Command: `{command()}`  \nMachine: {machine()}  \n"
        "scikit-learn's embedded wine and breast-cancer tables written as CSV with a text `class` column; mixzoo: "
        "`mixzoo fit --model M --data FILE --label-column class --scale --seed S --json` (its default recipe); "
        f"scikit-learn on the same standardised features. ACC mean ± std over seeds 0..{a.seeds - 1}; seconds: fit time "
        "(mixzoo: the JSON's training seconds).\n\n"
        + table(["file", "size", "method", "ACC", "seconds"], rows)
    )
    write_section("user-table", body)
    print(body)


def _sk(est, d, k: int) -> dict:
    start = time.perf_counter()
    est.fit(d.x)
    seconds = time.perf_counter() - start
    labels = est.predict(d.x)
    return {"acc": clustering_report(d.labels, np.eye(k)[labels])["acc"], "seconds": seconds}


if __name__ == "__main__":
    main()
