r"""Gaussian mixture model with the cluster site enumerated.

.. math::
    y_n \sim \operatorname{Cat}(\pi), \qquad
    x_n \mid y_n = k \sim \mathcal N(\mu_k, \Sigma_k),

with :math:`\Sigma_k` diagonal (``covariance="diag"``) or full
(``covariance="full"``, through a Cholesky factor). The globals
:math:`\pi, \mu, \Sigma` are module parameters, so with the empty guide and
:class:`~pyro.infer.TraceEnum_ELBO` the loss is the exact negative marginal
log-likelihood :math:`-\sum_n \log \sum_k \pi_k \mathcal N(x_n; \mu_k, \Sigma_k)`
and training finds the maximum-likelihood estimate. A floor ``min_scale`` on the
standard deviations (on the Cholesky diagonal for full covariances) keeps the
likelihood bounded, like scikit-learn's ``reg_covar``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from ..contract import cluster_draws
from ..data.validation import check_data, check_n_clusters
from ..nets.component_scores import ComponentTable
from ..nets.kmeans import kmeans
from ..options import Options, option
from .family import DataShape, Family, Inference, Plan, Training, principal_components, register

__all__ = ["GaussianMixture"]


class GaussianMixture(PyroModule):
    """K-component Gaussian mixture, a Pyro model ``model(x, y=None, subsample=None)``.

    :param dim: number of features D.
    :param n_clusters: number of components K (>= 2).
    :param covariance: ``"diag"`` or ``"full"``.
    :param min_scale: lower bound on the component standard deviations.
    """

    def __init__(
        self, dim: int, n_clusters: int, covariance: Literal["diag", "full"] = "diag", min_scale: float = 1e-2
    ) -> None:
        super().__init__()
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        self.dim = int(dim)
        self.n_clusters = check_n_clusters(n_clusters)
        self.covariance = covariance
        self.min_scale = float(min_scale)
        k, d = self.n_clusters, self.dim
        self.logits = nn.Parameter(torch.zeros(k))
        self.loc = nn.Parameter(torch.randn(k, d))
        self.log_scale = nn.Parameter(torch.zeros(k, d))
        if covariance == "full":
            self.tril = nn.Parameter(torch.zeros(k, d, d))

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights (K,)."""
        return F.softmax(self.logits, -1)

    @property
    def scale(self) -> torch.Tensor:
        """Standard deviations (K, D) (the Cholesky diagonal for full covariances)."""
        return self.log_scale.exp() + self.min_scale

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        """What the ArviZ summary shows: weights, means, and standard deviations (diag) or covariances (full)."""
        spread = {"scale": self.scale} if self.covariance == "diag" else {"covariance": self.covariances}
        return {"weights": self.weights, "loc": self.loc, **spread}

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors (K, D, D) of the covariances."""
        if self.covariance == "diag":
            return torch.diag_embed(self.scale)
        return torch.tril(self.tril, -1) + torch.diag_embed(self.scale)

    @property
    def covariances(self) -> torch.Tensor:
        """Covariance matrices (K, D, D)."""
        s = self.scale_tril
        return s @ s.transpose(-1, -2)

    def component(self, k: torch.Tensor | slice = slice(None)) -> dist.TorchDistribution:
        """The Gaussian of component(s) ``k`` with event shape (D,)."""
        if self.covariance == "diag":
            return dist.Normal(self.loc[k], self.scale[k]).to_event(1)
        return dist.MultivariateNormal(self.loc[k], scale_tril=self.scale_tril[k])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        weights = self.weights
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            k = pyro.sample(
                "y", dist.Categorical(weights), obs=None if y is None else y[idx], infer={"enumerate": "parallel"}
            )
            # every component scored by one matrix product, not K x B x D broadcast terms (and their backward)
            xb = x[idx]
            table = ComponentTable(self.component_log_prob(xb), k, self.dim, self._sample_components)
            pyro.sample("x", table, obs=xb)

    def _sample_components(self, k: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
        return self.component(k).sample(sample_shape)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        r"""(N, K) :math:`\log \pi_k + \log \mathcal N(x_n; \mu_k, \Sigma_k)`, computed directly."""
        return self.weights.log() + self.component_log_prob(x)

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""(N, K) :math:`\log \mathcal N(x_n; \mu_k, \Sigma_k)`, computed directly.

        For full covariances the Mahalanobis terms come from one matrix product of ``x`` with
        the K whitening matrices :math:`L_k^{-1}` stacked side by side, instead of K triangular
        solves over the data; for diagonal ones from the expanded square
        :math:`\sum_d (x_d^2 - 2 x_d \mu_{kd} + \mu_{kd}^2) / \sigma_{kd}^2` (three matrix products in float64).
        """
        k, d = self.n_clusters, self.dim
        if self.covariance == "diag":
            scale = self.scale
            prec, x64 = scale.double().pow(-2), x.double()  # the expanded square, in float64 against cancellation
            loc = self.loc.double()
            maha = (x64.square() @ prec.T - 2 * x64 @ (loc * prec).T + (loc.square() * prec).sum(-1)).clamp(min=0)
            maha = maha.to(x.dtype)
            half_log_det = scale.log().sum(-1)
        else:
            tril = self.scale_tril
            eye = torch.eye(d, dtype=tril.dtype, device=tril.device).expand(k, d, d)
            white = torch.linalg.solve_triangular(tril, eye, upper=False)  # L_k^{-1}, (K, D, D)
            weight = white.transpose(1, 2).transpose(0, 1).reshape(d, k * d)
            bias = -(white @ self.loc[:, :, None]).reshape(k * d)
            z = torch.addmm(bias, x, weight).view(-1, k, d)  # L_k^{-1} (x_n - mu_k) for every k at once
            maha = torch.linalg.vector_norm(z, dim=-1).square()
            half_log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * maha - half_log_det - 0.5 * d * math.log(2 * math.pi)

    def em_statistics(self, x: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Weighted sufficient statistics of a chunk: :math:`N_k`, :math:`\sum_n r_{nk} x_n` and
        :math:`\sum_n r_{nk} x_n x_n^\top` (its diagonal for diagonal covariances), in float64.

        The products run in the data's precision about the mixture's current mean :math:`c`
        and are shifted back in float64, so that a large common offset does not cancel.
        """
        k, d = self.n_clusters, self.dim
        c = self.weights.detach() @ self.loc.detach()
        xc = x - c
        n = r.sum(0).double()
        sxc = r.T @ xc
        c64, sxc64 = c.double(), sxc.double()
        if self.covariance == "diag":
            sxx = (r.T @ xc.square()).double() + 2 * sxc64 * c64 + n[:, None] * c64.square()
        else:
            weighted = (r[:, :, None] * xc[:, None, :]).view(-1, k * d)  # (N, K*D): r_nk (x_n - c)
            sxx = (weighted.T @ xc).view(k, d, d).double()
            sxx = sxx + sxc64[:, :, None] * c64 + c64[:, None] * sxc64[:, None, :] + n[:, None, None] * torch.outer(c64, c64)
        return {"n": n, "sx": sxc64 + n[:, None] * c64, "sxx": sxx}

    def em_update(self, stats: dict[str, torch.Tensor]) -> None:
        r"""The M-step (Bishop 2006, eqs. 9.24-9.26): :math:`\pi_k = N_k / N`,
        :math:`\mu_k = \sum_n r_{nk} x_n / N_k`, :math:`\Sigma_k = \sum_n r_{nk} x_n x_n^\top / N_k
        - \mu_k \mu_k^\top + s^2 I` with ``min_scale`` :math:`s`, so that every standard deviation (Cholesky
        diagonal) stays at or above the floor, as in training by gradient. A component that holds no
        point keeps its mean and covariance."""
        n = stats["n"]
        alive = n > 1e-8
        nk = n.clamp(min=1e-10)
        mu = stats["sx"] / nk[:, None]
        floor = self.min_scale**2
        if self.covariance == "diag":
            var = (stats["sxx"] / nk[:, None] - mu.square()).clamp(min=0) + floor
            diag = var.sqrt()
        else:
            cov = stats["sxx"] / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
            cov = (cov + cov.transpose(1, 2)) / 2 + floor * torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
            chol, info = torch.linalg.cholesky_ex(cov)
            alive = alive & (info == 0)
            diag = chol.diagonal(dim1=-2, dim2=-1)
            self.tril[alive] = torch.tril(chol, -1)[alive].to(self.tril.dtype)
        self.logits.copy_(nk.log() - n.sum().log())
        self.loc[alive] = mu[alive].to(self.loc.dtype)
        self.log_scale[alive] = (diag - self.min_scale).clamp(min=1e-12).log()[alive].to(self.log_scale.dtype)

    def n_parameters(self) -> int:
        """Free parameters, for BIC/AIC: K-1 weights, K*D means, and the covariances."""
        k, d = self.n_clusters, self.dim
        cov = k * d if self.covariance == "diag" else k * d * (d + 1) // 2
        return (k - 1) + k * d + cov

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> GaussianMixture:
        """k-means++ seeding plus Lloyd iterations; set means, weights and (co)variances from the clusters."""
        x = check_data(x, dim=self.dim).to(self.loc.device)
        check_n_clusters(self.n_clusters, x.shape[0])
        g = torch.Generator().manual_seed(seed)
        centres, labels = kmeans(x.cpu(), self.n_clusters, g)
        labels = labels.to(x.device)
        counts = torch.bincount(labels, minlength=self.n_clusters).to(x.dtype)
        self.loc.copy_(centres.to(x.device))
        self.logits.copy_((counts + 1).log())
        eye = torch.eye(self.dim, device=x.device)
        floor = self.min_scale**2 + 1e-6
        for j in range(self.n_clusters):
            xj = x[labels == j]
            diff = xj - self.loc[j] if len(xj) > 1 else x - self.loc[j]
            cov = diff.T @ diff / len(diff)
            if self.covariance == "diag":
                std = cov.diagonal().clamp(min=floor).sqrt()
                self.log_scale[j] = (std - self.min_scale).clamp(min=1e-6).log()
            else:
                chol = torch.linalg.cholesky(cov + floor * eye)
                diag = chol.diagonal()
                self.log_scale[j] = (diag - self.min_scale).clamp(min=1e-6).log()
                self.tril[j] = torch.tril(chol, -1)
        return self

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, clusters: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points and their components (the given ``clusters``, or drawn from the weights)."""
        k = cluster_draws(self.weights, n, generator, clusters).to(self.loc.device)
        eps = torch.randn(n, self.dim, generator=generator).to(self.loc.device)
        x = self.loc[k] + (self.scale_tril[k] @ eps[..., None]).squeeze(-1)
        return x, k

@dataclass(frozen=True)
class GMMOptions(Options):
    """Options of the Gaussian mixture."""

    covariance: Literal["diag", "full"] = option("full", "covariance of each component: diagonal or full (Cholesky)")


def _build(dim: int, k: int, o: GMMOptions) -> GaussianMixture:
    return GaussianMixture(dim, k, covariance=o.covariance)


def _plan(o: GMMOptions, data: DataShape, inference: Inference) -> Plan:
    """50 principal components above 100 features; closed-form EM iterates over chunks of 10000 points, the
    gradient losses take minibatches of 2048 at a decaying learning rate."""
    if inference.closed_form:
        # one epoch is one EM iteration over chunks of 10000 points; tol 1e-4 stops long before 300 iterations at
        # their ACC; on small standardised tables, where the loss per point is near 0, the tolerance is absolute
        # (mixzoo.training.convergence), like scikit-learn's
        training = Training(epochs=300, lr=None, batch_size=10000, tol=1e-4)
    elif o.covariance == "full":  # Cholesky factors are badly conditioned for Adam at lr 0.1
        training = Training(epochs=300, lr=0.01, lr_decay=0.99, batch_size=2048, tol=1e-4)
    else:  # tol 1e-4 stops digits well before 300 epochs at the same ACC
        training = Training(epochs=300, lr=0.1, lr_decay=0.98, batch_size=2048, tol=1e-4)
    return Plan(options=o, training=training, pca=principal_components(data))


FAMILY = register(
    Family(
        name="gmm",
        description="Gaussian mixture, full/diag covariance, maximum likelihood by closed-form EM or gradient steps",
        cite="the reference",
        options=GMMOptions,
        model=GaussianMixture,
        build=_build,
        default_guide="posterior",
        default_loss="em",
        plan=_plan,
    )
)
