r"""Deep clustering by transfer (Matsuda and Hyvärinen 2019, section 4.3).

A classifier :math:`p(z = l \mid x) = \operatorname{softmax}_l(w_l^\top f(x) + b_l)`
is trained on some classes; its last hidden layer :math:`f` then describes new
data, whose clusters are modelled by the exponential family of eq. (26),
:math:`h(x) \exp(\theta_k^\top f(x) + c_k)`. The classifier's own training data
serve as noise, with density (eq. 28, the biases included)

.. math:: \sum_l \frac{M_l}{M} q_l(x) = h(x) \frac{M_1}{M} e^{-b_1} \sum_l \exp(w_l^\top f(x) + b_l),

so :math:`h` cancels in the NCE objective (eq. 30-32): the noise log density
evaluated here is :math:`\log \frac{M_1}{M} - b_1 + \operatorname{logsumexp}_l(w_l^\top f(x) + b_l)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import MixzooInputError
from .inference.noise import SampleNoise

__all__ = ["FeatureClassifier", "TransferData", "train_classifier", "transfer_split"]


class FeatureClassifier(nn.Module):
    """MLP classifier whose last hidden layer (ReLU, ``feature_dim`` units) gives the features f(x)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 256, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    feature_dim: int = 64,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` with ``feature_dim`` features by cross-entropy and Adam (seeded)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureClassifier(x.shape[1], n_classes, feature_dim=feature_dim).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            idx = idx.to(x.device)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), labels[idx]).backward()
            opt.step()
    return net.eval()


@dataclass
class TransferData:
    """Features of the data to cluster, the noise built from the classifier's training data, and its accuracy."""

    features: np.ndarray
    labels: np.ndarray
    noise: SampleNoise
    classifier_accuracy: float


def transfer_split(
    x: np.ndarray,
    labels: np.ndarray,
    pretrain_classes: list[int],
    *,
    epochs: int = 5,
    seed: int = 0,
    device: str = "cpu",
    feature_dim: int = 64,
    cluster_classes: list[int] | None = None,
) -> TransferData:
    """Train on ``pretrain_classes``, then featurise the held-out classes and build the eq. (28) noise.

    :param cluster_classes: the held-out classes to cluster (default: every class not pretrained on);
        the paper clusters two unseen classes at a time.
    """
    classes = np.unique(labels)
    bad = sorted(set(pretrain_classes) - set(classes.tolist()))
    if bad:
        raise MixzooInputError(f"--pretrain-classes {bad} are not classes of the data ({classes.tolist()}).")
    rest = sorted(set(classes.tolist()) - set(pretrain_classes))
    if len(pretrain_classes) < 2 or len(rest) < 2:
        raise MixzooInputError("--pretrain-classes must leave at least 2 classes on each side of the split.")
    if cluster_classes is not None:
        wrong = sorted(set(cluster_classes) - set(rest))
        if wrong or len(set(cluster_classes)) < 2:
            raise MixzooInputError(
                f"--cluster-classes must name at least 2 of the held-out classes {rest}"
                + (f"; {wrong} are not among them." if wrong else ".")
            )
    pre = np.isin(labels, pretrain_classes)
    held = np.isin(labels, rest if cluster_classes is None else cluster_classes)
    remap = {c: i for i, c in enumerate(sorted(pretrain_classes))}
    xp = torch.as_tensor(x[pre], device=device)
    yp = torch.as_tensor(np.vectorize(remap.get)(labels[pre]), device=device)
    net = train_classifier(xp, yp, len(pretrain_classes), epochs=epochs, seed=seed, feature_dim=feature_dim)
    with torch.no_grad():
        acc = float((net(xp).argmax(1) == yp).float().mean())
        feats_noise = net.features(xp)
        feats_data = net.features(torch.as_tensor(x[held], device=device))
    w, b = net.head.weight.detach(), net.head.bias.detach()
    m_l = torch.bincount(yp, minlength=len(pretrain_classes)).to(feats_noise.dtype)
    const = math.log(float(m_l[0] / m_l.sum())) - float(b[0])

    def log_noise(f: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(f @ w.T + b, -1) + const

    return TransferData(feats_data.cpu().numpy(), labels[held], SampleNoise(feats_noise, log_noise), acc)
