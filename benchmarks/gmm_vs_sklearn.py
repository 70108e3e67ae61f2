"""mixzoo's Gaussian mixture against scikit-learn's GaussianMixture, side by side on the same arrays.

    python benchmarks/gmm_vs_sklearn.py [--seeds 3] [--n-init 1] [--threads 1] [--data-dir DIR]

Tables: iris (150 x 4, K = 3), wine (178 x 13, standardised, K = 3), breast cancer (569 x 30,
standardised, K = 2), digits (1797 x 64, K = 10) and, with MNIST idx files, MNIST PCA 50
(70000 x 50, K = 10). Per covariance type (full, diag) and seed, each method clusters the same
array with the same K and n_init: mixzoo's default (closed-form EM, ``--loss em``) and its SVI path
(``--loss trace-enum``, skipped on MNIST), both through :class:`mixzoo.MixtureClusterer`, and
scikit-learn's ``GaussianMixture(covariance_type=..., n_init=..., random_state=seed)``. Time is
``fit`` plus ``predict_proba``, on ``--threads`` threads for torch and for NumPy's BLAS alike.
Writes the section ``gmm-vs-sklearn`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, mnist_dir, table, write_section  # noqa: E402

from mixzoo import MixtureClusterer
from mixzoo.analysis.metrics import clustering_report
from mixzoo.data import load_dataset

Table = tuple[np.ndarray, np.ndarray, int]


def _sklearn_table(loader: Callable[..., object], scale: bool) -> Callable[[], Table]:
    def load() -> Table:
        d = loader()
        x = d.data.astype(np.float32)
        x = StandardScaler().fit_transform(x).astype(np.float32) if scale else x
        return x, d.target, len(np.unique(d.target))

    return load


def _digits() -> Table:
    d = load_dataset("digits")
    return d.x, d.labels, 10


def _mnist_pca50(data_dir: str) -> Callable[[], Table]:
    def load() -> Table:
        d = load_dataset("mnist", data_dir=data_dir)
        x = PCA(50, random_state=0).fit_transform(d.x).astype(np.float32)
        return x, d.labels, 10

    return load


def _time(fit: Callable[[], np.ndarray], labels: np.ndarray, repeats: int) -> tuple[float, float]:
    """ACC and the fastest of ``repeats`` runs (the same seeded fit each time)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proba = fit()
        times.append(time.perf_counter() - start)
    return clustering_report(labels, proba)["acc"], min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-init", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="time each fit this many times and keep the fastest")
    ap.add_argument("--data-dir", default=None, help="MNIST idx files (default $MIXZOO_DATA or ../shared/data/mnist)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tables: dict[str, Callable[[], Table]] = {
        "iris": _sklearn_table(load_iris, scale=False),
        "wine (standardised)": _sklearn_table(load_wine, scale=True),
        "breast cancer (standardised)": _sklearn_table(load_breast_cancer, scale=True),
        "digits": _digits,
    }
    data_dir = mnist_dir(a.data_dir)
    if data_dir is not None:
        tables["MNIST PCA 50"] = _mnist_pca50(data_dir)
    summary, rows = [], []
    with threadpool_limits(a.threads):
        warm = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
        MixtureClusterer("gmm", 2, random_state=0).fit(warm).predict_proba(warm)  # first calls load torch's kernels
        SkGMM(2, random_state=0).fit(warm).predict_proba(warm)
        for name, load in tables.items():
            x, labels, k = load()
            big = len(x) > 20000
            for cov in ("full", "diag"):
                res: dict[str, list[tuple[float, float]]] = {"em": [], "trace-enum": [], "sklearn": []}
                for seed in range(a.seeds):
                    for loss in ("em", "trace-enum"):
                        if loss == "trace-enum" and big:
                            continue
                        est = MixtureClusterer("gmm", k, {"covariance": cov}, loss=loss, n_init=a.n_init, random_state=seed, threads=a.threads)
                        res[loss].append(_time(lambda est=est, x=x: est.fit(x).predict_proba(x), labels, 1 if big else a.repeats))
                    sk = SkGMM(k, covariance_type=cov, n_init=a.n_init, random_state=seed)
                    res["sklearn"].append(_time(lambda sk=sk, x=x: sk.fit(x).predict_proba(x), labels, 1 if big else a.repeats))
                    shown = {m: f"{r[-1][0]:.3f} / {r[-1][1]:.3f}" if r else "-" for m, r in res.items()}
                    rows.append([name, cov, seed, shown["em"], shown["trace-enum"], shown["sklearn"]])
                    print(name, cov, seed, {m: r[-1] for m, r in res.items() if r}, flush=True)
                mean = {m: np.mean(r, axis=0) if r else None for m, r in res.items()}
                em, svi, sk = mean["em"], mean["trace-enum"], mean["sklearn"]
                summary.append([
                    name, f"{len(x)} x {x.shape[1]}", k, cov,
                    float(em[0]), float(sk[0]), "-" if svi is None else float(svi[0]),
                    float(em[1]), float(sk[1]), "-" if svi is None else float(svi[1]),
                    float(em[1] / sk[1]), "-" if svi is None else float(svi[1] / sk[1]),
                ])
    body = "\n".join([
        "## Gaussian mixture: mixzoo (closed-form EM and SVI) against scikit-learn's GaussianMixture",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        f"Same arrays, K, n_init = {a.n_init} and seeds 0..{a.seeds - 1} for every method; {a.threads} thread(s) for torch and "
        "BLAS. mixzoo: `MixtureClusterer('gmm', K, {'covariance': ...}, loss=..., n_init=..., random_state=seed)`, i.e. "
        "`mixzoo fit --model gmm` with its recipe: k-means++ and Lloyd start, std floor 0.01 (covariance floor 1e-4 "
        "on the diagonal); `em` stops when the negative log-likelihood per point changes by less than 1e-4 x max(1, |loss|) "
        "once (EM never raises it), at most 300; `trace-enum` is full-batch Adam with the family's learning rate, tol 1e-4. "
        "scikit-learn: `GaussianMixture(covariance_type=..., n_init=..., random_state=seed)` (k-means start, "
        f"reg_covar 1e-6, tol 1e-3 on the mean log-likelihood). Seconds: `fit` + `predict_proba`, the fastest of {a.repeats} runs "
        "(one on MNIST) after one untimed fit of each library, mean over seeds. "
        "`ratio` = mixzoo seconds / scikit-learn seconds. MNIST PCA 50: principal components of all 70000 "
        "images (scikit-learn's PCA, computed once, not timed); no SVI run there.",
        "",
        table(
            ["data", "n x D", "K", "covariance", "ACC em", "ACC sklearn", "ACC trace-enum", "s em", "s sklearn",
             "s trace-enum", "ratio em", "ratio trace-enum"],
            summary,
        ),
        "",
        "Per seed, ACC / seconds:",
        "",
        table(["data", "covariance", "seed", "em", "trace-enum", "sklearn"], rows),
    ])
    write_section("gmm-vs-sklearn", body)
    print(body)


if __name__ == "__main__":
    main()
