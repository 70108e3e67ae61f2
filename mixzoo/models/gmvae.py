r"""Gaussian-mixture variational autoencoder (Li et al. 2020).

.. math::
    y \sim \operatorname{Cat}(1/K), \qquad
    z \mid y \sim \mathcal N\big(\mu_y, (\operatorname{softplus}(s_y) + 1)^2\big), \qquad
    x \mid z \sim \mathcal N\big(f_\mu(z), \max(f_\sigma(z), \epsilon_x)^2\big)

(or :math:`\operatorname{Bernoulli}(\operatorname{sigmoid} f(z))` for binary data),
with learnable per-cluster :math:`\mu_y, s_y` and an MLP decoder, or for images the
convolutional encoders and deconvolutional decoder of the paper's Fig. 5a (``arch="conv"``,
:mod:`mixzoo.nets.conv`). The lower bound
:math:`\epsilon_x` on the decoder's standard deviation is annealed from 1 towards
1e-4 during training (section II-D) by :class:`~mixzoo.inference.schedules.StepDecay`.
The guide (:mod:`mixzoo.guides.gmvae`) samples or enumerates ``"y"``, so the same
pair trains under VIMCO, ``TraceEnum_ELBO`` (the paper's EnumY) and
``TraceGraph_ELBO`` (NVIL). Under VIMCO and NVIL, :class:`NVISAGuide` can also draw z
without a pathwise gradient (``z_estimator="score"``), so that the learning signal
multiplies the score of :math:`q(z, y \mid x)` as in eq. (6).

**Integer images are dequantized.** A Gaussian :math:`p(x \mid z)` on integer intensities is unbounded:
as the annealed floor :math:`\epsilon_x` falls below the spacing of the levels, the decoder gains
:math:`-\log \epsilon_x` nats per pixel by shrinking its std onto the levels, whatever z says, and the
clusters no longer pay for themselves: on raw digits the clusters merge once the floor falls below the levels'
spacing, while dequantized they all survive the schedule (sections ``gmvae-annealing-digits-losses-vimco`` and
``gmvae-annealing-digits-dequantized-losses-vimco`` of docs/benchmarks.md). So the family dequantizes
integer images once, as ``--dequantize`` does, or afresh every epoch (``dequantize_noise="epoch"``,
:class:`DequantizeStep`): each pixel gets uniform noise one intensity level wide, drawn
from a generator seeded by the run's seed and the epoch, so that runs repeat and resume
exactly (the paper adds uniform noise to the raw pixels, after Theis et al. 2016).

**The likelihood does not single out the digits on small images.** Trained from the digits themselves (each
cluster one digit's autoencoder codes, q(y|x) taught the labels), the default recipe on digits keeps most of them but
ends at a lower log-likelihood than the runs from the family's own start (``benchmarks/gmvae_label_start.py``, section
``gmvae-label-start-digits`` of docs/benchmarks.md). So ELBO maximization keeps a start near the digits but does not
lead to one: which clusters the data fall into is worth at most :math:`\log K` nats of a log-likelihood of many nats
per point, and the rest is spent on the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import TraceGraph_ELBO
from pyro.nn import PyroModule
from torch import nn

from ..contract import cluster_draws
from ..data.shape import DataShape
from ..errors import MixzooInputError
from ..guides.registry import GUIDE_PARAMS, GuideSpec, register_guide
from ..inference.schedules import StepDecay
from ..inference.step import SVIStep
from ..inference.vimco import VIMCO, ScoreFunctionSites
from ..nets.conv import ConvEncoder, DeconvDecoder
from ..nets.mlp import ScalarState, mlp
from ..options import Options, option
from .family import Family, Inference, Plan, Training, principal_components, register

__all__ = ["GMVAE", "NVISAGuide", "DequantizeStep", "dequantized", "pretrain_autoencoder", "rescale_codes"]


class GMVAE(PyroModule):
    """Pyro model ``model(x, y=None, subsample=None)`` of the Gaussian-mixture VAE.

    Its per-point latent ``z`` (``local_latents``) needs a guide that samples it: the family's ``qzxy`` or
    ``mean-field``.

    :param dim: data dimension D.
    :param n_clusters: number of clusters K.
    :param latent: dimension of z.
    :param hidden: decoder hidden sizes.
    :param likelihood: ``"gaussian"`` or ``"bernoulli"``.
    :param decoder: a network from z to the ``2 * dim`` (Gaussian: means, then std heads) or ``dim``
        (Bernoulli logits) outputs, in place of the MLP of ``hidden`` (e.g. a
        :class:`~mixzoo.nets.conv.DeconvDecoder`).
    """

    local_latents = ("z",)

    eps_x = ScalarState()
    """Lower bound on the decoder's standard deviation (annealed; saved with the module's state)."""

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        latent: int = 10,
        hidden: Sequence[int] = (256, 256),
        likelihood: Literal["gaussian", "bernoulli"] = "gaussian",
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        self.dim, self.n_clusters, self.latent, self.likelihood = int(dim), int(n_clusters), int(latent), likelihood
        self.mu_y = nn.Parameter(torch.randn(n_clusters, latent) * 2.0)
        self.s_y = nn.Parameter(torch.full((n_clusters, latent), -3.0))
        out = 2 * dim if likelihood == "gaussian" else dim
        self.decoder = mlp([latent, *hidden, out]) if decoder is None else decoder
        self.eps_x = 1.0

    def prior_scale(self) -> torch.Tensor:
        """(K, L) standard deviations :math:`\\operatorname{softplus}(s_y) + 1` of :math:`p(z \\mid y)`."""
        return F.softplus(self.s_y) + 1.0

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        """What the ArviZ summary (:func:`mixzoo.analysis.summary.summarize`) shows: the prior's ``weights``
        :math:`p(y = k) = 1/K` (K,), fixed, so the same in every draw; and per cluster the mean
        ``latent_loc`` :math:`\\mu_y` and standard deviation ``latent_scale`` (K, L) of the Gaussian
        :math:`p(z \\mid y)` in the latent space. The standard deviations are at least 1; where the fit presses
        one against that bound (:math:`s_y \\to -\\infty`), its curvature is not positive, the Laplace
        approximation floors it with a warning, and the draws of that ``latent_scale`` spread far: a bound is no
        mode.

        The decoder's network weights are not summarized, nor are the guide's encoders (their Laplace draws
        move the importance-sampled log-likelihood, not a named quantity).
        """
        weights = torch.full((self.n_clusters,), 1.0 / self.n_clusters, device=self.mu_y.device)
        return {"weights": weights, "latent_loc": self.mu_y, "latent_scale": self.prior_scale()}

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        loc, raw = out[..., : self.dim], out[..., self.dim :]
        return dist.Normal(loc, F.softplus(raw) + self.eps_x).to_event(
            1
        )  # an additive floor keeps the gradient (Li et al. 2020)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        clusters: torch.Tensor | None = None,
        mean: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Draw ``n`` points and their clusters ancestrally: :math:`y \sim \operatorname{Cat}(1/K)`
        (or the given ``clusters``, shape (n,)), :math:`z \sim p(z \mid y)`, :math:`x \sim p(x \mid z)`;
        with ``mean=True`` the decoder's mean :math:`f_\mu(z)` (the Bernoulli probabilities) instead of a draw of x."""
        dev = self.mu_y.device
        if clusters is None:
            k = torch.randint(self.n_clusters, (n,), generator=generator)
        else:
            k = cluster_draws(torch.ones(self.n_clusters), n, generator, clusters)
        eps = torch.randn(n, self.latent, generator=generator)
        k, eps = k.to(dev), eps.to(dev)
        z = self.mu_y[k] + self.prior_scale()[k] * eps
        px = self.decode(z)
        if mean:
            return px.mean, k
        base = px.base_dist
        if self.likelihood == "bernoulli":
            u = torch.rand(base.probs.shape, generator=generator).to(dev)
            return (u < base.probs).to(z.dtype), k
        return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator).to(dev), k

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        probs = torch.full((self.n_clusters,), 1.0 / self.n_clusters, device=x.device)
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(probs), obs=None if y is None else y[idx])
            z = pyro.sample("z", dist.Normal(self.mu_y[k], self.prior_scale()[k]).to_event(1))
            pyro.sample("x", self.decode(z), obs=x[idx])


class _Baseline(nn.Module):
    """Input-dependent baseline b(x) of NVIL, one value per point."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = mlp([dim, 64, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class GMVAEGuide(PyroModule):
    """Guide ``guide(x, y=None, subsample=None)`` for :class:`~mixzoo.models.gmvae.GMVAE`: q(y|x) q(z|x,y)
    (``structured=True``, the paper's choice) or the mean-field q(y|x) q(z|x).

    ``"y"`` is marked for parallel enumeration (used by ``trace-enum``, the paper's EnumY; other losses sample it)
    and carries an input-dependent baseline network for ``trace-graph`` (NVIL, Mnih and Gregor 2014). The standard
    deviation of :math:`q(z \\mid \\cdot)` is bounded below by :math:`\\epsilon_z`, annealed like the decoder's.
    """

    samples_y = True
    held_fixed = False

    eps_z = ScalarState()
    """Lower bound on the standard deviation of q(z | .) (annealed; saved with the module's state)."""

    def __init__(
        self, dim: int, n_clusters: int, latent: int = 10, hidden: Sequence[int] = (256, 256), structured: bool = True
    ) -> None:
        super().__init__(name=GUIDE_PARAMS)
        self.n_clusters, self.latent, self.structured = int(n_clusters), int(latent), bool(structured)
        self.encoder_y = mlp([dim, *hidden, n_clusters])
        self.encoder_z = mlp([dim + (n_clusters if structured else 0), *hidden, 2 * latent])
        self.baseline = _Baseline(dim)
        self.eps_z = 1.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) logits of q(y | x)."""
        return self.encoder_y(x)

    def z_params(self, x: torch.Tensor, k: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.structured:
            onehot = F.one_hot(k, self.n_clusters).to(x.dtype)
            batch = torch.broadcast_shapes(onehot.shape[:-1], x.shape[:-1])
            inp = torch.cat([x.expand(batch + x.shape[-1:]), onehot.expand(batch + onehot.shape[-1:])], -1)
        else:
            inp = x
        out = self.encoder_z(inp)
        return out[..., : self.latent], F.softplus(out[..., self.latent :]) + self.eps_z  # additive floor

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            xb = x[idx]
            infer = {
                "enumerate": "parallel",
                "baseline": {"nn_baseline": self.baseline, "nn_baseline_input": xb},
            }
            if y is None:
                k = pyro.sample("y", dist.Categorical(logits=self.logits(xb)), infer=infer)
            else:
                k = y[idx]
            loc, scale = self.z_params(xb, k)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class NVISAGuide(GMVAEGuide):
    r"""The family's guide: :class:`GMVAEGuide` whose z may be drawn without a pathwise gradient.

    With ``score_z`` set, ``"z"`` is a non-reparameterized site (:class:`~mixzoo.inference.vimco.ScoreFunctionSites`):
    VIMCO's leave-one-out signal (eq. 7) and NVIL's :math:`f - C_\psi(x) - c` (eq. 6, the baseline of
    ``"y"`` shared) multiply :math:`\nabla \log q(z, y \mid x)` instead of only
    :math:`\nabla \log q(y \mid x)`, and z's value carries no gradient.
    """

    score_z: bool = False

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        if not self.score_z:
            return super().forward(x, y, subsample)
        with ScoreFunctionSites(("z",), baseline_from="y"):
            return super().forward(x, y, subsample)


def dequantized(x: torch.Tensor, levels: int, seed: int, epoch: int) -> torch.Tensor:
    r"""``x`` plus uniform noise one intensity level wide, centred on each level, drawn for ``(seed, epoch)``.

    With :math:`L` levels from :math:`B = \min x` to :math:`T = \max x`, values :math:`B + v (T - B) / (L - 1)`
    become :math:`B + (v + u - \tfrac12)\, (T - B) / (L - 1)`, :math:`u \sim U[0, 1)`: an affine map of the
    paper's :math:`(v + u) / L`, centred so that the undisturbed values are the noise's means.
    """
    if levels < 2:
        raise MixzooInputError(f"dequantization needs at least 2 intensity levels, got {levels}.")
    width = (float(x.max()) - float(x.min())) / (levels - 1)
    state = int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    g = torch.Generator(device=x.device).manual_seed(state)
    u = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return x + (u - 0.5) * width


class DequantizeStep(SVIStep):
    """An SVI step on the data dequantized afresh each epoch (:func:`dequantized`).

    The epoch is the one a schedule last wrote to ``model.noise_epoch`` (the family's schedules do), so a
    resumed or retried epoch draws the same noise as the first time.
    """

    def __init__(
        self, model: nn.Module, guide: nn.Module, optim: Any, loss: Any, *, levels: int, **kwargs: Any
    ) -> None:
        super().__init__(model, guide, optim, loss, **kwargs)
        self.model, self.levels = model, int(levels)
        self.seed = 0 if kwargs.get("seed") is None else int(kwargs["seed"])
        self._key: tuple[int, int] | None = None
        self._noisy: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, **kwargs: Any) -> float:
        epoch = int(getattr(self.model, "noise_epoch", 0))
        key = (id(x), epoch)
        if self._key != key or self._noisy is None:
            self._noisy, self._key = dequantized(x, self.levels, self.seed, epoch), key
        return super().__call__(self._noisy, y, idx, **kwargs)


class _NoiseEpoch:
    """Schedule: tell :class:`DequantizeStep` which epoch it is in."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, epoch: int) -> None:
        self.model.noise_epoch = int(epoch)


@torch.no_grad()
def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


@torch.no_grad()
def rescale_codes(encoder: nn.Module, decoder: nn.Module, latent: int, factor: float) -> float:
    """Multiply an autoencoder's codes by ``factor`` without changing what it reconstructs.

    The encoder's last linear layer gives the code's mean in its first ``latent`` outputs; those rows are
    multiplied by ``factor``, and the weights of the decoder's first linear layer (which reads the code) divided
    by it. Returns the factor applied: 1.0 when either network has no linear layer to rescale, or when
    ``factor`` is not a finite positive number.
    """
    enc = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    dec = [m for m in decoder.modules() if isinstance(m, nn.Linear)]
    if not enc or not dec or dec[0].in_features != latent or not (math.isfinite(factor) and factor > 0):
        return 1.0
    enc[-1].weight[:latent] *= factor
    enc[-1].bias[:latent] *= factor
    dec[0].weight /= factor
    return float(factor)


def pretrain_autoencoder(
    model: GMVAE,
    guide: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> None:
    """Li et al.'s (2020) initialisation: train the z-encoder's mean and the decoder as an autoencoder,
    fit a diagonal GMM to the codes, and set :math:`\\mu_y` (and :math:`s_y`) from it; then teach
    :math:`q(y \\mid x)` the GMM's responsibilities for a few epochs.

    **The codes are rescaled to the prior's scale.** The prior's standard deviations are at least 1
    (:meth:`GMVAE.prior_scale`, section II-A of the paper), but nothing fixes the scale of an autoencoder's codes:
    on digits and MNIST the codes spread well below 1 per dimension and the GMM's components are narrower still, so
    under the prior, at least 1 wide, they would overlap almost entirely and the start's clusters would be lost at
    the first step.
    An autoencoder is unchanged when its codes are multiplied by c and the decoder's first layer divided by c, so
    the codes are multiplied by c = 1 / (the median of the GMM's standard deviations) (:func:`rescale_codes`),
    and the GMM with them.

    The convolutional networks (``arch="conv"``) need the default 20 epochs: after 5 the start held few clusters
    and training fell to one.
    """
    from sklearn.mixture import GaussianMixture as SkGMM

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    k = model.n_clusters

    def encode(xb: torch.Tensor) -> torch.Tensor:
        if getattr(guide, "structured", False):
            zeros = torch.zeros(xb.shape[0], k, device=xb.device, dtype=xb.dtype)
            return guide.encoder_z(torch.cat([xb, zeros], -1))[..., : model.latent]
        return guide.encoder_z(xb)[..., : model.latent]

    def recon_loss(xb: torch.Tensor) -> torch.Tensor:
        out = model.decoder(encode(xb))
        if model.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(out, xb)
        return F.mse_loss(out[..., : model.dim], xb)

    params = list(model.decoder.parameters()) + list(guide.encoder_z.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad()
            recon_loss(x[idx.to(x.device)]).backward()
            opt.step()
    with torch.no_grad():
        codes = torch.cat([encode(b) for b in x.split(4096)]).cpu().numpy()
    gmm = SkGMM(k, covariance_type="diag", random_state=seed, reg_covar=1e-4).fit(codes)
    std = torch.as_tensor(gmm.covariances_, dtype=x.dtype).sqrt()
    factor = rescale_codes(guide.encoder_z, model.decoder, model.latent, 1.0 / float(std.median()))
    with torch.no_grad():
        model.mu_y.copy_(torch.as_tensor(gmm.means_, dtype=x.dtype) * factor)
        model.s_y.copy_(_inverse_softplus((std * factor - 1).clamp(min=1e-3)))
    resp = torch.as_tensor(gmm.predict_proba(codes), dtype=x.dtype, device=x.device)
    opt = torch.optim.Adam(guide.encoder_y.parameters(), lr=lr)
    for _ in range(max(1, epochs // 4)):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            idx = idx.to(x.device)
            opt.zero_grad()
            (-(resp[idx] * F.log_softmax(guide.encoder_y(x[idx]), -1)).sum(-1).mean()).backward()
            opt.step()


@dataclass(frozen=True)
class GMVAEOptions(Options):
    """Options of the Gaussian-mixture VAE."""

    latent: int = option(10, "dimension of z", low=1)
    hidden: tuple[int, ...] = option(
        (256, 256), "hidden sizes of the encoder and decoder MLPs (conv: of their dense part)", low=1
    )
    likelihood: Literal["gaussian", "bernoulli"] = option("gaussian", "p(x|z)")
    anneal_every: int = option(10, "halve the std floors every N epochs (0: no annealing)", low=0)
    anneal_start: float = option(1.0, "the std floors' first value (the paper's 1; halved from there)", low=1e-4)
    pretrain: int = option(20, "autoencoder pretraining epochs before the GMM start (0: off)", low=0)
    z_estimator: Literal["reparam", "score"] = option(
        "reparam", "gradient through z: reparameterized, or the signal times the score of q(z,y|x) (eq. 6)",
        losses=("vimco", "trace-graph"),
    )  # fmt: skip
    arch: Literal["mlp", "conv"] = option(
        "mlp", "encoders and decoder: MLPs, or convolutional/deconvolutional (Fig. 5a; images)"
    )
    channels: tuple[int, ...] = option(
        (32, 64), "channels of the stride-2 convolutions; the decoder mirrors them", low=1, requires=("arch", "conv")
    )
    image: tuple[int, ...] = option(
        (), "image shape H,W or C,H,W (default: the data's own)", low=1, requires=("arch", "conv")
    )
    dequantize_noise: Literal["off", "epoch"] = option(
        "off", "integer-intensity images: fresh uniform noise one level wide every epoch"
    )
    levels: int = option(
        0, "intensity levels of the data (default: the data's own)", low=0, requires=("dequantize_noise", "epoch")
    )

    def check(self) -> None:
        if self.levels == 1:
            raise MixzooInputError("--levels must be at least 2 (0: the data's own).")


def _image_shape(dim: int, image: tuple[int, ...]) -> tuple[int, int, int]:
    shape = (1, *image) if len(image) == 2 else tuple(image)
    if not image:
        side = int(round(dim**0.5))
        shape = (1, side, side) if side * side == dim else ()
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != dim:
        raise MixzooInputError(
            f"--arch conv needs images: {dim} features are not an image of shape {tuple(image) or 'HxW'}; "
            "give --image H,W (or C,H,W), or use --arch mlp."
        )
    return shape  # type: ignore[return-value]


def _build(dim: int, k: int, o: GMVAEOptions) -> GMVAE:
    shape = _image_shape(dim, o.image) if o.arch == "conv" else None
    per_pixel = 2 if o.likelihood == "gaussian" else 1
    decoder = None if shape is None else DeconvDecoder(o.latent, shape, per_pixel, o.channels, o.hidden)
    return GMVAE(dim, k, latent=o.latent, hidden=o.hidden, likelihood=o.likelihood, decoder=decoder)


def _guide_builder(structured: bool) -> Callable[..., NVISAGuide]:
    def build(model: nn.Module, k: int, data: DataShape, options: Any, o: GMVAEOptions) -> NVISAGuide:
        dim = data.dim
        q = NVISAGuide(dim, k, latent=o.latent, hidden=o.hidden, structured=structured)
        if o.arch == "conv":
            shape = _image_shape(dim, o.image)
            q.encoder_y = ConvEncoder(shape, k, o.channels, o.hidden)
            q.encoder_z = ConvEncoder(shape, 2 * o.latent, o.channels, o.hidden, extra=k if structured else 0)
        return q

    return build


register_guide(
    GuideSpec(
        name="qzxy",
        description="the GMVAE's q(y|x) q(z|x,y) (the paper's structured guide)",
        build=_guide_builder(structured=True),
        samples_y=True,
        requires=lambda model: None,  # the family's own guide: the family check is the requirement
        family="gmvae",
        samples_local=True,
    )
)
register_guide(
    GuideSpec(
        name="mean-field",
        description="the GMVAE's mean-field q(y|x) q(z|x)",
        build=_guide_builder(structured=False),
        samples_y=True,
        requires=lambda model: None,  # the family's own guide: the family check is the requirement
        family="gmvae",
        samples_local=True,
    )
)


def _data_options(o: GMVAEOptions, given: frozenset[str], data: DataShape) -> GMVAEOptions:
    """The data's image shape for ``--arch conv`` and its intensity levels for ``--dequantize-noise epoch``."""
    changes: dict[str, Any] = {}
    if o.arch == "conv" and "image" not in given:
        if not data.image_shape:
            raise MixzooInputError(
                f"--arch conv applies to images; these data ({data.dim} features) have no image shape "
                "(after --pca they no longer do): use --arch mlp, or give --image H,W."
            )
        changes["image"] = tuple(data.image_shape)
    if o.dequantize_noise == "epoch" and data.levels_per_feature:
        raise MixzooInputError(
            "--dequantize-noise epoch draws noise one level wide on one grid the features share; these data's integer "
            "features each have a spacing of their own: drop it (the default dequantizes each feature by its own "
            "spacing, once), or give the features one unit."
        )
    if o.dequantize_noise == "epoch" and "levels" not in given:
        if data.levels is None:
            raise MixzooInputError(
                "--dequantize-noise epoch applies to integer-intensity images (digits, mnist, idx files) as read, "
                "not to continuous data or data already --dequantize'd, --scale'd or --pca'd; drop it, or give --levels L."
            )
        changes["levels"] = int(data.levels)
    return o.replace(**changes) if changes else o


def _schedules(model: nn.Module, guide: nn.Module, *, o: GMVAEOptions) -> list[Callable[[int], None]]:
    noise: list[Callable[[int], None]] = [_NoiseEpoch(model)] if o.dequantize_noise == "epoch" else []
    if o.anneal_every <= 0:  # no annealing: the floors stay at their final value
        model.eps_x = guide.eps_z = 1e-4
        return noise
    return [
        *noise,
        StepDecay(model, "eps_x", o.anneal_start, o.anneal_every, 0.5, 1e-4),
        StepDecay(guide, "eps_z", o.anneal_start, o.anneal_every, 0.5, 1e-4),
    ]


def _step(o: GMVAEOptions) -> Callable[..., Any] | None:
    if o.dequantize_noise != "epoch":
        return None
    if o.levels < 2:
        raise MixzooInputError("--dequantize-noise epoch needs the data's intensity levels: give --levels L.")
    return partial(DequantizeStep, levels=o.levels)


def _start(model: nn.Module, guide: nn.Module, x: Any, seed: int, loss: Any = None, *, o: GMVAEOptions) -> None:
    if isinstance(guide, NVISAGuide):  # eq. (6) applies to the sampling losses; EnumY keeps z reparameterized
        guide.score_z = o.z_estimator == "score" and isinstance(loss, (VIMCO, TraceGraph_ELBO))
    if o.pretrain > 0:
        pretrain_autoencoder(model, guide, x, epochs=o.pretrain, seed=seed)  # type: ignore[arg-type]


LARGE = 50_000
"""From this many points an epoch is long and the recipe trains 30 epochs, not 100: all of MNIST after PCA 50
(70000 points) trains 30, MNIST5 after PCA 50 (35735) keeps 100 (section ``defaults`` of docs/benchmarks.md)."""


def _reduction(data: DataShape, o: GMVAEOptions) -> int | None:
    """50 principal components above 100 features, as the density families, unless the options need the image.

    On all of MNIST 50 principal components cluster better than the dequantized pixels with the MLPs, in less time
    (section ``gmvae-mnist-pixels-pca`` of docs/benchmarks.md). ``--arch conv`` reads the image and
    ``--dequantize-noise epoch`` its integer levels, so they keep the pixels.
    """
    if o.arch == "conv" or o.dequantize_noise == "epoch":
        return None
    return principal_components(data)


FEW_FEATURES = 10
"""Up to this many features the default fit keeps the best of 3 restarts (:func:`_restarts`)."""


def _restarts(data: DataShape) -> int:
    """3 restarts on :data:`FEW_FEATURES` features or fewer, else 1.

    On a few features the encoder's first epochs decide which arms of a curved cluster end up together, and one run
    in 3 joins two of them: pinwheel's ACC is 0.995, 0.993 and 0.706 at x0.001, x1 and x1000 with one run and 0.998 at
    all three with the lowest loss of 3 (sections ``units`` and ``units-n-init-3`` of docs/benchmarks.md). On digits
    (64 pixels) the lowest loss of 3 picks a worse partition than the one run does (0.752 against 0.779), so images and
    other wide data keep one run.
    """
    return 3 if data.dim <= FEW_FEATURES else 1


def _plan(o: GMVAEOptions, data: DataShape, inference: Inference) -> Plan:
    """50 principal components above 100 features unless the options need the image (:func:`_reduction`); integer
    images dequantized once, unless afresh every epoch (``dequantize_noise="epoch"``); the image shape for
    ``arch="conv"`` and the levels for fresh noise (:func:`_data_options`); 100 epochs of Adam at 1e-3 on batches of
    128, 30 from :data:`LARGE` points on, 3 restarts on :data:`FEW_FEATURES` features or fewer (:func:`_restarts`);
    std annealing (:func:`_schedules`) and the autoencoder start."""
    o = _data_options(o, inference.given, data)
    epochs = 30 if data.n >= LARGE else 100
    training = Training(epochs=epochs, lr=1e-3, batch_size=128, n_init=_restarts(data))
    return Plan(
        options=o, training=training, pca=_reduction(data, o),
        dequantize=o.dequantize_noise == "off" and data.levels is not None, start=partial(_start, o=o),
        rescale=o.dequantize_noise == "off",  # fresh noise dequantizes the levels as read, every epoch
        schedules=partial(_schedules, o=o), step=_step(o), laplace_summary=False,
    )  # fmt: skip


FAMILY = register(
    Family(
        name="gmvae",
        description="Gaussian-mixture VAE with q(z|y,x): VIMCO, enumerated y (EnumY), NVIL or reweighted wake-sleep; "
        "std annealing",
        cite="Li et al. 2020 (NVISA)",
        options=GMVAEOptions,
        model=GMVAE,
        build=_build,
        default_guide="qzxy",
        default_loss="vimco",
        plan=_plan,
        criteria=("heldout",),
        criteria_note="log p(x) integrates z by importance sampling, so the held-out log-likelihood is an estimate; "
        "BIC, ICL and LOO are not offered",
    )
)
