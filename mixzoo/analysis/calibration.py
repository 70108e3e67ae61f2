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
log probabilities so that each point's confidence, its largest tempered probability, predicts whether the refit
agrees with the fit there:

.. math::

    \hat T = \arg\max_T \sum_n a_n \log c_n(T) + (1 - a_n) \log\big(1 - c_n(T)\big), \qquad
    c_n(T) = \max_k \operatorname{softmax}_k\!\big(\log p(y_n = k \mid x_n, \hat\theta) / T\big),

with :math:`a_n` whether the refit's aligned label of point n is the fit's, and reports
:math:`\operatorname{softmax}(\log p / \hat T)`. Where the clusters are stable under resampling, the two fits agree
and the probabilities stay sharp; where a refit moves points to other clusters, the temperature rises until the
confidences match how often that happens. (Fitting :math:`T` to the refit's labels themselves, as temperature scaling
does with true labels, lets the few points on which the two fits disagree with hundreds of nats to spare set the
temperature for all: on digits it makes the Gaussian mixture expect 906 errors where it makes 342; the confidence
is what ``predict`` reports and what the expected count sums, so it is what is fitted.) This is temperature scaling
(Guo et al. 2017) with the agreement of a refit in place of true labels, which an unsupervised method does not have.
For a model whose probabilities are its exact posterior (a normalized model with
the empty or the posterior guide) the temperature is at least 1: uncertainty about the parameters only softens
them. The other families' temperature is free. What no refit can see is a model that is wrong in the same way on
every replicate (a Gaussian mixture splitting two moons along their axis): there the expected count stays low.

With revealed labels (``--labels N``) those labels fit the temperature instead, and no refit is needed.

**Measuring it.** :func:`~mixzoo.analysis.metrics.calibration_metrics` gives the ratio of the expected to the actual
number of misclassified points, and the expected calibration error (Naeini et al. 2015) of each point's confidence, its largest cluster
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


def _log_confidence(lp: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    r"""``log c_n`` and ``log(1 - c_n)`` of the tempered confidence :math:`c_n = \max_k \operatorname{softmax}(\log
    p_n / T)_k`, computed from the log probabilities without rounding ``1 - c_n`` to 0."""
    z = _log_softmax(lp / temperature)
    top = z.argmax(axis=1)
    rows = np.arange(len(z))
    log_conf = z[rows, top]
    others = z.copy()
    others[rows, top] = -np.inf
    with np.errstate(divide="ignore"):
        m = others.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        log_rest = np.log(np.exp(others - m).sum(axis=1)) + m[:, 0]
    return log_conf, log_rest


def fit_temperature(log_proba: Any, labels: np.ndarray, floor: float | None = None) -> float:
    r"""The temperature whose confidences best predict whether ``labels`` agree with the most probable clusters:
    the maximum of :math:`\sum_n a_n \log c_n + (1 - a_n) \log (1 - c_n)`, with :math:`a_n` whether ``labels[n]``
    is the most probable cluster of point n and :math:`c_n` its tempered confidence, at least ``floor``; a
    one-dimensional bounded search over :math:`\log T` in [0.01, 1000]."""
    lp = np.asarray(log_proba, dtype=np.float64)
    lp = np.maximum(np.where(np.isfinite(lp), lp, -1e300), -1e6)
    agree = np.asarray(labels, dtype=int) == lp.argmax(axis=1)

    def nll(log_t: float) -> float:
        log_conf, log_rest = _log_confidence(lp, float(np.exp(log_t)))
        return float(-np.where(agree, log_conf, np.maximum(log_rest, -1e6)).mean())

    lo, hi = np.log(max(floor or TEMPERATURE_BOUNDS[0], TEMPERATURE_BOUNDS[0])), np.log(TEMPERATURE_BOUNDS[1])
    if lo >= hi:
        return float(np.exp(lo))
    best = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    # a bounded search can miss its own bound: keep the bound when it is as good
    return float(np.exp(lo if nll(lo) <= best.fun else best.x))


def bootstrap_indices(n: int, seed: int, points: int = REPLICATE_POINTS) -> np.ndarray:
    """``min(n, points)`` indices drawn with replacement from ``n`` (seeded)."""
    return np.random.default_rng(seed).integers(0, n, min(n, points))
