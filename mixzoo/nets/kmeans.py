"""k-means++ seeding and Lloyd iterations in torch, used to initialise mixtures.

Arthur and Vassilvitskii (2007): each new centre is drawn with probability
proportional to the squared distance to the nearest centre chosen so far.
"""

from __future__ import annotations

import math

import torch

__all__ = ["kmeans_plusplus", "kmeans", "nearest", "start_count"]


def kmeans_plusplus(
    x: torch.Tensor, k: int, generator: torch.Generator, n_local_trials: int | None = None
) -> torch.Tensor:
    """Choose ``k`` initial centres (k, D) from the rows of ``x`` by greedy D^2 sampling.

    Each step draws ``n_local_trials`` candidates (default ``2 + log k``, as
    scikit-learn does) and keeps the one that lowers the total squared distance most.
    """
    n = x.shape[0]
    trials = n_local_trials or 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: pick uniformly
            cand = torch.randint(n, (trials,), generator=generator)
        else:
            cand = torch.multinomial((d2 / total).cpu(), trials, replacement=True, generator=generator)
        cand_d2 = torch.minimum(d2[None], torch.cdist(x[cand], x) ** 2)
        best = int(cand_d2.sum(-1).argmin())
        centres.append(x[cand[best]])
        d2 = cand_d2[best]
    return torch.stack(centres)


def nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centre: :math:`\\arg\\min_k \\|c_k\\|^2 - 2 x^\\top c_k`, one matrix product."""
    return torch.addmm(centres.square().sum(-1), x, centres.T, alpha=-2).argmin(-1)


def kmeans(
    x: torch.Tensor, k: int, generator: torch.Generator, n_iter: int = 20, n_init: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding followed by up to ``n_iter`` Lloyd iterations, ``n_init`` times from the same generator;
    returns (centres, labels) of the run with the lowest within-cluster sum of squares."""
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(max(1, n_init)):
        centres, labels = _lloyd(x, kmeans_plusplus(x, k, generator), k, n_iter)
        inertia = float((x - centres[labels]).square().sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres, labels)
    assert best is not None
    return best[1], best[2]


def start_count(n: int, d: int, k: int, budget: float = 2e8) -> int:
    """How many k-means++ starts a mixture's start runs: 10 where they are cheap (up to ``budget`` point x feature x
    cluster products for all of them), fewer on large data, at least 1. One start falls into a poor optimum on small
    tables from some seeds (iris standardised: ACC 0.65 instead of 0.97), the best of ten gives the same partition
    from every seed (section ``choosing-k`` of docs/benchmarks.md)."""
    return max(1, min(10, int(budget // max(1, n * d * k))))


def _lloyd(x: torch.Tensor, centres: torch.Tensor, k: int, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = nearest(x, centres)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        new = nearest(x, centres)
        if torch.equal(new, labels):
            break
        labels = new
    return centres, labels
