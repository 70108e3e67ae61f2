"""Choosing K and the covariance structure: mixzoo select against scikit-learn, on data whose number of classes is known.

    python benchmarks/choosing_k.py [--seeds 0,1,2] [--out FILE]

For pinwheel, moons and digits (built in) and scikit-learn's wine, breast cancer and iris tables (bundled with
scikit-learn, clustered as a user's CSV would be, in their own units), three methods choose K in 1..9:

- ``mixzoo select`` (gmm, the default: K x the six covariance structures, ranked by BIC; the Python call
  ``select_clusters(x, range(1, 10), loo=False)``, which is ``mixzoo select --no-loo``: LOO does not change the BIC
  choice and is the slow column);
- scikit-learn's ``GaussianMixture`` by BIC over its four covariance types (``covariance_type`` full, diag,
  spherical, tied; k-means start, ``n_init=1``, ``random_state`` the seed), on the features standardised (as mixzoo
  does for tables; digits as loaded, as mixzoo does for images);
- scikit-learn's ``BayesianGaussianMixture`` (10 components, full covariances, a Dirichlet-process prior with
  concentration 0.01, ``max_iter=500``): K is the number of clusters that hold points.

ACC (Hungarian matching) of the chosen fit's clustering, and the seconds of the whole search. A second table shows the
start: ``mixzoo fit --model gmm`` on iris with ``--scale`` from five seeds, with one k-means++ start (as before) and
with the best of ten. Writes the section ``choosing-k`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import torch  # noqa: E402
from report import command, machine, table, write_section  # noqa: E402

from mixzoo.analysis.metrics import clustering_report  # noqa: E402
from mixzoo.app.estimator import MixtureClusterer  # noqa: E402
from mixzoo.app.selection import select_clusters  # noqa: E402
from mixzoo.data import load_dataset  # noqa: E402

KS = range(1, 10)


def _data(name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Features, labels, and whether they are an image (scikit-learn's baselines then keep the common unit)."""
    from sklearn import datasets

    tables = {"wine": datasets.load_wine, "breast cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}
    if name in tables:
        x, y = tables[name](return_X_y=True)
        return x.astype(np.float64), y, False
    d = load_dataset(name)
    return d.x.astype(np.float64), d.labels, d.image_shape is not None


def _acc(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(clustering_report(labels, np.eye(int(predicted.max()) + 1)[predicted])["acc"])


def _mixzoo(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[str, float, float]:
    start = time.perf_counter()
    sel = select_clusters(x, KS, seed=seed, loo=False)
    seconds = time.perf_counter() - start
    est = MixtureClusterer(n_clusters=sel.choice, model_options=sel.choice_options, random_state=seed).fit(x)
    return f"{sel.choice} {sel.choice_options['covariance']}", _acc(y, est.predict(x)), seconds


def _sklearn_bic(x: np.ndarray, y: np.ndarray, seed: int, image: bool) -> tuple[str, float, float]:
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    z = x if image else StandardScaler().fit_transform(x)
    start = time.perf_counter()
    best = None
    for cov in ("full", "diag", "spherical", "tied"):
        for k in KS:
            try:
                g = GaussianMixture(k, covariance_type=cov, random_state=seed).fit(z)
            except ValueError:  # ill-conditioned covariances on this data
                continue
            bic = g.bic(z)
            if best is None or bic < best[0]:
                best = (bic, k, cov, g)
    seconds = time.perf_counter() - start
    assert best is not None
    return f"{best[1]} {best[2]}", _acc(y, best[3].predict(z)), seconds


def _sklearn_dp(x: np.ndarray, y: np.ndarray, seed: int, image: bool) -> tuple[str, float, float]:
    from sklearn.mixture import BayesianGaussianMixture
    from sklearn.preprocessing import StandardScaler

    z = x if image else StandardScaler().fit_transform(x)
    start = time.perf_counter()
    g = BayesianGaussianMixture(n_components=10, weight_concentration_prior=0.01, max_iter=500, random_state=seed,
                                reg_covar=1e-4).fit(z)  # fmt: skip
    seconds = time.perf_counter() - start
    pred = g.predict(z)
    _, pred = np.unique(pred, return_inverse=True)
    return str(int(pred.max()) + 1), _acc(y, pred), seconds


def _start_rows(seeds: list[int]) -> list[list[object]]:
    import mixzoo.models.gmm as gmm

    x, y, _ = _data("iris")
    rows = []
    real = gmm.start_count
    for label, count in (("one k-means++ start", lambda *a: 1), ("best of ten (the default)", real)):
        gmm.start_count = count
        try:
            accs = []
            for s in seeds:
                est = MixtureClusterer(n_clusters=3, random_state=s)
                from sklearn.preprocessing import StandardScaler

                accs.append(_acc(y, est.fit(StandardScaler().fit_transform(x)).predict(StandardScaler().fit_transform(x))))
            rows.append([label, ", ".join(f"{a:.3f}" for a in accs)])
        finally:
            gmm.start_count = real
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data", default="pinwheel,moons,digits,wine,breast cancer,iris")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    for name in a.data.split(","):
        x, y, image = _data(name)
        truth = len(np.unique(y))
        for method, fn in (("mixzoo select (gmm, BIC)", lambda s, x=x, y=y: _mixzoo(x, y, s)),
                           ("scikit-learn GaussianMixture, BIC over 4 types", lambda s, x=x, y=y, image=image: _sklearn_bic(x, y, s, image)),
                           ("scikit-learn BayesianGaussianMixture (DP, 10)", lambda s, x=x, y=y, image=image: _sklearn_dp(x, y, s, image))):  # fmt: skip
            results = [fn(s) for s in seeds]
            for s, r in zip(seeds, results, strict=True):
                print(name, method, s, r, flush=True)
            choices = [r[0] for r in results]
            right = sum(c.split()[0] == str(truth) for c in choices)
            rows.append([name, truth, method, "; ".join(choices), f"{right}/{len(seeds)}",
                         f"{np.mean([r[1] for r in results]):.3f}", f"{np.mean([r[2] for r in results]):.1f}"])  # fmt: skip
    body = [
        "## Choosing K: mixzoo select against scikit-learn",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "K in 1..9 on data whose number of classes is known (the true K). mixzoo: `select_clusters(x, range(1, 10), "
        "seed=s, loo=False)` = `mixzoo select --no-loo --seed s` (gmm: K x six covariance structures by BIC, the "
        "family's plan for the data: each feature of a table standardised, digits in their common unit). "
        "scikit-learn: `GaussianMixture` by BIC over its four `covariance_type`s, and `BayesianGaussianMixture(10, "
        "weight_concentration_prior=0.01)` (K = clusters holding points), on standardised tables and digits as "
        f"loaded. Seeds {', '.join(map(str, seeds))}: the choice per seed, how many seeds chose the true K, the mean "
        "ACC of the chosen fit, and the mean seconds of one whole search.",
        "",
        table(["data", "true K", "method", "choice per seed", "true K chosen", "ACC at the choice", "seconds"], rows),
        "",
        "The start, on iris standardised (`mixzoo fit --model gmm --data iris.csv --scale`, K = 3), ACC per seed "
        f"{', '.join(map(str, range(5)))}:",
        "",
        table(["start", "ACC per seed"], _start_rows(list(range(5)))),
    ]
    print(f"wrote {write_section('choosing-k', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
