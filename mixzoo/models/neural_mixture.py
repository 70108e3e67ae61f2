r"""Neural mixture model trained by batch-wise EM (Tissera et al. 2022).

A network :math:`g_\theta` (an MLP for vectors, a small CNN for images) outputs K
relevance scores :math:`a_n = g_\theta(x_n)`. Normalized over the batch without
affine parameters (section 5),

.. math::
    a^*_{nk} = \frac{a_{nk} - \mu_k}{\sigma_k}, \qquad
    f(x_n \mid y_n = k, \theta) = h_k(x_n) = \operatorname{sigmoid}(a^*_{nk} / \gamma),

the cluster likelihoods share a common integral (eqs. 3-5: the batch mean of
:math:`h_k` is about 0.5), which is what keeps clusters from collapsing. The
prior is :math:`p(y = k) = 1/K` by default. The Pyro model scores
:math:`\log \operatorname{sigmoid}(a^*_{nk}/\gamma)` for each enumerated
:math:`y = k`; with augmented inputs :math:`x^{tr}` it adds
:math:`\log \operatorname{sigmoid}(a^{tr*}_{nk}/\gamma)` (eq. 7).

The E-step guide (:class:`~mixzoo.guides.estep.EStepGuide`) enumerates ``"y"``
with :math:`\operatorname{softmax}_k(a^*_{nk} + \log p(y=k))`, detached (section
6); with :class:`~mixzoo.inference.em.EM` the loss is eq. (6)/(7).

Statistics: in training (module in train mode and autograd recording) the
batch's :math:`\mu, \sigma` are used and a running mean/variance is kept; under
``torch.no_grad()`` (prediction, :func:`~mixzoo.analysis.posterior.cluster_proba`) or in
eval mode the running statistics are used, so predictions do not depend on the
batch size (section 8.1). ``normalize=False`` uses :math:`a` itself, the
setting in which the paper shows collapse to one cluster (Fig. 5a, Table 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch import nn

from ..data.labels import label_logits
from ..data.validation import check_data, check_n_clusters
from ..errors import MixzooInputError
from ..nets.augment import Augment, as_images, sobel
from ..nets.mlp import mlp
from ..options import Options, option
from .family import DataShape, Family, Inference, Plan, Training, register

__all__ = ["NeuralMixture", "RelevanceNorm", "image_shape_for"]


def image_shape_for(dim: int, image: str | Sequence[int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) from ``"HxW"``/``"CxHxW"`` or a sequence, or a square grey image of ``dim`` pixels."""
    if image is None or image == "":
        side = math.isqrt(dim)
        if side * side != dim:
            raise MixzooInputError(
                f"a CNN needs images; {dim} features are not a square image. Pass the shape, e.g. image='28x28'."
            )
        return (1, side, side)
    shape = tuple(int(s) for s in image.split("x")) if isinstance(image, str) else tuple(int(s) for s in image)
    shape = (1, *shape) if len(shape) == 2 else shape
    if len(shape) != 3 or math.prod(shape) != dim:
        raise MixzooInputError(f"image shape {image!r} does not hold {dim} features; give HxW or CxHxW.")
    return shape  # type: ignore[return-value]


class RelevanceNorm(nn.Module):
    """Normalization of relevance scores over the batch, without affine parameters.

    :param n_clusters: K.
    :param momentum: weight of the newest batch in the running mean and variance.
    :param eps: added to the variance.
    """

    def __init__(self, n_clusters: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(n_clusters))
        self.register_buffer("running_var", torch.ones(n_clusters))

    def forward(self, a: torch.Tensor, batch_stats: bool, update: bool = False) -> torch.Tensor:
        """:math:`a^*`: with the batch's statistics (updating the running ones if asked) or the running ones."""
        if not batch_stats:
            return (a - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        if a.shape[0] < 2:
            raise MixzooInputError("batch normalization of relevance scores needs batches of at least 2 points.")
        mean, var = a.mean(0), a.var(0, unbiased=False)
        if update:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(a.detach().var(0, unbiased=True), self.momentum)
        return (a - mean) / torch.sqrt(var + self.eps)


def _cnn(shape: tuple[int, int, int], channels: Sequence[int], hidden: Sequence[int], k: int) -> nn.Sequential:
    """The paper's Table 2 pattern: conv-ReLU blocks with max-pooling after all but the last, then FC layers."""
    layers: list[nn.Module] = []
    c, h, w = shape
    for i, out in enumerate(channels):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
        c = out
        if i < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    return nn.Sequential(*layers, *mlp([c * h * w, *hidden, k]))


class NeuralMixture(PyroModule):
    """Neural mixture, a Pyro model ``model(x, y=None, subsample=None, x_aug=None)``.

    :param dim: number of features D (images as flat rows of ``image_shape``).
    :param n_clusters: K.
    :param arch: ``"mlp"`` or ``"cnn"``.
    :param hidden: hidden sizes of the MLP, or of the CNN's fully connected part.
    :param channels: CNN channels per conv block (the paper's MNIST net: 64, 128, 256 with ``hidden=(32,)``).
    :param image_shape: (H, W) or (C, H, W) for ``"cnn"``/augmentation; default a square grey image.
    :param gamma: :math:`\\gamma`, the divisor of :math:`a^*` in the sigmoid (5 for batches of 128).
    :param normalize: normalize the scores over the batch (``False`` demonstrates the collapse).
    :param sobel: feed the CNN vertical and horizontal Sobel edges of the grey image (section 8.2).
    :param augment: add eq. (7)'s term for a randomly transformed copy of each batch (images).
    :param shear: largest horizontal shear of the transformed copy (:class:`~mixzoo.nets.augment.Augment`): a change of
        slant, which is not what tells handwritten digits apart.
    :param prior: cluster prior (K,), uniform by default.
    :param momentum: momentum of the running statistics.
    """

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        *,
        arch: str = "mlp",
        hidden: Sequence[int] = (32, 32),
        channels: Sequence[int] = (64, 128, 256),
        image_shape: str | Sequence[int] | None = None,
        gamma: float = 5.0,
        normalize: bool = True,
        sobel: bool = False,
        augment: bool = False,
        shear: float = 0.0,
        prior: Sequence[float] | torch.Tensor | None = None,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.dim, self.n_clusters = int(dim), check_n_clusters(n_clusters)
        if arch not in ("mlp", "cnn"):
            raise MixzooInputError(f"unknown arch {arch!r}; choose 'mlp' or 'cnn'.")
        if not gamma > 0:
            raise MixzooInputError(f"gamma must be positive (the paper uses 5 for batches of 128), got {gamma!r}.")
        self.arch, self.gamma, self.normalize, self.use_sobel = arch, float(gamma), bool(normalize), bool(sobel)
        needs_image = arch == "cnn" or sobel or augment
        self.image_shape = image_shape_for(self.dim, image_shape) if needs_image else None
        if sobel and arch != "cnn":
            raise MixzooInputError("sobel preprocessing feeds a CNN; use arch='cnn'.")
        if arch == "cnn":
            assert self.image_shape is not None
            shape = (2, *self.image_shape[1:]) if sobel else self.image_shape
            self.net = _cnn(shape, channels, hidden, n_clusters)
        else:
            self.net = mlp([self.dim, *hidden, n_clusters])
        self.augment = Augment(self.image_shape, shear=shear) if augment else None
        self.norm = RelevanceNorm(n_clusters, momentum)
        self.register_buffer("log_prior", self._log_prior(prior))
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))

    def _log_prior(self, prior: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
        if prior is None:
            return torch.full((self.n_clusters,), -math.log(self.n_clusters))
        p = torch.as_tensor(prior, dtype=torch.float32)
        if p.shape != (self.n_clusters,) or not bool((p > 0).all()) or abs(float(p.sum()) - 1) > 1e-4:
            raise MixzooInputError(f"prior must be {self.n_clusters} positive weights summing to 1, got {prior!r}.")
        return p.log()

    def relevance(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K) raw relevance scores :math:`a = g_\\theta(x)` of flat rows or images."""
        if self.arch == "mlp":
            return self.net((x.reshape(x.shape[0], -1) - self.shift) / self.scale)
        img = as_images(x, self.image_shape)  # type: ignore[arg-type]
        return self.net(sobel(img) if self.use_sobel else img)

    def scores(self, x: torch.Tensor, batch_stats: bool | None = None, update: bool = False) -> torch.Tensor:
        """(B, K) normalized relevance scores :math:`a^*` (or :math:`a` when ``normalize=False``).

        :param batch_stats: use the batch's statistics; ``None`` does so while training with autograd on.
        :param update: fold the batch's statistics into the running ones.
        """
        a = self.relevance(x)
        if not self.normalize:
            return a
        if batch_stats is None:
            batch_stats = self.training and torch.is_grad_enabled()
        return self.norm(a, batch_stats, update)

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        r"""What the ArviZ summary (:func:`mixzoo.analysis.summary.summarize`) shows: the ``weights`` (K,), the prior
        :math:`p(y = k)`, which is fixed (uniform unless given): the model learns no mixing weights, so they are
        the same in every draw.

        Nothing else of the model has a meaning of its own: the network weights :math:`\theta` of
        :math:`g_\theta` are not summarized, nor are the running statistics (estimates of the scores' mean and
        variance, not parameters). The fitted share of each cluster is the mean of the ``cluster_posterior``
        group's responsibilities over the points. It is not drawn, because the Laplace draws of this family do
        not carry its uncertainty: the likelihood :math:`\operatorname{sigmoid}(a^*/\gamma)` pins the network
        down weakly, and independent draws of its weights from the diagonal approximation reassign whole
        clusters (on three well-separated blobs of 90 or 900 points the draws' shares scatter with a standard
        deviation of about 0.25 around the fitted ones, and many draws leave a cluster nearly empty). The draws
        still perturb the network, and so the pointwise log-likelihood.
        """
        return {"weights": self.log_prior.exp()}

    def cluster_log_likelihood(self, a_star: torch.Tensor) -> torch.Tensor:
        """(B, K) :math:`\\log h_k(x) = \\log \\operatorname{sigmoid}(a^*/\\gamma)`."""
        return F.logsigmoid(a_star / self.gamma)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        subsample: torch.Tensor | None = None,
        x_aug: torch.Tensor | None = None,
    ) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            log_h, log_h_aug = self._log_likelihoods(x[idx], x_aug)
            logits = label_logits(self.log_prior.expand(len(idx), -1), None if y is None else y[idx])
            k = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            rows = torch.arange(len(idx), device=x.device)
            pyro.factor("x", Vindex(log_h)[rows, k])
            if log_h_aug is not None:
                pyro.factor("x_aug", Vindex(log_h_aug)[rows, k])

    def _log_likelihoods(
        self, xb: torch.Tensor, x_aug: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""(B, K) :math:`\log h_k(x_n)` and, for a transformed copy (given, or drawn while training with
        augmentation), :math:`\log h_k(x^{tr}_n)`, as :meth:`forward` scores them."""
        train = self.training and torch.is_grad_enabled()
        log_h = self.cluster_log_likelihood(self.scores(xb, batch_stats=train, update=train))
        if x_aug is None and train and self.augment is not None:
            x_aug = self.augment(xb)
        if x_aug is None:
            return log_h, None
        if x_aug.shape[0] != xb.shape[0]:
            raise MixzooInputError(f"x_aug must hold one row per batch point ({xb.shape[0]}), got {x_aug.shape[0]}.")
        return log_h, self.cluster_log_likelihood(self.scores(x_aug, batch_stats=train, update=False))

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        r"""(B, K) the E-step of Tissera et al. (2022, eq. 5): :math:`\log \operatorname{softmax}_k(a^*_{nk} + \log
        p(y = k))`, without gradient and without updating the running statistics, with the statistics the model's
        own pass uses (the batch's while training).

        The paper approximates the posterior of its likelihoods :math:`h_k = \operatorname{sigmoid}(a^*_k / \gamma)`
        by the softmax of the normalized scores themselves ("considering the ease of numerical optimization"), a
        sharper distribution than the exact :math:`\operatorname{softmax}_k(\log h_k + \log p(y = k))`; the
        ``posterior`` guide uses it, so EM here is the paper's."""
        batch_stats = self.training and torch.is_grad_enabled()
        with torch.no_grad():
            return torch.log_softmax(self.scores(x, batch_stats=batch_stats) + self.log_prior, -1)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        r"""(B, K) :math:`\log p(y = k) + \log h_k(x_n)` (+ :math:`\log h_k(x^{tr}_n)` for a transformed copy
        while training with augmentation), exactly as :meth:`forward` scores the minibatch ``x``: in training
        with the batch's statistics, updating the running ones (:mod:`mixzoo.inference.untraced`)."""
        log_h, log_h_aug = self._log_likelihoods(x)
        table = self.log_prior + log_h
        return table if log_h_aug is None else table + log_h_aug

    @torch.no_grad()
    def agreement(self, x: torch.Tensor, generator: torch.Generator, batch_size: int = 4096) -> float:
        """Share of points whose most probable cluster is that of a transformed copy (the model's own
        :class:`~mixzoo.nets.augment.Augment`), with the running statistics: eq. (7) assumes an image and its
        transform belong to the same cluster, and a start that splits one digit and merges two breaks it."""
        if self.augment is None:
            raise MixzooInputError("agreement needs augment=True: it compares each image with a transformed copy.")
        was_training = self.training
        self.eval()
        same = 0
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            a = self.scores(xb, batch_stats=False)
            a_tr = self.scores(self.augment(xb, generator=generator), batch_stats=False)
            post = self.cluster_log_likelihood(a) + self.log_prior
            post_tr = self.cluster_log_likelihood(a_tr) + self.log_prior
            same += int((post.argmax(-1) == post_tr.argmax(-1)).sum())
        self.train(was_training)
        return same / x.shape[0]

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0, batch_size: int = 4096) -> NeuralMixture:
        """Seeded weights; for the MLP, inputs standardised with the data's mean and std; running statistics
        of the scores set from the whole data set."""
        x = check_data(x, dim=self.dim).to(self.shift.device)
        check_n_clusters(self.n_clusters, x.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in self.net.modules():
                if hasattr(m, "reset_parameters") and m is not self.net:
                    m.reset_parameters()
        if self.arch == "mlp":
            sd = x.std(0)
            self.shift.copy_(x.mean(0))
            self.scale.copy_(torch.where(sd > 0, sd, torch.ones_like(sd)))
        a = torch.cat([self.relevance(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        self.norm.running_mean.copy_(a.mean(0))
        self.norm.running_var.copy_(a.var(0))
        return self

@dataclass(frozen=True)
class NeuralMixtureOptions(Options):
    """Options of the neural mixture."""

    arch: Literal["mlp", "cnn"] = option("mlp", "network of the relevance scores")
    hidden: tuple[int, ...] = option((32, 32), "hidden sizes of the MLP (of the CNN's dense part)", low=1)
    channels: tuple[int, ...] = option((64, 128, 256), "CNN channels per conv block", low=1, requires=("arch", "cnn"))
    image: tuple[int, ...] = option((), "image shape H,W or C,H,W (default: the data's own)", low=1)
    gamma: float = option(5.0, "divisor of a* in the sigmoid (the paper: 5 for batches of 128)", low=1e-6)
    normalize: bool = option(True, "batch-normalize the scores (off shows the collapse)")
    sobel: bool = option(False, "feed the CNN Sobel edges of the image (section 8.2)", requires=("arch", "cnn"))
    augment: bool = option(False, "eq. (7) with a randomly transformed copy of each batch (images)")
    shear: float = option(0.0, "largest horizontal shear (change of slant) of the transformed copy", low=0.0, requires="augment")
    two_fold: bool = option(False, "Algorithm 1: an EM step, then a consistency step", losses=("em",), requires="augment")
    consistency_lr: float = option(1e-4, "learning rate of the consistency step", low=1e-12, requires="two_fold")

    def check(self) -> None:
        if self.two_fold and not self.augment:
            raise MixzooInputError("--two-fold needs --augment: its consistency step compares each image with a transformed copy.")


def _build(dim: int, k: int, o: NeuralMixtureOptions) -> NeuralMixture:
    return NeuralMixture(
        dim, k, arch=o.arch, hidden=o.hidden, channels=o.channels, image_shape=o.image or None, gamma=o.gamma,
        normalize=o.normalize, sobel=o.sobel, augment=o.augment, shear=o.shear,
    )  # fmt: skip


def _restart_score(model: nn.Module, guide: nn.Module, x: torch.Tensor) -> float | None:
    """``--n-init`` keeps the restart whose clusters agree most with a transformed copy of (up to 10000 of)
    the points (:meth:`NeuralMixture.agreement`); without augmentation, the final loss decides.

    The training loss does not tell a start that merged two digits and split another from a good one; the agreement
    does better (sections ``seeds-neural-mixture-*-n-init-3`` of docs/benchmarks.md)."""
    assert isinstance(model, NeuralMixture)
    if model.augment is None:
        return None
    g = torch.Generator().manual_seed(0)
    probe = x[torch.randperm(x.shape[0], generator=g)[:10000].to(x.device)]
    return -model.agreement(probe, g)


def _image_options(o: NeuralMixtureOptions, given: frozenset[str], data: DataShape) -> NeuralMixtureOptions:
    """Images get the paper's image recipe (section 8.2): a CNN of conv blocks with max-pooling, one dense
    layer of 32 before the K scores, and eq. (7) with a transformed copy of each batch. The blocks are
    narrower than the paper's C64-C128-C256 (Table 2) so that a CPU trains them: C32-C64 for small images,
    C16-C32-C64 and 5 epochs for larger ones (sections ``seeds-neural-mixture-*`` of docs/benchmarks.md). Image models
    see the data's own image shape. Options the user gave are kept.

    The transformed copy also changes the slant, by a horizontal shear of up to 0.3 (about 17 degrees). Without it,
    a start can split two digits by how they lean instead of by what they are (on MNIST, 4s and 9s into a left- and a
    right-leaning cluster); a larger shear mends some such starts and splits other digits ("Neural mixture: digits that
    lean the other way" in docs/benchmarks.md)."""
    if not data.image_shape:
        return o
    side = max(data.image_shape[-2:])
    chosen: dict[str, object] = {
        "image": tuple(data.image_shape),
        "arch": "cnn",
        "augment": True,
        "shear": 0.3,
        "hidden": (32,),
        "channels": (32, 64) if side <= 16 else (16, 32, 64),
    }
    if given & {"arch"} and o.arch != "cnn":
        chosen = {"image": chosen["image"]}
    if "augment" in given and not o.augment:
        chosen.pop("shear", None)
    return o.replace(**{k: v for k, v in chosen.items() if k not in given})


def _plan(o: NeuralMixtureOptions, data: DataShape, inference: Inference) -> Plan:
    """The network reads the data as they are (no reduction); images get the image recipe
    (:func:`_image_options`) and, on more than 10000 of them, 5 epochs (on all of MNIST most of the clustering is
    there after one; section ``neural-mnist-full``); elsewhere 100 epochs of Adam at 1e-3 on batches of 128 (the batch
    size the paper's gamma of 5 is set for)."""
    o = _image_options(o, inference.given, data)
    epochs = 5 if o.arch == "cnn" and data.n > 10000 else 100
    step = None
    if o.two_fold:
        from ..inference.two_fold import two_fold

        step = two_fold(consistency_lr=o.consistency_lr)
    return Plan(
        options=o, training=Training(epochs=epochs, lr=1e-3, batch_size=128), step=step, restart_score=_restart_score,
        restart_rule="the most points in the cluster of their transformed copy (without --augment: the lowest final loss)",
        laplace_summary=False,
    )  # fmt: skip


FAMILY = register(
    Family(
        name="neural-mixture",
        description="neural mixture: sigmoid of batch-normalized relevance scores, trained by batch-wise EM",
        cite="Tissera et al. 2022",
        options=NeuralMixtureOptions,
        model=NeuralMixture,
        build=_build,
        default_guide="posterior",
        default_loss="em",
        plan=_plan,
        criteria=(),
        criteria_note="its sigmoid relevance scores are not a density of the data, so no likelihood-based criterion "
        "applies; choose K with a density family on the same features",
    )
)
