"""Diagnostic plots of a fit, drawn with matplotlib's Agg backend and saved to files.

Each function draws one figure on its own :class:`~matplotlib.figure.Figure` (no
pyplot state), writes it to ``path`` and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import contingency, hungarian_match

__all__ = [
    "plot_loss",
    "plot_clusters",
    "plot_confidence",
    "plot_confusion",
    "write_fit_plots",
    "plot_decision_regions",
    "plot_component_densities",
    "plot_component_samples",
    "write_model_plots",
]

PathLike = str | os.PathLike[str]


def _save(fig: Figure, path: PathLike) -> Path:
    FigureCanvasAgg(fig)
    p = Path(path)
    fig.savefig(p, dpi=100, bbox_inches="tight")
    return p


def plot_loss(losses: Sequence[float], path: PathLike, val_losses: Sequence[float] | None = None) -> Path:
    """Training loss per point against epoch (and the held-out loss when given)."""
    if len(losses) == 0:
        raise ValueError("no losses to plot; pass the history of a run that trained at least one epoch.")
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
    """Scatter of the data coloured by cluster: 2-D data directly, otherwise its first two principal components."""
    arr = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels)
    if arr.ndim != 2 or len(arr) != len(lab):
        raise ValueError(f"x must be (N, D) with one label per row; got x {arr.shape} and labels {lab.shape}.")
    xy, (xl, yl) = _two_d(arr)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab20", s=6, alpha=0.8, linewidths=0)
    fig.colorbar(sc, ax=ax, label="cluster")
    ax.set(xlabel=xl, ylabel=yl, title=title)
    return _save(fig, path)


def plot_confidence(proba: Any, path: PathLike, *, bins: int = 20) -> Path:
    """Histogram of each point's largest cluster probability :math:`\\max_k p(k \\mid x_n)`."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"proba must be (N, K), got shape {p.shape}.")
    top = p.max(1)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.hist(top, bins=np.linspace(1.0 / p.shape[1], 1.0, bins + 1), color="tab:blue", edgecolor="white")
    ax.set(xlabel="max posterior probability", ylabel="points", title="posterior confidence")
    ax.text(0.02, 0.95, f"mean {top.mean():.3f}", transform=ax.transAxes, va="top")
    return _save(fig, path)


def plot_confusion(labels_true: Any, labels_pred: Any, path: PathLike) -> Path:
    """Counts of true class against predicted cluster, clusters reordered by the Hungarian matching."""
    t = np.asarray(labels_true)
    p = np.asarray(labels_pred)
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


def write_fit_plots(
    run_dir: PathLike,
    *,
    x: Any,
    proba: Any,
    losses: Sequence[float],
    labels: Any | None = None,
    val_losses: Sequence[float] | None = None,
) -> list[Path]:
    """Write ``loss.png``, ``clusters.png``, ``confidence.png`` and, with true labels, ``confusion.png``."""
    d = Path(run_dir)
    pred = np.asarray(proba).argmax(1)
    paths = [
        plot_loss(losses, d / "loss.png", val_losses),
        plot_clusters(x, pred, d / "clusters.png"),
        plot_confidence(proba, d / "confidence.png"),
    ]
    if labels is not None:
        paths.append(plot_confusion(labels, pred, d / "confusion.png"))
    return paths


def _grid(x: np.ndarray, n: int = 200, pad: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    gx = np.linspace(lo[0] - pad * span[0], hi[0] + pad * span[0], n)
    gy = np.linspace(lo[1] - pad * span[1], hi[1] + pad * span[1], n)
    xx, yy = np.meshgrid(gx, gy)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)


def plot_decision_regions(model: Any, guide: Any, x: Any, path: PathLike, *, n: int = 200) -> Path:
    """2-D data coloured by cluster over the regions where each cluster has the highest posterior."""
    import torch

    from .posterior import cluster_proba

    xs = np.asarray(x, dtype=np.float32)
    if xs.shape[1] != 2:
        raise ValueError(f"decision regions need 2-D data, got {xs.shape[1]} features")
    xx, yy, pts = _grid(xs, n)
    dev = next(iter(model.buffers()), torch.empty(0)).device
    regions = cluster_proba(model, guide, torch.as_tensor(pts, device=dev)).argmax(1).cpu().numpy().reshape(xx.shape)
    pred = cluster_proba(model, guide, torch.as_tensor(xs, device=dev)).argmax(1).cpu().numpy()
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    k = int(max(regions.max(), pred.max())) + 1
    ax.contourf(xx, yy, regions, levels=np.arange(k + 1) - 0.5, cmap="tab10", vmin=0, vmax=9, alpha=0.25)
    ax.scatter(xs[:, 0], xs[:, 1], c=pred, cmap="tab10", vmin=0, vmax=9, s=4)
    ax.set(title="clusters and decision regions", xlabel="x1", ylabel="x2")
    return _save(fig, path)


def plot_component_densities(model: Any, x: Any, path: PathLike, *, n: int = 150, n_samples: int = 200) -> Path:
    """Per-component density contours of a 2-D mixture (``model.component_log_prob``) with samples of each."""
    import torch

    xs = np.asarray(x, dtype=np.float32)
    xx, yy, pts = _grid(xs, n)
    dev = next(iter(model.buffers()), torch.empty(0)).device
    with torch.no_grad():
        dens = model.component_log_prob(torch.as_tensor(pts, device=dev)).exp().cpu().numpy()
    k = dens.shape[1]
    cols = min(k, 5)
    rows = -(-k // cols)
    fig = Figure(figsize=(3 * cols, 3 * rows))
    g = torch.Generator().manual_seed(0)
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.contourf(xx, yy, dens[:, j].reshape(xx.shape), levels=12, cmap="viridis")
        if hasattr(model, "flows"):
            s = model.flows.sample(n_samples, j, g).cpu() * model.scale.cpu() + model.shift.cpu()
            ax.scatter(s[:, 0], s[:, 1], s=2, c="white", alpha=0.6)
        ax.set(title=f"component {j}", xticks=[], yticks=[], xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()))
    return _save(fig, path)


def plot_component_samples(model: Any, image_shape: Sequence[int], path: PathLike, *, per_component: int = 8) -> Path:
    """A grid of images: one row of samples per component (flow mixtures: models with ``flows``)."""
    import torch

    k = model.n_clusters
    g = torch.Generator().manual_seed(0)
    fig = Figure(figsize=(per_component, k))
    for j in range(k):
        with torch.no_grad():
            s = model.flows.sample(per_component, j, g).cpu() * model.scale.cpu() + model.shift.cpu()
        for i in range(per_component):
            ax = fig.add_subplot(k, per_component, j * per_component + i + 1)
            ax.imshow(s[i].reshape(tuple(image_shape)).clamp(0, 1).numpy(), cmap="gray")
            ax.axis("off")
    return _save(fig, path)


def write_model_plots(
    run_dir: PathLike, model: Any, guide: Any, x: Any, image_shape: Sequence[int] | None = None
) -> list[Path]:
    """Model-level plots: decision regions and component densities for 2-D data, sample grids for images."""
    d = Path(run_dir)
    xs = np.asarray(x)
    paths = []
    if xs.shape[1] == 2:
        paths.append(plot_decision_regions(model, guide, xs, d / "regions.png"))
        if hasattr(model, "component_log_prob"):
            paths.append(plot_component_densities(model, xs, d / "densities.png"))
    elif image_shape is not None and hasattr(model, "flows"):
        paths.append(plot_component_samples(model, image_shape, d / "samples.png"))
    return paths
