r"""Honest cluster probabilities: a temperature from a refit, and how to measure calibration.

A fitted mixture's cluster probabilities :math:`p(y = k \mid x, \hat\theta)` hold the parameters fixed at one
estimate. They say nothing of how differently the clusters would fall had the data been drawn again, and in many
dimensions the log densities of the components differ by hundreds of nats, so almost every point gets probability 1
(a Gaussian mixture on 64-pixel digits expects about one error where it makes 340). Models trained without an exact
posterior (the energy mixture's NCE normalizers, the neural mixture's batch-normalized scores) can err the other way.

**The replicate temperature.** mixzoo refits the model once on a bootstrap replicate of the data (another seed,
:math:`m = \min(N, 10\,000)` points drawn with replacement, as mclust's ``MclustBootstrap`` draws its replicates), labels
every point with the refit, aligns the refit's clusters to the fit's by the Hungarian algorithm on their contingency
table (Stephens 2000 relabels posterior draws the same way), and chooses one temperature :math:`T` for the fit's
log probabilities by maximum likelihood of the refit's labels:

.. math::

    \hat T = \arg\max_T \sum_n \log \operatorname{softmax}_k\!\big(\log p(y_n = k \mid x_n, \hat\theta) / T\big)
    \big[\tilde y_n\big],

with :math:`\tilde y_n` the aligned label of the refit, and reports :math:`\operatorname{softmax}(\log p / \hat T)`.
Where the clusters are stable under resampling, the two fits agree and the probabilities stay sharp; where a refit
moves points to other clusters, the temperature rises until the fit's confidence matches how often that happens.
This is temperature scaling (Guo et al. 2017) with the labels a refit gives instead of true labels, which an
unsupervised method does not have. For a model whose probabilities are its exact posterior (a normalized model with
the empty or the posterior guide) the temperature is at least 1: uncertainty about the parameters only softens
them. The other families' temperature is free. What no refit can see is a model that is wrong in the same way on
every replicate (a Gaussian mixture splitting two moons along their axis): there the expected count stays low.

With revealed labels (``--labels N``) those labels fit the temperature instead, and no refit is needed.

**Measuring it.** :func:`~mixzoo.analysis.metrics.calibration_metrics` gives the ratio of the expected to the actual number of misclassified
points, and the expected calibration error (Naeini et al. 2015) of each point's confidence, its largest cluster
probability, against whether its cluster, matched to the classes by the Hungarian algorithm, is its class, over 10
equal-width bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment, minimize_scalar

__all__ = [
    "Calibration",
    "CALIBRATIONS",
    "REPLICATE_POINTS",
    "align_labels",
    "fit_temperature",
    "temper",
    "bootstrap_indices",
]

CALIBRATIONS = ("replicate", "none")
"""``replicate``: the temperature of a refit on a bootstrap replicate (the default); ``none``: the fit's own
probabilities."""

REPLICATE_POINTS = 10_000
"""The bootstrap replicate's size at most: a refit on more points would cost as much as the fit."""

TEMPERATURE_BOUNDS = (1e-2, 1e3)


@dataclass(frozen=True)
class Calibration:
    """The temperature a run's probabilities are divided by, and where it came from.

    :param temperature: :math:`T`; the reported probabilities are :math:`\\operatorname{softmax}(\\log p / T)`.
    :param method: ``"replicate"``, ``"labels"`` (revealed labels) or ``"none"``.
    :param floor: the smallest temperature allowed (1 for exact posteriors, else ``None``).
    :param points: the size of the bootstrap replicate, or the number of revealed labels.
    :param seed: the refit's seed.
    :param disagreement: the fraction of points the aligned refit puts in another cluster than the fit.
    """

    temperature: float = 1.0
    method: str = "none"
    floor: float | None = None
    points: int = 0
    seed: int | None = None
    disagreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Calibration:
        return cls() if not raw else cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def align_labels(reference: np.ndarray, other: np.ndarray, n_clusters: int) -> np.ndarray:
    """``other``'s labels renamed to the ``reference`` clusters they overlap most (Hungarian algorithm on the
    contingency table), so that the two labelings can be compared point by point."""
    reference, other = np.asarray(reference, dtype=int), np.asarray(other, dtype=int)
    table = np.zeros((n_clusters, n_clusters))
    np.add.at(table, (other, reference), 1)
    rows, cols = linear_sum_assignment(-table)
    mapping = np.arange(n_clusters)
    mapping[rows] = cols
    return mapping[other]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def temper(log_proba: Any, temperature: float) -> np.ndarray:
    """Probabilities :math:`\\operatorname{softmax}(\\log p / T)` (N, K), in float64."""
    lp = np.asarray(log_proba, dtype=np.float64)
    lp = np.where(np.isfinite(lp), lp, -1e300)  # a cluster of probability 0 stays at 0
    if temperature == 1.0:
        return np.exp(_log_softmax(lp))
    return np.exp(_log_softmax(lp / temperature))


def fit_temperature(log_proba: Any, labels: np.ndarray, floor: float | None = None) -> float:
    """The temperature that maximizes the log-likelihood of ``labels`` under ``softmax(log_proba / T)``, at least
    ``floor``; a one-dimensional bounded search over :math:`\\log T` in [0.01, 1000]."""
    lp = np.asarray(log_proba, dtype=np.float64)
    lp = np.maximum(np.where(np.isfinite(lp), lp, -1e300), -1e6)
    labels = np.asarray(labels, dtype=int)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(lp / np.exp(log_t))[rows, labels].mean())

    lo, hi = np.log(max(floor or TEMPERATURE_BOUNDS[0], TEMPERATURE_BOUNDS[0])), np.log(TEMPERATURE_BOUNDS[1])
    if lo >= hi:
        return float(np.exp(lo))
    best = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    # a bounded search can miss its own bound: keep the bound when it is as good
    return float(np.exp(min((lo, best.x), key=nll) if nll(lo) <= best.fun else best.x))


def bootstrap_indices(n: int, seed: int, points: int = REPLICATE_POINTS) -> np.ndarray:
    """``min(n, points)`` indices drawn with replacement from ``n`` (seeded)."""
    return np.random.default_rng(seed).integers(0, n, min(n, points))
