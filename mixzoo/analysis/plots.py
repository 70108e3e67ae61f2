"""Diagnostic plots of a fit, drawn with matplotlib's Agg backend and saved to files.

Each function draws one figure on its own :class:`~matplotlib.figure.Figure` (no
pyplot state), writes it to ``path`` and returns the path.

Data, probabilities and labels are taken as :func:`mixzoo.fit` takes data (NumPy arrays,
tensors on any device, pandas DataFrames or Series, nested lists) and checked before
anything is drawn: bad input (not numeric, the wrong shape, NaN/inf data, one label
per row missing) raises :class:`~mixzoo.errors.MixzooInputError` (a ``ValueError``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..data.rows import subsample_rows, take_rows
from ..data.validation import check_columns, check_data
from ..errors import MixzooInputError
from .metrics import binned_calibration_error, contingency, hungarian_match, reliability
from .posterior import as_input, cluster_proba

__all__ = [
    "plot_loss",
    "plot_clusters",
    "plot_confidence",
    "plot_confusion",
    "plot_reliability",
    "write_fit_plots",
    "plot_decision_regions",
    "plot_component_densities",
    "plot_component_samples",
    "write_model_plots",
]

PathLike = str | os.PathLike[str]

PLOT_POINTS = 100_000
"""Points a scatter plot draws at most (a seeded subsample of larger data): more are one blot, and the principal
components of millions of rows in float64 cost gigabytes."""
_ROWS = 1 << 20
"""Points a histogram over all of them takes at a time."""


def _save(fig: Figure, path: PathLike) -> Path:
    FigureCanvasAgg(fig)
    p = Path(path)
    fig.savefig(p, dpi=100, bbox_inches="tight")
    return p


def _host(a: Any) -> Any:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a


def _losses(values: Any, name: str) -> np.ndarray:
    """Losses per epoch (list, array, tensor or Series) as a 1-D float array; non-finite values stay as gaps."""
    try:
        arr = np.asarray(_host(values), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise MixzooInputError(f"{name} must be numbers, one loss per epoch ({err}).") from None
    if arr.ndim != 1:
        raise MixzooInputError(f"{name} must be 1-D, one loss per epoch; got shape {arr.shape}.")
    return arr


def _labels(labels: Any, name: str, n: int | None = None, of: str = "x") -> np.ndarray:
    """Integer labels (array, tensor, Series or list; integral floats accepted) as a 1-D int64 array of
    length ``n`` where ``n`` is given."""
    try:
        arr = np.asarray(_host(labels))
    except (TypeError, ValueError) as err:
        raise MixzooInputError(
            f"{name} cannot be read as an array ({err}); pass one integer label per point."
        ) from None
    if arr.ndim != 1:
        raise MixzooInputError(f"{name} must be 1-D, one integer label per point; got shape {arr.shape}.")
    if arr.size == 0:
        raise MixzooInputError(f"{name} is empty; pass one integer label per point.")
    if n is not None and len(arr) != n:
        raise MixzooInputError(f"{name} has {len(arr)} entries but {of} has {n} rows; pass one label per row.")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return arr.astype(np.int64, copy=False)  # millions of labels are not copied where they are int64
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise MixzooInputError(
        f"{name} must be integers (dtype {arr.dtype}, NaN or fractions are refused); encode class names as "
        "numbers, e.g. with pandas.factorize."
    )


def _proba(proba: Any, n: int | None = None) -> np.ndarray:
    """(N, K) cluster probabilities, checked, as float32 (a copy of millions of rows in float64 costs more than the
    plots need)."""
    proba = _host(proba)
    check_columns(proba, name="proba")
    try:
        shape: tuple[int, ...] | None = np.shape(proba)
    except ValueError:  # ragged lists: check_data names them
        shape = None
    if shape is not None and len(shape) != 2:
        raise MixzooInputError(f"proba must be (N, K) cluster probabilities, got shape {shape}.")
    p = check_data(proba, name="proba").numpy()
    if p.min() < 0 or p.max() > 1 + 1e-5:
        raise MixzooInputError(
            f"proba holds values in [{p.min():.3g}, {p.max():.3g}], outside [0, 1]; pass probabilities "
            "(cluster_proba or predict_proba), not log probabilities."
        )
    if n is not None and len(p) != n:
        raise MixzooInputError(f"proba has {len(p)} rows but x has {n}; pass one row of probabilities per point.")
    return p


def plot_loss(losses: Any, path: PathLike, val_losses: Any | None = None) -> Path:
    """Training loss per point against epoch (and the held-out loss when given).

    :param losses: one loss per epoch (list, array, tensor or pandas Series); NaN/inf leave gaps.
    :param val_losses: held-out losses per epoch, drawn when given and not empty.
    :raises MixzooInputError: on no losses, or losses that are not a 1-D sequence of numbers.
    """
    losses = _losses(losses, "losses")
    if len(losses) == 0:
        raise MixzooInputError("no losses to plot; pass the history of a run that trained at least one epoch.")
    if val_losses is not None:
        val_losses = _losses(val_losses, "val_losses")
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    epochs = np.arange(1, len(losses) + 1)
    ax.plot(epochs, losses, label="train")
    if val_losses is not None and len(val_losses) > 0:
        ax.plot(np.arange(1, len(val_losses) + 1), val_losses, label="held out")
        ax.legend()
    ax.set(xlabel="epoch", ylabel="loss per point", title="training loss")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _two_d(x: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0], np.zeros(len(x))]), ("x1", "")
    if x.shape[1] == 2:
        return x, ("x1", "x2")
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, ("PC 1", "PC 2")


def plot_clusters(x: Any, labels: Any, path: PathLike, *, title: str = "cluster assignments") -> Path:
    """Scatter of the data coloured by cluster: 2-D data directly, otherwise its first two principal components.
    Of more than ``PLOT_POINTS`` (100000) points a seeded subsample of that many is drawn (and the title says so).

    :param x: (N, D) data.
    :param labels: N integer cluster labels.
    :raises MixzooInputError: on bad data, or labels that are not one integer per row of ``x``.
    """
    checked = check_data(x, name="x")  # float32 arrays are not copied
    lab = _labels(labels, "labels", len(checked))
    rows = subsample_rows(len(checked), PLOT_POINTS, 0)
    if rows is not None:
        title = f"{title} ({len(rows)} of {len(checked)} points)"
    arr, lab = take_rows(checked, rows).double().numpy(), take_rows(lab, rows)
    xy, (xl, yl) = _two_d(arr)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab20", s=6, alpha=0.8, linewidths=0)
    fig.colorbar(sc, ax=ax, label="cluster")
    ax.set(xlabel=xl, ylabel=yl, title=title)
    return _save(fig, path)


def plot_confidence(proba: Any, path: PathLike, *, bins: int = 20) -> Path:
    """Histogram of each point's largest cluster probability :math:`\\max_k p(k \\mid x_n)`.

    :param proba: (N, K) cluster probabilities.
    :raises MixzooInputError: if ``proba`` is not an (N, K) array of finite values in [0, 1].
    """
    p = _proba(proba)
    edges = np.linspace(1.0 / p.shape[1], 1.0, bins + 1)
    counts, total = np.zeros(bins), 0.0
    for s in range(0, len(p), _ROWS):  # a block of points at a time: no array of every point's confidence
        top = p[s : s + _ROWS].max(1)
        counts += np.histogram(np.clip(top, edges[0], edges[-1]), bins=edges)[0]
        total += float(top.sum(dtype=np.float64))
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, color="tab:blue", edgecolor="white")
    ax.set(xlabel="max posterior probability", ylabel="points", title="posterior confidence")
    ax.text(0.02, 0.95, f"mean {total / len(p):.3f}", transform=ax.transAxes, va="top")
    return _save(fig, path)


def plot_confusion(labels_true: Any, labels_pred: Any, path: PathLike) -> Path:
    """Counts of true class against predicted cluster, clusters reordered by the Hungarian matching.

    :param labels_true: N integer class labels.
    :param labels_pred: N integer cluster labels.
    :raises MixzooInputError: if either is not 1-D integers, or their lengths differ.
    """
    t = _labels(labels_true, "labels_true")
    p = _labels(labels_pred, "labels_pred", len(t), of="labels_true")
    classes, clusters = np.unique(t), np.unique(p)
    c = contingency(t, p)  # (clusters, classes)
    mapping = hungarian_match(t, p)
    class_pos = {int(v): j for j, v in enumerate(classes)}
    matched = sorted((class_pos[mapping[int(k)]], i) for i, k in enumerate(clusters) if mapping[int(k)] != -1)
    unmatched = [i for i, k in enumerate(clusters) if mapping[int(k)] == -1]
    order = [i for _, i in matched] + unmatched
    m = c[order].T  # rows: classes, columns: clusters in matched order
    fig = Figure(figsize=(1 + 0.45 * len(order), 1 + 0.45 * len(classes)))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, label="points")
    ax.set_xticks(range(len(order)), [str(clusters[i]) for i in order])
    ax.set_yticks(range(len(classes)), [str(v) for v in classes])
    if m.size <= 400:
        for (r, col), v in np.ndenumerate(m):
            ax.text(col, r, str(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
    ax.set(xlabel="cluster (matched order)", ylabel="true class", title="confusion after Hungarian matching")
    return _save(fig, path)


def plot_reliability(
    labels_true: Any, probas: dict[str, Any] | Any, path: PathLike, *, bins: int = 10, title: str = "reliability"
) -> Path:
    """Reliability diagram: per confidence bin, the fraction of points whose matched cluster is their class against
    the mean confidence (the diagonal is perfect calibration), one line per set of probabilities, with the expected
    calibration error in the legend (:func:`~mixzoo.analysis.metrics.reliability`).

    :param labels_true: N integer class labels.
    :param probas: (N, K) cluster probabilities, or ``{name: (N, K) probabilities}`` to compare several.
    :raises MixzooInputError: on bad labels or probabilities.
    """
    named = probas if isinstance(probas, dict) else {"": probas}
    t = _labels(labels_true, "labels_true")
    checked = {name: _proba(p, len(t)) for name, p in named.items()}
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for name, p in checked.items():
        conf, acc, counts = reliability(t, p, bins)
        used = counts > 0
        ece = binned_calibration_error(conf, acc, counts)
        ax.plot(conf[used], acc[used], marker="o", ms=3, label=f"{name} (ECE {ece:.3f})".strip())
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="confidence (largest cluster probability)",
           ylabel="fraction correct after matching", title=title)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def write_fit_plots(
    run_dir: PathLike,
    *,
    x: Any,
    proba: Any,
    losses: Any,
    labels: Any | None = None,
    val_losses: Any | None = None,
) -> list[Path]:
    """Write ``loss.png``, ``clusters.png``, ``confidence.png`` and, with true labels, ``confusion.png`` and
    ``reliability.png``.

    Every input is checked before the first file is written.

    :raises MixzooInputError: on bad data, probabilities, losses or labels (see the single plots).
    """
    d = Path(run_dir)
    x = check_data(x, name="x")
    proba = _proba(proba, len(x))
    losses = _losses(losses, "losses")
    if len(losses) == 0:
        raise MixzooInputError("no losses to plot; pass the history of a run that trained at least one epoch.")
    val_losses = None if val_losses is None else _losses(val_losses, "val_losses")
    labels = None if labels is None else _labels(labels, "labels", len(x))
    rows = subsample_rows(len(x), PLOT_POINTS, 0)  # plot_clusters' own subsample, taken here: no label per point
    title = "cluster assignments" if rows is None else f"cluster assignments ({len(rows)} of {len(x)} points)"
    paths = [
        plot_loss(losses, d / "loss.png", val_losses),
        plot_clusters(take_rows(x, rows), take_rows(proba, rows).argmax(1), d / "clusters.png", title=title),
        plot_confidence(proba, d / "confidence.png"),
    ]
    if labels is not None:
        paths.append(plot_confusion(labels, proba.argmax(1), d / "confusion.png"))
        paths.append(plot_reliability(labels, proba, d / "reliability.png"))
    return paths


def _grid(x: np.ndarray, n: int = 200, pad: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    gx = np.linspace(lo[0] - pad * span[0], hi[0] + pad * span[0], n)
    gy = np.linspace(lo[1] - pad * span[1], hi[1] + pad * span[1], n)
    xx, yy = np.meshgrid(gx, gy)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)


def plot_decision_regions(model: Any, guide: Any, x: Any, path: PathLike, *, n: int = 200) -> Path:
    """2-D data coloured by cluster over the regions where each cluster has the highest posterior.

    :param x: (N, 2) data.
    :raises MixzooInputError: on bad data, or data with other than two features or the model's feature count.
    """
    xt = as_input(x, model, guide)
    if xt.shape[1] != 2:
        raise MixzooInputError(f"decision regions need 2-D data, got {xt.shape[1]} features.")
    xs = xt.cpu().numpy()
    xx, yy, pts = _grid(xs, n)
    regions = cluster_proba(model, guide, torch.as_tensor(pts, device=xt.device)).argmax(1).cpu().numpy()
    regions = regions.reshape(xx.shape)
    pred = cluster_proba(model, guide, xt).argmax(1).cpu().numpy()
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    k = int(max(regions.max(), pred.max())) + 1
    ax.contourf(xx, yy, regions, levels=np.arange(k + 1) - 0.5, cmap="tab10", vmin=0, vmax=9, alpha=0.25)
    ax.scatter(xs[:, 0], xs[:, 1], c=pred, cmap="tab10", vmin=0, vmax=9, s=4)
    ax.set(title="clusters and decision regions", xlabel="x1", ylabel="x2")
    return _save(fig, path)


def plot_component_densities(model: Any, x: Any, path: PathLike, *, n: int = 150, n_samples: int = 200) -> Path:
    """Per-component density contours of a 2-D mixture (``model.component_log_prob``) with samples of each.

    :param x: (N, 2) data, which set the plotted range.
    :raises MixzooInputError: on bad data, or data with other than two features or the model's feature count.
    :raises TypeError: if the model has no ``component_log_prob``.
    """
    if not callable(getattr(model, "component_log_prob", None)):
        raise TypeError(
            f"{type(model).__name__} has no component_log_prob(x); component densities are drawn for mixtures "
            "that state them (e.g. the Gaussian, Student-t and flow mixtures)."
        )
    xt = as_input(x, model)
    if xt.shape[1] != 2:
        raise MixzooInputError(f"component densities are drawn for 2-D data, got {xt.shape[1]} features.")
    xx, yy, pts = _grid(xt.cpu().numpy(), n)
    with torch.no_grad():
        dens = model.component_log_prob(torch.as_tensor(pts, device=xt.device)).exp().cpu().numpy()
    k = dens.shape[1]
    cols = min(k, 5)
    rows = -(-k // cols)
    fig = Figure(figsize=(3 * cols, 3 * rows))
    g = torch.Generator().manual_seed(0)
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.contourf(xx, yy, dens[:, j].reshape(xx.shape), levels=12, cmap="viridis")
        if _samples_components(model):
            with torch.no_grad():
                s = model.sample(n_samples, generator=g, clusters=torch.full((n_samples,), j))[0].cpu()
            ax.scatter(s[:, 0], s[:, 1], s=2, c="white", alpha=0.6)
        ax.set(title=f"component {j}", xticks=[], yticks=[], xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()))
    return _save(fig, path)


def _samples_components(model: Any) -> bool:
    """Whether the model draws the points of given clusters (:class:`~mixzoo.contract.SamplesData` with ``clusters``)."""
    sample = getattr(model, "sample", None)
    return callable(sample) and "clusters" in inspect.signature(sample).parameters


def plot_component_samples(model: Any, image_shape: Sequence[int], path: PathLike, *, per_component: int = 8) -> Path:
    """A grid of images: one row of samples per component, of a model that draws the points of given clusters, on
    one grey scale from the 1st to the 99th percentile of all the samples' pixels (whatever the data's units)."""
    k = model.n_clusters
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rows = [model.sample(per_component, generator=g, clusters=torch.full((per_component,), j))[0].cpu() for j in range(k)]
    low, high = np.percentile(torch.cat(rows).numpy(), [1, 99])
    h, w = int(image_shape[0]), int(np.prod(image_shape[1:]))
    mosaic = np.full((k * (h + 1) - 1, per_component * (w + 1) - 1), np.nan)  # one pixel of gap between images
    for j, s in enumerate(rows):
        for i in range(per_component):
            mosaic[j * (h + 1) : j * (h + 1) + h, i * (w + 1) : i * (w + 1) + w] = s[i].reshape(h, w).numpy()
    fig = Figure(figsize=(per_component, k))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic, cmap="gray", vmin=low, vmax=max(high, low + 1e-12), interpolation="nearest")
    ax.set_facecolor("white")
    ax.axis("off")
    return _save(fig, path)


def write_model_plots(
    run_dir: PathLike, model: Any, guide: Any, x: Any, image_shape: Sequence[int] | None = None
) -> list[Path]:
    """Model-level plots: decision regions and component densities for 2-D data (of at most ``PLOT_POINTS``
    points, a seeded subsample of more), sample grids for images."""
    d = Path(run_dir)
    xs = as_input(x, model, guide)
    xs = take_rows(xs, subsample_rows(len(xs), PLOT_POINTS, 0))
    paths = []
    if xs.shape[1] == 2:
        paths.append(plot_decision_regions(model, guide, xs, d / "regions.png"))
        if hasattr(model, "component_log_prob"):
            paths.append(plot_component_densities(model, xs, d / "densities.png"))
    elif image_shape is not None and _samples_components(model):
        paths.append(plot_component_samples(model, image_shape, d / "samples.png"))
    return paths
