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
    "binned_calibration_error",
    "calibration_metrics",
    "clustering_report",
]


def _as_labels(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def contingency(labels_true: Any, labels_pred: Any) -> np.ndarray:
    """Counts ``C[i, j]`` of points of predicted cluster ``i`` and true class ``j``."""
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    if t.shape != p.shape:
        raise ValueError(f"labels_true and labels_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if len(t) and min(t.min(), p.min()) >= 0 and max(t.max(), p.max()) < _DIRECT_LABELS:
        # small non-negative labels count directly; rows and columns of absent labels then go, as unique drops them
        rows, cols = int(p.max()) + 1, int(t.max()) + 1
        c = np.bincount(p * cols + t, minlength=rows * cols).reshape(rows, cols)
        return c[c.any(axis=1)][:, c.any(axis=0)]
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    rows, cols = int(pi.max()) + 1, int(ti.max()) + 1
    return np.bincount(pi * cols + ti, minlength=rows * cols).reshape(rows, cols).astype(np.int64)


_DIRECT_LABELS = 4096
"""Labels below this are counted without sorting them first (``numpy.unique`` sorts millions of labels, and copies
them)."""


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


def _matched(c: np.ndarray) -> int:
    """Points on the Hungarian matching of a contingency table."""
    rows, cols = linear_sum_assignment(-c)
    return int(c[rows, cols].sum())


def cluster_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Fraction of points whose cluster, matched one-to-one to classes, is their class."""
    c = contingency(labels_true, labels_pred)
    return float(_matched(c) / c.sum())


def purity(labels_true: Any, labels_pred: Any) -> float:
    """Fraction of points in the majority class of their cluster (many-to-one)."""
    c = contingency(labels_true, labels_pred)
    return float(c.max(axis=1).sum() / c.sum())


def misclassified(labels_true: Any, labels_pred: Any) -> int:
    """Number of points misclassified after Hungarian matching."""
    c = contingency(labels_true, labels_pred)
    return int(c.sum()) - _matched(c)


def _nmi(c: np.ndarray) -> float:
    """Normalized mutual information (arithmetic mean of the entropies) of a contingency table, as
    :func:`sklearn.metrics.normalized_mutual_info_score` gives it from the labels."""
    if c.shape[0] == c.shape[1] == 1:
        return 1.0
    n = float(c.sum())
    rows, cols = c.sum(axis=1).astype(np.float64), c.sum(axis=0).astype(np.float64)
    i, j = np.nonzero(c)
    nij = c[i, j].astype(np.float64)
    mi = max(0.0, float((nij / n * (np.log(nij) + np.log(n) - np.log(rows[i]) - np.log(cols[j]))).sum()))
    if mi == 0.0:
        return 0.0

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / n
        return float(-(p * np.log(p)).sum())

    return min(1.0, mi / ((entropy(rows) + entropy(cols)) / 2))  # not 1 + 1e-15 from rounding


def _ari(c: np.ndarray) -> float:
    """Adjusted Rand index of a contingency table, from its pair counts as
    :func:`sklearn.metrics.adjusted_rand_score` computes them (in Python integers: no overflow)."""
    n = int(c.sum())
    squares = int((c.astype(object) ** 2).sum())
    rows, cols = c.sum(axis=1), c.sum(axis=0)
    fp = int((c.astype(object) @ cols.astype(object)).sum()) - squares  # pairs together in a cluster, not a class
    fn = int((c.T.astype(object) @ rows.astype(object)).sum()) - squares
    tp = squares - n
    tn = n * n - fp - fn - squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def expected_misclassified(proba: Any) -> float:
    """Expected misclassifications under the posterior: :math:`\\sum_n 1 - \\max_k p_{nk}`."""
    p = np.asarray(proba)  # the largest of each row in its own dtype: no float64 copy of all of them
    if p.ndim != 2:
        raise ValueError(f"proba must be (n_samples, n_clusters), got shape {p.shape}")
    return float((1.0 - p.max(axis=1).astype(np.float64)).sum())


def clusters_used(proba: Any) -> int:
    """How many clusters hold at least one point under argmax assignment (fewer than K: a collapse)."""
    p = np.asarray(proba)
    used = np.zeros(p.shape[-1], dtype=bool)
    for s in range(0, len(p), _ROWS):  # a block at a time: no index array of millions of points
        used[np.unique(p[s : s + _ROWS].argmax(axis=1))] = True
    return int(used.sum())


_ROWS = 1 << 20
"""Points :func:`clusters_used` reduces at a time."""


def correct_after_matching(labels_true: Any, proba: Any) -> np.ndarray:
    """(N,) whether each point's most probable cluster, matched one-to-one to the classes by the Hungarian
    algorithm, is its class."""
    labels_true = _as_labels(labels_true, "labels_true")
    pred = np.asarray(proba).argmax(axis=1)
    match = hungarian_match(labels_true, pred)
    clusters = np.array(sorted(match), dtype=np.int64)  # every predicted cluster is a key
    classes = np.array([match[int(k)] for k in clusters], dtype=np.int64)
    return classes[np.searchsorted(clusters, pred)] == labels_true


def _binned(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, fraction correct and number of points per equal-width confidence bin."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / counts
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / counts
    return mean_conf, accuracy, counts


def binned_calibration_error(mean_conf: np.ndarray, accuracy: np.ndarray, counts: np.ndarray) -> float:
    """The expected calibration error :math:`\\sum_b \\frac{n_b}{N} |\\mathrm{acc}_b - \\mathrm{conf}_b|` of binned
    confidences: :func:`reliability`'s three arrays (bins without points, NaN there, are left out)."""
    used = counts > 0
    return float((counts[used] * np.abs(accuracy[used] - mean_conf[used])).sum() / counts.sum())


def reliability(labels_true: Any, proba: Any, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin (``bins`` equal widths on [0, 1]): the mean confidence, the fraction correct after
    matching, and the number of points (bins without points give NaN)."""
    p = np.asarray(proba)
    return _binned(p.max(axis=1), correct_after_matching(labels_true, p), bins)


def expected_calibration_error(labels_true: Any, proba: Any, bins: int = 10) -> float:
    """:math:`\\sum_b \\frac{n_b}{N} |\\mathrm{acc}_b - \\mathrm{conf}_b|` over ``bins`` equal-width confidence bins."""
    return binned_calibration_error(*reliability(labels_true, proba, bins))


def calibration_metrics(labels_true: Any, proba: Any) -> dict[str, float | None]:
    """``calibration_ratio``: expected over actual misclassified (``None`` when nothing is misclassified), and
    ``ece``: the expected calibration error over 10 bins; the matching to the classes is made once for both."""
    p = np.asarray(proba)
    confidence = p.max(axis=1)
    correct = correct_after_matching(labels_true, p)
    expected = float((1.0 - confidence).sum())
    actual = int((~correct).sum())
    return {
        "calibration_ratio": expected / actual if actual else None,
        "ece": binned_calibration_error(*_binned(confidence, correct, 10)),
    }


def clustering_report(labels_true: Any, proba: Any) -> dict[str, float]:
    """All metrics for posterior cluster probabilities ``proba`` of shape (N, K)."""
    p = np.asarray(proba)
    pred = p.argmax(axis=1)
    c = contingency(labels_true, pred)  # once: every label metric is a function of it
    n, matched = int(c.sum()), _matched(c)
    return {
        "acc": matched / n,
        "nmi": _nmi(c),
        "ari": _ari(c),
        "purity": float(c.max(axis=1).sum() / n),
        "expected_misclassified": expected_misclassified(p),
        "misclassified": n - matched,
        "clusters_used": int(np.unique(pred).size),
        **calibration_metrics(labels_true, p),
    }
