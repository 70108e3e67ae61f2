"""Clustering metrics: accuracy under the best label matching, NMI, ARI, purity,
and calibration as expected against actual misclassifications.

Predicted cluster indices are arbitrary, so accuracy first matches clusters to
classes with the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`)
on the contingency table. Calibration follows Matsuda and Hyvärinen (2019) (Table 2): the
expected number of misclassified points under the model's own posterior is
:math:`\\sum_n (1 - \\max_k p(k \\mid x_n))`, compared with the number actually
misclassified after matching, and by the expected calibration error of each point's confidence (Naeini et al. 2015);
:mod:`mixzoo.analysis.calibration` says how mixzoo makes them agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "contingency",
    "hungarian_match",
    "cluster_accuracy",
    "purity",
    "expected_misclassified",
    "misclassified",
    "clusters_used",
    "correct_after_matching",
    "reliability",
    "expected_calibration_error",
    "calibration_metrics",
    "clustering_report",
]


def _as_labels(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)


def contingency(labels_true: Any, labels_pred: Any) -> np.ndarray:
    """Counts ``C[i, j]`` of points of predicted cluster ``i`` and true class ``j``."""
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    if t.shape != p.shape:
        raise ValueError(f"labels_true and labels_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    c = np.zeros((pi.max() + 1, ti.max() + 1), dtype=np.int64)
    np.add.at(c, (pi, ti), 1)
    return c


def hungarian_match(labels_true: Any, labels_pred: Any) -> dict[int, int]:
    """Map each predicted cluster to the true class that maximises total agreement.

    With more clusters than classes the unmatched clusters map to ``-1``.
    """
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    classes = np.unique(t)
    clusters = np.unique(p)
    c = contingency(t, p)
    rows, cols = linear_sum_assignment(-c)
    mapping = {int(k): -1 for k in clusters}
    for r, col in zip(rows, cols, strict=False):
        mapping[int(clusters[r])] = int(classes[col])
    return mapping


def cluster_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Fraction of points whose cluster, matched one-to-one to classes, is their class."""
    c = contingency(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(-c)
    return float(c[rows, cols].sum() / c.sum())


def purity(labels_true: Any, labels_pred: Any) -> float:
    """Fraction of points in the majority class of their cluster (many-to-one)."""
    c = contingency(labels_true, labels_pred)
    return float(c.max(axis=1).sum() / c.sum())


def misclassified(labels_true: Any, labels_pred: Any) -> int:
    """Number of points misclassified after Hungarian matching."""
    c = contingency(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(-c)
    return int(c.sum() - c[rows, cols].sum())


def expected_misclassified(proba: Any) -> float:
    """Expected misclassifications under the posterior: :math:`\\sum_n 1 - \\max_k p_{nk}`."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"proba must be (n_samples, n_clusters), got shape {p.shape}")
    return float((1.0 - p.max(axis=1)).sum())


def clusters_used(proba: Any) -> int:
    """How many clusters hold at least one point under argmax assignment (fewer than K: a collapse)."""
    p = np.asarray(proba)
    return int(np.unique(p.argmax(axis=1)).size)


def correct_after_matching(labels_true: Any, proba: Any) -> np.ndarray:
    """(N,) whether each point's most probable cluster, matched one-to-one to the classes by the Hungarian
    algorithm, is its class."""
    labels_true = np.asarray(labels_true)
    pred = np.asarray(proba).argmax(axis=1)
    match = hungarian_match(labels_true, pred)
    return np.array([match.get(int(k), -1) == int(t) for k, t in zip(pred, labels_true, strict=True)])


def reliability(labels_true: Any, proba: Any, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin (``bins`` equal widths on [0, 1]): the mean confidence, the fraction correct after
    matching, and the number of points (bins without points give NaN)."""
    p = np.asarray(proba)
    confidence = p.max(axis=1)
    correct = correct_after_matching(labels_true, p)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / counts
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / counts
    return mean_conf, accuracy, counts


def expected_calibration_error(labels_true: Any, proba: Any, bins: int = 10) -> float:
    """:math:`\\sum_b \\frac{n_b}{N} |\\mathrm{acc}_b - \\mathrm{conf}_b|` over ``bins`` equal-width confidence bins."""
    conf, acc, counts = reliability(labels_true, proba, bins)
    used = counts > 0
    return float((counts[used] * np.abs(acc[used] - conf[used])).sum() / counts.sum())


def calibration_metrics(labels_true: Any, proba: Any) -> dict[str, float | None]:
    """``calibration_ratio``: expected over actual misclassified (``None`` when nothing is misclassified), and
    ``ece``: the expected calibration error over 10 bins."""
    p = np.asarray(proba)
    expected = float((1.0 - p.max(axis=1)).sum())
    actual = int((~correct_after_matching(labels_true, p)).sum())
    return {
        "calibration_ratio": expected / actual if actual else None,
        "ece": expected_calibration_error(labels_true, p),
    }


def clustering_report(labels_true: Any, proba: Any) -> dict[str, float]:
    """All metrics for posterior cluster probabilities ``proba`` of shape (N, K)."""
    p = np.asarray(proba)
    pred = p.argmax(axis=1)
    return {
        "acc": cluster_accuracy(labels_true, pred),
        "nmi": float(normalized_mutual_info_score(labels_true, pred)),
        "ari": float(adjusted_rand_score(labels_true, pred)),
        "purity": purity(labels_true, pred),
        "expected_misclassified": expected_misclassified(p),
        "misclassified": misclassified(labels_true, pred),
        "clusters_used": clusters_used(p),
        **calibration_metrics(labels_true, p),
    }
