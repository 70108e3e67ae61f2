"""Clustering table for one data set: every mixzoo model x inference that applies, and the scikit-learn
baselines (k-means, GaussianMixture full and diag, Ward), side by side over several seeds.

    python benchmarks/clustering.py --data NAME [--seeds 3] [--quick | --tiny] [--device cpu|cuda|auto]
                                    [--data-dir DIR] [--out FILE]

NAME is a table: pinwheel, two-circles, moons, digits, mnist1d, mnist (raw pixels), mnist-pca50,
mnist5-pca50. The data are drawn (toys, mnist1d), subsampled and PCA-reduced once with seed 0; seed s
then initialises and trains every method. mixzoo rows build the model family's registry defaults
(``FitConfig(...).resolved()``) and train through ``mixzoo.app.restarts.fit_restarts``, the loop behind
``mixzoo fit``; ACC / NMI / ARI come from ``mixzoo.analysis.metrics.clustering_report`` for every method.
Writes the section ``clustering-<NAME>`` of docs/benchmarks.md (or of ``--out``).

``--quick``: one seed, a fifth of the epochs, MNIST subsampled to 2000 points. ``--tiny``: a smoke test
(300 points, 2 epochs, one seed).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import command, machine, table, write_section  # noqa: E402

from mixzoo.analysis.metrics import clustering_report
from mixzoo.analysis.posterior import cluster_proba
from mixzoo.app.config import FitConfig
from mixzoo.app.planning import plan_for, planned, shape_of
from mixzoo.app.restarts import fit_restarts
from mixzoo.data import Dataset, load_dataset

WARD_MAX_N = 20000
"""Ward's linkage keeps the condensed distance matrix (n^2/2 doubles): at most 1.6 GB here."""
FULL_COV_MAX_DIM = 100
"""Full covariances are skipped above this dimension (raw MNIST: 10 x 784 x 784 per EM/SGD step)."""


@dataclass
class Row:
    """One mixzoo model x inference; ``None`` fields take the model family's registry defaults."""

    label: str
    model: str
    guide: str | None = None
    loss: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    scale: bool = False
    """Standardise the features for this row (the baselines see the table's features)."""


@dataclass
class Spec:
    """One table: a data set with its preprocessing and the mixzoo rows that apply to it."""

    title: str
    data: str
    rows: list[Row]
    pca: int | None = None
    subsample: int | None = None
    quick_subsample: int | None = None
    note: str = ""


GMM = [Row("`gmm` diag", "gmm", options={"covariance": "diag"}), Row("`gmm` full", "gmm", options={"covariance": "full"})]
NEURAL_MLP = Row("`neural-mixture` MLP 32-32", "neural-mixture", options={"arch": "mlp"})  # images would get the CNN recipe
ENERGY_QUAD = Row("`energy-mixture` quadratic (diagonal Gaussian energies)", "energy-mixture", options={"features": "quadratic"})
TOY_ROWS = [
    *GMM,
    Row("`flow-mixture` NSF, maximum likelihood", "flow-mixture", guide="empty"),
    Row("`flow-mixture` NSF, encoder q(y\\|x)", "flow-mixture", guide="encoder"),
    NEURAL_MLP,
    ENERGY_QUAD,
]
# the MNIST5 recipe of docs/benchmarks.md: MAF with the k-means partition's diagonal GMM as base
FLOW_PCA = {"flow": "maf", "base": "clusters", "hidden": "128,128"}


def _pca_rows(flow_epochs: int) -> list[Row]:
    return [
        *GMM,
        Row("`flow-mixture` MAF 128-128, base clusters, maximum likelihood", "flow-mixture", guide="empty",
            options=FLOW_PCA, epochs=flow_epochs),
        Row("`flow-mixture` MAF 128-128, base clusters, encoder q(y\\|x)", "flow-mixture", guide="encoder",
            options=FLOW_PCA, epochs=flow_epochs),
        NEURAL_MLP,
        ENERGY_QUAD,
    ]


def _gmvae_rows(epochs: int | None = None, pretrain: int = 20, scale: bool = False) -> list[Row]:
    opts = {"pretrain": pretrain}
    return [
        Row("`gmvae` q(z\\|x,y)", "gmvae", guide="qzxy", loss="vimco", options=opts, epochs=epochs, scale=scale),
        Row("`gmvae` q(z\\|x,y)", "gmvae", guide="qzxy", loss="trace-enum", options=opts, epochs=epochs, scale=scale),
    ]


SPECS: dict[str, Spec] = {
    "pinwheel": Spec("pinwheel (5 arms)", "pinwheel", TOY_ROWS),
    "two-circles": Spec("two circles", "two-circles", TOY_ROWS),
    "moons": Spec("moons", "moons", TOY_ROWS),
    "digits": Spec(
        "digits (scikit-learn, 8x8)",
        "digits",
        [
            *GMM,
            NEURAL_MLP,
            Row("`neural-mixture` CNN C32-C64 F32, eq. (7) with augmentations", "neural-mixture",
                options={"arch": "cnn", "channels": "32,64", "hidden": "32", "augment": True}),
            *_gmvae_rows(scale=True),
        ],
    ),
    "mnist1d": Spec(
        "MNIST-1D",
        "mnist1d",
        [*GMM, NEURAL_MLP, ENERGY_QUAD, *_gmvae_rows(epochs=50, pretrain=10)],
    ),
    "mnist": Spec(
        "MNIST, raw pixels",
        "mnist",
        [
            # one SVI step holds (K, batch, 784) tensors: 300 epochs take over 10 minutes here, 30 about a minute
            Row("`gmm` diag", "gmm", options={"covariance": "diag"}, epochs=30),
            NEURAL_MLP,
            Row("`neural-mixture` CNN C16-C32-C64 F32, eq. (7) with augmentations", "neural-mixture",
                options={"arch": "cnn", "channels": "16,32,64", "hidden": "32", "augment": True}, epochs=15),
            *_gmvae_rows(epochs=15, pretrain=5),
        ],
        subsample=10000,
        quick_subsample=2000,
    ),
    "mnist-pca50": Spec("MNIST, PCA 50", "mnist", _pca_rows(30), pca=50, subsample=10000, quick_subsample=2000),
    "mnist5-pca50": Spec(
        "MNIST5 (digits 0-4), PCA 50", "mnist5", _pca_rows(30), pca=50, subsample=10000, quick_subsample=2000
    ),
}


def _load(spec: Spec, mode: str, data_dir: str | None, scale: bool) -> Dataset:
    """The table's data; after a PCA they are the features as loaded, as a user's file of them would be (the run's
    plan then preprocesses them as it would that file's)."""
    sub = {"full": spec.subsample, "quick": spec.quick_subsample or spec.subsample, "tiny": 300}[mode]
    d = load_dataset(spec.data, data_dir=data_dir, scale=scale, pca=spec.pca, subsample=sub, seed=0)
    return replace(d, preprocessing=None) if spec.pca else d


def _epochs(row: Row, mode: str, d: Dataset) -> tuple[int, dict[str, Any]]:
    """Epochs and options of a row in this mode (GMVAE pretraining shrinks with the epochs)."""
    c = FitConfig(model=row.model, guide=row.guide, loss=row.loss, options=dict(row.options), pca=0).resolved()
    family_options = c.family_options()
    epochs = row.epochs or planned(c, shape_of(d), d.n_classes)[0].epochs
    options = dict(row.options)
    pretrain = getattr(family_options, "pretrain", None)
    if mode == "quick":
        epochs = max(2, epochs // 5)
        if pretrain is not None:
            options["pretrain"] = max(1, pretrain // 4)
    elif mode == "tiny":
        epochs = 2
        if pretrain is not None:
            options["pretrain"] = 1
    return epochs, options


def fit_mixzoo(row: Row, d: Dataset, seed: int, device: str, epochs: int, options: dict[str, Any]) -> dict[str, Any]:
    """One seeded fit of a mixzoo row (what ``mixzoo fit`` does for a resolved config) and its metrics."""
    c = FitConfig(model=row.model, data=d.name, guide=row.guide, loss=row.loss, epochs=epochs, seed=seed,
                  device=device, options=options, clusters=d.n_classes, pca=0).resolved()  # the table's own features
    c, d, plan = plan_for(c, d)
    x = torch.as_tensor(d.x)
    start = time.perf_counter()
    _, model, guide, result = fit_restarts(c, plan, x, [seed], loss=c.algorithm.loss(c.loss_opts()))
    if result.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    proba = cluster_proba(model, guide, x.to(result.device)).cpu().numpy()
    return {**clustering_report(d.labels, proba), "seconds": seconds}


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[labels]


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return _one_hot(KMeans(k, n_init=10, random_state=seed).fit(x).labels_, k)


def _sk_gmm(cov: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def fit(x: np.ndarray, k: int, seed: int) -> np.ndarray:
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(k, covariance_type=cov, random_state=seed).fit(x).predict_proba(x)

    return fit


def _ward(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    return _one_hot(AgglomerativeClustering(k, linkage="ward").fit(x).labels_, k)


def baselines(d: Dataset) -> list[tuple[str, str, Callable[[np.ndarray, int, int], np.ndarray], bool]]:
    """(name, algorithm, fit -> (N, K) probabilities, seeded) of the scikit-learn baselines that fit this data."""
    out = [
        ("k-means, n_init 10", "k-means++ and Lloyd", _kmeans, True),
        ("GaussianMixture diag", "EM from k-means", _sk_gmm("diag"), True),
    ]
    if d.x.shape[1] <= FULL_COV_MAX_DIM:
        out.append(("GaussianMixture full", "EM from k-means", _sk_gmm("full"), True))
    if len(d.x) <= WARD_MAX_N:
        out.append(("Ward (AgglomerativeClustering)", "hierarchical, deterministic", _ward, False))
    return out


def fit_baseline(fn: Callable[[np.ndarray, int, int], np.ndarray], d: Dataset, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    proba = fn(d.x, d.n_classes, seed)
    seconds = time.perf_counter() - start
    return {**clustering_report(d.labels, proba), "seconds": seconds}


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def summarise(name: str, library: str, inference: str, features: str, epochs: str, runs: list[dict], n_seeds: int) -> list:
    ok = [r for r in runs if "error" not in r]
    errors = sorted({r["error"] for r in runs if "error" in r})
    per_seed = ", ".join(f"{r['acc']:.3f}" if "error" not in r else "failed" for r in runs)
    row = [
        name,
        library,
        inference,
        features,
        epochs,
        f"{len(ok)}/{n_seeds}",
        _pm([r["acc"] for r in ok]),
        _pm([r["nmi"] for r in ok]),
        _pm([r["ari"] for r in ok]),
        float(np.mean([r["seconds"] for r in ok])) if ok else "-",
        per_seed + (f" ({'; '.join(errors)})" if errors else ""),
    ]
    return row


HEADER = ["method", "library", "inference", "features", "epochs", "seeds ok", "ACC", "NMI", "ARI", "seconds", "ACC per seed"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, choices=sorted(SPECS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default 3; 1 with --quick/--tiny)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one seed, a fifth of the epochs, MNIST subsample 2000")
    mode.add_argument("--tiny", action="store_true", help="smoke test: 300 points, 2 epochs, one seed")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    ap.add_argument("--data-dir", default=None, help="MNIST idx directory (default $MIXZOO_DATA)")
    ap.add_argument("--out", default=None, help="Markdown file to write the section into (default docs/benchmarks.md)")
    ap.add_argument("--threads", type=int, default=1, help="torch (and BLAS/OpenMP) threads; 1 by default, see run.py")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)  # scikit-learn's BLAS and OpenMP pools: the same cores as torch
    run_mode = "quick" if a.quick else "tiny" if a.tiny else "full"
    n_seeds = a.seeds or (3 if run_mode == "full" else 1)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    spec = SPECS[a.data]
    cache: dict[bool, Dataset] = {}

    def data(scale: bool) -> Dataset:
        if scale not in cache:
            cache[scale] = _load(spec, run_mode, a.data_dir, scale)
        return cache[scale]

    d = data(False)
    rows = []
    total = time.perf_counter()
    for row in spec.rows:
        if row.options.get("covariance") == "full" and d.x.shape[1] > FULL_COV_MAX_DIM:
            continue
        dd = data(row.scale)
        epochs, options = _epochs(row, run_mode, dd)
        runs = []
        for seed in range(n_seeds):
            try:
                runs.append(fit_mixzoo(row, dd, seed, device, epochs, options))
            except Exception as err:  # a failing fit is reported in the table, not hidden
                traceback.print_exc()
                runs.append({"error": f"{type(err).__name__}: {str(err).split(';')[0][:60]}"})
            print(row.label, row.loss or "", seed, {k: v for k, v in runs[-1].items() if k in ("acc", "seconds", "error")},
                  flush=True)
        c = FitConfig(model=row.model, guide=row.guide, loss=row.loss, options=options).resolved()
        inference = f"{c.loss}, guide {c.guide}"
        if row.model == "gmvae":
            inference += f", {c.family_options().pretrain} autoencoder pretraining epochs"
        rows.append(summarise(row.label, "mixzoo", inference, "standardised" if row.scale else "as loaded", str(epochs),
                              runs, n_seeds))
    for name, algorithm, fn, seeded in baselines(d):
        seeds = range(n_seeds) if seeded else range(1)
        runs = []
        for seed in seeds:
            try:
                runs.append(fit_baseline(fn, d, seed))
            except Exception as err:
                traceback.print_exc()
                runs.append({"error": f"{type(err).__name__}: {str(err)[:60]}"})
            print(name, seed, {k: v for k, v in runs[-1].items() if k in ("acc", "seconds", "error")}, flush=True)
        rows.append(summarise(name, "scikit-learn", algorithm, "as loaded", "-", runs, len(seeds)))
    total = time.perf_counter() - total

    sub = {"full": spec.subsample, "quick": spec.quick_subsample or spec.subsample, "tiny": 300}[run_mode]
    described = f"{len(d.x)} points" + (f" (a seeded subsample of {spec.data}; seed 0)" if sub and sub < 70000 else "")
    described += f", {d.x.shape[1]} features" + (f" (PCA {spec.pca} after subsampling)" if spec.pca else "")
    described += f", K = {d.n_classes} clusters (the number of classes)"
    mode_text = {
        "full": "full run",
        "quick": "QUICK run (one seed, a fifth of the epochs, small subsample): a smoke test, not the reference numbers",
        "tiny": "TINY smoke test (300 points, 2 epochs): not a benchmark",
    }[run_mode]
    body = "\n".join(
        [
            f"## Clustering: {spec.title}",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine(device)}  ",
            f"Mode: {mode_text}; {total:.0f} s for the whole table.  ",
            f"Data: {described}. Seeds 0..{n_seeds - 1}: the data are fixed, seed s initialises and trains each method "
            "(scikit-learn's `random_state`); Ward is deterministic and runs once.  ",
            "mixzoo rows: the model family's registry defaults (`mixzoo models`) except where the method names an option "
            "or the epochs column differs, trained by `mixzoo.app.restarts.fit_restarts` (the loop of `mixzoo fit`, one "
            "restart); scikit-learn rows: KMeans(n_init=10), GaussianMixture(covariance_type, default reg_covar 1e-6), "
            "AgglomerativeClustering(linkage='ward') when n <= 20000; full covariances only up to 100 features. "
            "ACC (Hungarian matching), NMI and ARI from `mixzoo.analysis.metrics.clustering_report` for every method: mean ± "
            "standard deviation (ddof 0) over the seeds that finished; seconds: mean wall time of one fit "
            "(data-dependent initialisation and training, or scikit-learn's fit), without evaluation.",
            "",
            table(HEADER, rows),
        ]
    )
    path = write_section(f"clustering-{a.data}", body, a.out)
    print(body)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
