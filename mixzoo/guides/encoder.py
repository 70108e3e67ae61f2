r"""Amortized cluster encoder :math:`q(y \mid x)`: a network with a softmax output whose logits are divided by a
temperature T (Pires (2020), section 5: T decays exponentially during training so that early on every component
sees all data).

The network is an MLP for vectors and, for images, stride-2 convolutions followed by dense layers
(:class:`~mixzoo.nets.conv.ConvEncoder`). ``"y"`` is enumerated in the guide, so with ``trace-enum`` the ELBO is
the exact sum over clusters of Pires's (2020) eq. (4.3); ``trace``, ``trace-graph``, ``vimco`` and ``rws`` sample it.

Semi-supervised use: labelled points (``y >= 0``) get a near one-hot :math:`q`, matching the model's treatment,
and the encoder learns them through the supervised term :math:`\alpha \log q(y_n \mid x_n)` added to the ELBO
(as a guide factor, which enters the loss with a minus sign of the ELBO's ``-log q``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from ..contract import DATA_PLATE
from ..data.labels import label_logits
from ..data.shape import DataShape
from ..data.validation import check_data
from ..errors import MixzooInputError
from ..inference.schedules import ExponentialDecay
from ..nets.conv import ConvEncoder
from ..nets.mlp import ScalarState, mlp
from ..options import Options, option
from .registry import GUIDE_PARAMS, GuideSpec, Schedule, register_guide

__all__ = ["ClusterEncoder", "EncoderOptions", "teach_posterior"]


class ClusterEncoder(PyroModule):
    """Guide ``guide(x, y=None, subsample=None)`` sampling ``"y"`` from softmax(net(x) / T).

    :param dim: number of features D.
    :param n_clusters: number of clusters K.
    :param hidden: hidden layer sizes (of the dense part after the convolutions, for images).
    :param temperature: initial temperature T (anneal with :class:`~mixzoo.inference.schedules.ExponentialDecay`).
    :param supervised_weight: weight alpha of the supervised term on labelled points.
    :param image_shape: (C, H, W) or (H, W) to convolve the features as an image; ``None``: an MLP.
    :param channels: channels of the stride-2 convolutions (images).
    """

    samples_y = True
    held_fixed = False

    temperature = ScalarState()
    """The softmax temperature T, saved with the module's state (it is annealed while training)."""

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        hidden: Sequence[int] = (64, 64),
        temperature: float = 1.0,
        supervised_weight: float = 1.0,
        image_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (32, 64),
    ) -> None:
        super().__init__(name=GUIDE_PARAMS)  # its parameters must not meet a model's of the same name in Pyro's store
        self.dim = int(dim)
        if image_shape:
            shape = tuple(int(s) for s in image_shape)
            shape = (1, *shape) if len(shape) == 2 else shape
            if len(shape) != 3 or shape[0] * shape[1] * shape[2] != self.dim:
                raise MixzooInputError(f"image shape {tuple(image_shape)} does not hold {self.dim} features.")
            self.net: nn.Module = ConvEncoder(shape, n_clusters, channels, hidden)
        else:
            self.net = mlp([self.dim, *hidden, n_clusters])
        self.image = bool(image_shape)
        self.temperature = float(temperature)
        self.supervised_weight = float(supervised_weight)
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) logits before the temperature."""
        return self.net((x - self.shift) / self.scale)

    def log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log q(y = k \\mid x_n)` at the current temperature, as :meth:`forward` enumerates it
        (:mod:`mixzoo.inference.untraced`)."""
        return F.log_softmax(self.logits(x) / self.temperature, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None, **kwargs: Any) -> None:
        with pyro.plate(DATA_PLATE, x.shape[0], subsample=subsample) as idx:
            raw = self.logits(x[idx])
            yb = None if y is None else y[idx]
            logits = label_logits(raw / self.temperature, yb)
            pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            if yb is not None and bool((yb >= 0).any()):
                log_q = F.log_softmax(raw, -1).gather(-1, yb.clamp(min=0)[:, None]).squeeze(-1)
                term = -self.supervised_weight * log_q * (yb >= 0)
                pyro.factor("y_supervised", term, has_rsample=True)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> ClusterEncoder:
        """Standardise the encoder's inputs: each feature by its mean and std (MLP), or every pixel by the image's
        overall mean and std (convolutions see the image as it is)."""
        x = check_data(x, dim=self.dim).to(self.shift.device)
        if self.image:
            sd = x.std()
            self.shift.fill_(float(x.mean()))
            self.scale.fill_(float(sd) if sd > 0 else 1.0)
            return self
        sd = x.std(0)
        self.shift.copy_(x.mean(0))
        self.scale.copy_(torch.where(sd > 0, sd, torch.ones_like(sd)))
        return self


@dataclass(frozen=True)
class EncoderOptions(Options):
    """Options of the encoder guide."""

    encoder_arch: Literal["auto", "mlp", "cnn"] = option("auto", "network of q(y|x): convolutions on images, an MLP otherwise (auto)")
    encoder_hidden: tuple[int, ...] = option((64, 64), "hidden sizes of q(y|x) (for images, of the dense part)", low=1)
    encoder_channels: tuple[int, ...] = option((32, 64), "channels of the stride-2 convolutions of q(y|x) (images)", low=1)
    encoder_lr: float = option(5e-3, "largest Adam learning rate of q(y|x): it learns at the training's rate up to this", low=1e-8)
    temperature: float = option(1.0, "initial softmax temperature of q(y|x), annealed to 1 (Pires 2020 start at 5)", low=1e-3)
    temperature_decay: float = option(0.98, "per-epoch factor of the temperature, down to 1", low=1e-3, high=1.0)
    supervised_weight: float = option(1.0, "weight of log q(y|x) on labelled points (--labels)", low=0.0)
    encoder_start: Literal["posterior", "none"] = option(
        "posterior", "start q(y|x) at the model's posterior under its start (posterior), or untrained (none)"
    )
    encoder_start_epochs: int = option(10, "epochs of teaching q(y|x) the model's posterior at the start", low=1,
                                       requires=("encoder_start", "posterior"))  # fmt: skip


def _build(model: nn.Module, k: int, data: DataShape, o: EncoderOptions, family_options: Any) -> ClusterEncoder:
    image = data.image_shape if o.encoder_arch in ("auto", "cnn") else None
    if o.encoder_arch == "cnn" and not image:
        raise MixzooInputError(
            f"--encoder-arch cnn convolves images; these data ({data.dim} features) have no image shape: use --encoder-arch mlp."
        )
    return ClusterEncoder(
        data.dim, k, hidden=o.encoder_hidden, temperature=o.temperature, supervised_weight=o.supervised_weight,
        image_shape=image, channels=o.encoder_channels,
    )  # fmt: skip


def teach_posterior(
    guide: ClusterEncoder, model: nn.Module, x: torch.Tensor, *, epochs: int = 10, seed: int = 0,
    batch_size: int = 256, lr: float = 1e-2, max_points: int = 20000,
) -> None:  # fmt: skip
    r"""Fit :math:`q(y \mid x)`, at its starting temperature, to the model's posterior :math:`p(y \mid x)` under the
    model's current parameters (its start), by cross-entropy on up to ``max_points`` seeded points.

    An untrained encoder gives every point nearly the same :math:`q`, so every component then learns from every
    point alike, and components that start close (a model without a data-dependent start) stay together: training
    ends with one cluster. Started at the model's posterior, the first steps are those of EM (Li et al. 2020 teach
    their :math:`q(y \mid x)` the GMM's responsibilities the same way).
    """
    from .posterior import PosteriorGuide

    g = torch.Generator().manual_seed(seed)
    if x.shape[0] > max_points:
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points].to(x.device)]
    target = PosteriorGuide(model)
    was_training = model.training
    model.eval()  # the posterior of the model as it stands, without touching running statistics
    with torch.no_grad():
        p = torch.cat([target.log_posterior(b) for b in x.split(4096)]).exp()
    model.train(was_training)
    opt = torch.optim.Adam(guide.net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=g).split(batch_size):
            idx = idx.to(x.device)
            opt.zero_grad()
            log_q = F.log_softmax(guide.logits(x[idx]), -1)  # at temperature 1: the start's T only softens it
            (-(p[idx] * log_q).sum(-1).mean()).backward()
            opt.step()
    guide.zero_grad(set_to_none=True)


def _start(guide: nn.Module, model: nn.Module, x: torch.Tensor, seed: int, o: EncoderOptions) -> None:
    assert isinstance(guide, ClusterEncoder)
    guide.initialize(x, seed=seed)
    if o.encoder_start == "posterior":
        teach_posterior(guide, model, x, epochs=o.encoder_start_epochs, seed=seed)


def _schedules(guide: nn.Module, o: EncoderOptions) -> list[Schedule]:
    return [ExponentialDecay(guide, "temperature", o.temperature, o.temperature_decay, 1.0)]


register_guide(
    GuideSpec(
        name="encoder",
        description="amortized q(y|x): a softmax network (MLP, or convolutions on images) with an annealed temperature",
        build=_build,
        samples_y=True,
        options=EncoderOptions,
        schedules=_schedules,
        start=_start,
        learning_rate=lambda o, lr: min(o.encoder_lr, lr),
    )
)
