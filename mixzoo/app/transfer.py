r"""Deep clustering by transfer (Matsuda and Hyvärinen 2019, section 4.3).

A classifier :math:`p(z = l \mid x) = \operatorname{softmax}_l(w_l^\top f(x) + b_l)`
is trained on some classes; its last hidden layer :math:`f` then describes new
data, whose clusters are modelled by the exponential family of eq. (26),
:math:`h(x) \exp(\theta_k^\top f(x) + c_k)`. The classifier's own training data
serve as noise, with density (eq. 28, the biases included)

.. math:: \sum_l \frac{M_l}{M} q_l(x) = h(x) \frac{M_1}{M} e^{-b_1} \sum_l \exp(w_l^\top f(x) + b_l),

so :math:`h` cancels in the NCE objective (eq. 30-32): the noise log density
evaluated here is :math:`\log \frac{M_1}{M} - b_1 + \operatorname{logsumexp}_l(w_l^\top f(x) + b_l)`.

Two classifiers share that form, a body giving :math:`f(x)` (ReLU features) and a linear head
giving the logits :math:`w_l^\top f(x) + b_l`:

- ``"mlp"`` (:class:`FeatureClassifier`): D-256-F on flat rows, any data;
- ``"cnn"`` (:class:`ConvFeatureClassifier`): conv blocks C32-C64, each with 2x2 max-pooling,
  then a dense layer to F features, for data with an image shape (the paper's features come
  from a convolutional network, Inception).

:func:`default_classifier` says which one a data set gets when none is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import MixzooInputError
from ..inference.noise import SampleNoise
from ..nets.conv import conv_pool_blocks

__all__ = [
    "CLASSIFIERS",
    "ConvFeatureClassifier",
    "FeatureClassifier",
    "TransferClassifier",
    "TransferData",
    "build_classifier",
    "default_classifier",
    "noise_log_density",
    "resolve_classifier",
    "train_classifier",
    "transfer_split",
]

Classifier = Literal["mlp", "cnn"]
CLASSIFIERS: tuple[str, ...] = ("mlp", "cnn")
"""The transfer classifiers: an MLP on flat rows, a CNN on images."""

CNN_CHANNELS: tuple[int, ...] = (32, 64)
"""Channels of the CNN classifier's conv blocks; each block halves the image sides."""

FEATURE_BATCH = 2048
"""Images per forward pass when the trained classifier featurises data (bounds a CNN's activation memory)."""


class TransferClassifier(nn.Module):
    r"""A body giving the features f(x) and a linear head giving the logits :math:`w_l^\top f(x) + b_l` of eq. (28).

    :param body: rows -> (N, ``feature_dim``) features.
    :param feature_dim: features F.
    :param n_classes: classes L of the head.
    """

    def __init__(self, body: nn.Module, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x), (N, F)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits, (N, L)."""
        return self.head(self.features(x))


class FeatureClassifier(TransferClassifier):
    """MLP classifier whose last hidden layer (ReLU, ``feature_dim`` units) gives the features f(x)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 256, feature_dim: int = 64) -> None:
        body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU())
        super().__init__(body, feature_dim, n_classes)


class ConvFeatureClassifier(TransferClassifier):
    """CNN classifier on flat image rows: conv blocks (3x3, ReLU, 2x2 max-pooling), then a dense layer to
    ``feature_dim`` ReLU features f(x), then the linear head of eq. (28).

    :param image_shape: (C, H, W) or (H, W) of the rows.
    :param n_classes: classes L of the head.
    :param channels: channels of the conv blocks.
    :param feature_dim: features F.
    """

    def __init__(
        self, image_shape: Sequence[int], n_classes: int, channels: Sequence[int] = CNN_CHANNELS, feature_dim: int = 64
    ) -> None:
        shape = tuple(int(s) for s in image_shape)
        shape = (1, *shape) if len(shape) == 2 else shape
        convs, flat = conv_pool_blocks(shape, channels)
        super().__init__(nn.Sequential(convs, nn.Linear(flat, feature_dim), nn.ReLU()), feature_dim, n_classes)
        self.image_shape = shape

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x), (N, F), of rows of ``C*H*W`` pixels."""
        return self.body(x.reshape(-1, *self.image_shape))


def _cnn_fits(image_shape: Sequence[int] | None) -> bool:
    """Whether images of this shape survive the CNN's poolings (sides of at least ``2 ** len(CNN_CHANNELS)``)."""
    return bool(image_shape) and min(int(s) for s in image_shape[-2:]) >= 2 ** len(CNN_CHANNELS)  # type: ignore[index]


def default_classifier(image_shape: Sequence[int] | None) -> Classifier:
    """The classifier a data set gets when none is asked for: the CNN for images, the MLP otherwise.

    On MNIST 0-4 -> every pair of 5-9 the energy mixture clusters the CNN's features better than the MLP's, as k-means
    does (sections ``nce-transfer-pairs-cnn`` and ``nce-transfer-pairs`` of docs/benchmarks.md).
    """
    return "cnn" if _cnn_fits(image_shape) else "mlp"


def resolve_classifier(kind: str | None, image_shape: Sequence[int] | None) -> Classifier:
    """``kind`` checked against the data (``None``: :func:`default_classifier`); ``"cnn"`` needs an image shape."""
    if kind is None:
        return default_classifier(image_shape)
    if kind not in CLASSIFIERS:
        raise MixzooInputError(f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {kind!r}.")
    if kind == "cnn" and not image_shape:
        raise MixzooInputError(
            "--classifier cnn needs images, and these data have no image shape (a table, a toy set, or images "
            "reduced by --pca); use --classifier mlp."
        )
    if kind == "cnn" and not _cnn_fits(image_shape):
        side = 2 ** len(CNN_CHANNELS)
        raise MixzooInputError(
            f"--classifier cnn halves the image sides {len(CNN_CHANNELS)} times: it needs images of at least {side}x{side} pixels."
        )
    return kind  # type: ignore[return-value]


def build_classifier(
    kind: Classifier, dim: int, n_classes: int, *, image_shape: Sequence[int] | None = None, feature_dim: int = 64
) -> TransferClassifier:
    """A transfer classifier of ``kind`` for rows of ``dim`` features (``image_shape`` for the CNN)."""
    if kind == "cnn":
        if not image_shape or math.prod(int(s) for s in image_shape) != dim:
            raise MixzooInputError(
                f"the CNN classifier needs the image shape of the {dim} features, got {image_shape!r}."
            )
        return ConvFeatureClassifier(image_shape, n_classes, feature_dim=feature_dim)
    return FeatureClassifier(dim, n_classes, feature_dim=feature_dim)


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
    kind: Classifier = "mlp",
    image_shape: Sequence[int] | None = None,
) -> TransferClassifier:
    """Train a classifier of ``kind`` with ``feature_dim`` features by cross-entropy and Adam (seeded)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_classifier(kind, x.shape[1], n_classes, image_shape=image_shape, feature_dim=feature_dim).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            idx = idx.to(x.device)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), labels[idx]).backward()
            opt.step()
    return net.eval()


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = FEATURE_BATCH) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks of ``size`` rows, without gradients, concatenated."""
    with torch.no_grad():
        return torch.cat([fn(chunk) for chunk in x.split(size)])


@dataclass
class TransferData:
    """Features of the data to cluster, the noise built from the classifier's training data, its accuracy, and
    which classifier (``"mlp"`` or ``"cnn"``) made them."""

    features: np.ndarray
    labels: np.ndarray
    noise: SampleNoise
    classifier_accuracy: float
    classifier: str = "mlp"


def _check_split(classes: np.ndarray, pretrain_classes: list[int], cluster_classes: list[int] | None) -> list[int]:
    """The held-out classes, after checking that the split leaves 2 classes on each side."""
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
    return rest


def noise_log_density(net: TransferClassifier, counts: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The noise log density of eq. (28) as a function of the features f:
    :math:`\log \frac{M_1}{M} - b_1 + \operatorname{logsumexp}_l(w_l^\top f + b_l)`, with :math:`M_l` = ``counts``."""
    w, b = net.head.weight.detach(), net.head.bias.detach()
    const = math.log(float(counts[0] / counts.sum())) - float(b[0])

    def log_noise(f: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(f @ w.T + b, -1) + const

    return log_noise


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
    classifier: str | None = None,
    image_shape: Sequence[int] | None = None,
) -> TransferData:
    """Train on ``pretrain_classes``, then featurise the held-out classes and build the eq. (28) noise.

    :param cluster_classes: the held-out classes to cluster (default: every class not pretrained on);
        the paper clusters two unseen classes at a time.
    :param classifier: ``"mlp"`` or ``"cnn"``; ``None``: :func:`default_classifier` for ``image_shape``.
    :param image_shape: (H, W) or (C, H, W) of the rows of ``x`` when they are images.
    """
    kind = resolve_classifier(classifier, image_shape)
    rest = _check_split(np.unique(labels), pretrain_classes, cluster_classes)
    pre = np.isin(labels, pretrain_classes)
    held = np.isin(labels, rest if cluster_classes is None else cluster_classes)
    remap = {c: i for i, c in enumerate(sorted(pretrain_classes))}
    xp = torch.as_tensor(x[pre], device=device)
    yp = torch.as_tensor(np.vectorize(remap.get)(labels[pre]), device=device)
    net = train_classifier(
        xp,
        yp,
        len(pretrain_classes),
        epochs=epochs,
        seed=seed,
        feature_dim=feature_dim,
        kind=kind,
        image_shape=image_shape,
    )
    feats_noise = _batched(net.features, xp)
    acc = float((net.head(feats_noise).argmax(1) == yp).float().mean())
    feats_data = _batched(net.features, torch.as_tensor(x[held], device=device))
    counts = torch.bincount(yp, minlength=len(pretrain_classes)).to(feats_noise.dtype)
    noise = SampleNoise(feats_noise, noise_log_density(net, counts))
    return TransferData(feats_data.cpu().numpy(), labels[held], noise, acc, kind)
