r"""Gaussian-mixture variational autoencoder (Li et al. 2020).

.. math::
    y \sim \operatorname{Cat}(1/K), \qquad
    z \mid y \sim \mathcal N\big(\mu_y, (\operatorname{softplus}(s_y) + 1)^2\big), \qquad
    x \mid z \sim \mathcal N\big(f_\mu(z), \max(f_\sigma(z), \epsilon_x)^2\big)

(or :math:`\operatorname{Bernoulli}(\operatorname{sigmoid} f(z))` for binary data),
with learnable per-cluster :math:`\mu_y, s_y` and MLP decoders. The lower bound
:math:`\epsilon_x` on the decoder's standard deviation is annealed from 1 towards
1e-4 during training (section II-D) by :class:`~mixzoo.inference.annealing.StepDecay`.
The guide (:mod:`mixzoo.guides.gmvae`) samples or enumerates ``"y"``, so the same
pair trains under VIMCO, ``TraceEnum_ELBO`` (the paper's EnumY) and
``TraceGraph_ELBO`` (NVIL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from ..family import DataShape, Family, Training, register
from ..guides import GMVAEGuide
from ..inference.annealing import StepDecay
from ..nets import ScalarState, mlp
from ..options import Options, option

__all__ = ["GMVAE", "pretrain_autoencoder"]


class GMVAE(PyroModule):
    """Pyro model ``model(x, y=None, subsample=None)`` of the Gaussian-mixture VAE.

    :param dim: data dimension D.
    :param n_clusters: number of clusters K.
    :param latent: dimension of z.
    :param hidden: decoder hidden sizes.
    :param likelihood: ``"gaussian"`` or ``"bernoulli"``.
    """

    eps_x = ScalarState()
    """Lower bound on the decoder's standard deviation (annealed; saved with the module's state)."""

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        latent: int = 10,
        hidden: Sequence[int] = (256, 256),
        likelihood: Literal["gaussian", "bernoulli"] = "gaussian",
    ) -> None:
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        self.dim, self.n_clusters, self.latent, self.likelihood = int(dim), int(n_clusters), int(latent), likelihood
        self.mu_y = nn.Parameter(torch.randn(n_clusters, latent) * 2.0)
        self.s_y = nn.Parameter(torch.full((n_clusters, latent), -3.0))
        out = 2 * dim if likelihood == "gaussian" else dim
        self.decoder = mlp([latent, *hidden, out])
        self.eps_x = 1.0

    def prior_scale(self) -> torch.Tensor:
        return F.softplus(self.s_y) + 1.0

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        loc, raw = out[..., : self.dim], out[..., self.dim :]
        return dist.Normal(loc, F.softplus(raw) + self.eps_x).to_event(1)  # an additive floor keeps the gradient (Li et al. 2020)

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
            k = torch.as_tensor(clusters, dtype=torch.long).cpu()
            if k.shape != (n,) or bool(((k < 0) | (k >= self.n_clusters)).any()):
                raise ValueError(f"clusters must be {n} integers in [0, {self.n_clusters}), got shape {tuple(k.shape)}")
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


@torch.no_grad()
def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


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
    :math:`q(y \\mid x)` the GMM's responsibilities for a few epochs."""
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
    with torch.no_grad():
        model.mu_y.copy_(torch.as_tensor(gmm.means_, dtype=x.dtype))
        std = torch.as_tensor(gmm.covariances_, dtype=x.dtype).sqrt()
        model.s_y.copy_(_inverse_softplus((std - 1).clamp(min=1e-3)))
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
    hidden: tuple[int, ...] = option((256, 256), "hidden sizes of the encoder and decoder MLPs", low=1)
    likelihood: Literal["gaussian", "bernoulli"] = option("gaussian", "p(x|z)")
    anneal_every: int = option(10, "halve the std floors every N epochs (0: no annealing)", low=0)
    anneal_start: float = option(1.0, "the std floors' first value (the paper's 1; halved from there)", low=1e-4)
    pretrain: int = option(20, "autoencoder pretraining epochs before the GMM start (0: off)", low=0)


def _build(dim: int, k: int, guide: str, o: GMVAEOptions) -> tuple[nn.Module, nn.Module]:
    model = GMVAE(dim, k, latent=o.latent, hidden=o.hidden, likelihood=o.likelihood)
    return model, GMVAEGuide(dim, k, latent=o.latent, hidden=o.hidden, structured=guide == "qzxy")


def _schedules(model: nn.Module, guide: nn.Module, o: GMVAEOptions) -> list[Callable[[int], None]]:
    if o.anneal_every <= 0:  # no annealing: the floors stay at their final value
        model.eps_x = guide.eps_z = 1e-4
        return []
    return [
        StepDecay(model, "eps_x", o.anneal_start, o.anneal_every, 0.5, 1e-4),
        StepDecay(guide, "eps_z", o.anneal_start, o.anneal_every, 0.5, 1e-4),
    ]


def _initialize(model: nn.Module, guide: nn.Module, x: Any, seed: int, o: GMVAEOptions, loss: Any = None) -> None:
    if o.pretrain > 0:
        pretrain_autoencoder(model, guide, x, epochs=o.pretrain, seed=seed)  # type: ignore[arg-type]


def _recipe(o: GMVAEOptions, data: DataShape | None) -> Training:
    return Training(epochs=100, lr=1e-3, batch_size=128)


FAMILY = register(
    Family(
        name="gmvae",
        description="Gaussian-mixture VAE with q(z|y,x): VIMCO, enumerated y (EnumY) or NVIL; std annealing",
        cite="Li et al. 2020 (NVISA)",
        options=GMVAEOptions,
        build=_build,
        guides=("qzxy", "mean-field"),
        losses=("vimco", "trace-enum", "trace-graph"),
        recipe=_recipe,
        schedules=_schedules,
        initialize=_initialize,
        quick={"data": "digits", "epochs": 2, "subsample": 300, "options": {"pretrain": 1}},
    )
)
