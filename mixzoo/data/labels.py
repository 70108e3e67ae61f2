"""Partially observed cluster labels: ``-1`` marks an unlabelled point.

A labelled point is handled by giving its categorical (in the model's prior and
in an amortized guide alike) near one-hot logits, so that enumeration of ``"y"``
reduces to the labelled component without a second sample site.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MixzooInputError

__all__ = ["label_logits", "LABEL_LOGIT", "reveal_labels", "oversample_labelled"]

LABEL_LOGIT = 30.0
"""Logit margin that turns a label into a (numerically) certain categorical."""


def label_logits(logits: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Replace the rows of labelled points (``y >= 0``) of (B, K) ``logits`` by near one-hot logits."""
    if y is None:
        return logits
    onehot = F.one_hot(y.clamp(min=0), logits.shape[-1]).to(logits.dtype)
    certain = (onehot - 1) * LABEL_LOGIT
    return torch.where((y >= 0)[:, None], certain, logits)


def reveal_labels(labels: np.ndarray | None, n_labels: int, seed: int) -> np.ndarray:
    """Labels with all but ``n_labels`` points (balanced over classes, seeded) set to -1."""
    if labels is None:
        raise MixzooInputError("--labels needs a data set with known labels.")
    classes = np.unique(labels)
    if n_labels < len(classes) or n_labels > len(labels):
        raise MixzooInputError(
            f"--labels must lie between {len(classes)} (one per class) and {len(labels)}, got {n_labels}."
        )
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), -1, dtype=np.int64)
    per_class = np.array_split(np.arange(n_labels), len(classes))
    for cls, share in zip(classes, per_class, strict=True):
        idx = rng.choice(np.flatnonzero(labels == cls), size=len(share), replace=False)
        out[idx] = labels[idx]
    return out


def oversample_labelled(x: torch.Tensor, y: np.ndarray, share: float = 1 / 3) -> tuple[torch.Tensor, np.ndarray]:
    """Repeat the labelled points so that they make up about ``share`` of the training stream.

    With a few dozen labels among thousands of points the labelled terms are a
    vanishing part of each epoch; repeating them plays the role of Pires's (2020)
    supervised epochs interleaved with unsupervised ones.
    """
    labelled = np.flatnonzero(y >= 0)
    n_l, n_u = len(labelled), len(y) - len(labelled)
    if n_l == 0 or n_u == 0:
        return x, y
    repeats = max(0, math.ceil(share / (1 - share) * n_u / n_l) - 1)
    if repeats == 0:
        return x, y
    idx = torch.as_tensor(np.tile(labelled, repeats))
    return torch.cat([x, x[idx]]), np.concatenate([y, y[idx.numpy()]])
