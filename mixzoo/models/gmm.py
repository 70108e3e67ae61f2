r"""Gaussian mixture model with the cluster site enumerated.

.. math::
    y_n \sim \operatorname{Cat}(\pi), \qquad
    x_n \mid y_n = k \sim \mathcal N(\mu_k, \Sigma_k).

The covariances take one of six structures (:data:`~mixzoo.models.gmm.COVARIANCES`), scikit-learn's four and two more that cost nothing
once those exist; in the volume/shape/orientation notation of mclust (Fraley and Raftery 2002, Table 1):

============================  =======  ========================================================
``covariance``                mclust   :math:`\Sigma_k`
============================  =======  ========================================================
``"tied-spherical"``          EII      :math:`\sigma^2 I`, one for all components
``"spherical"``               VII      :math:`\sigma_k^2 I`
``"tied-diag"``               EEI      :math:`\operatorname{diag}(\sigma^2)`, one for all components
``"diag"``                    VVI      :math:`\operatorname{diag}(\sigma_k^2)`
``"tied"``                    EEE      :math:`\Sigma`, full, one for all components
``"full"``                    VVV      :math:`\Sigma_k`, full, through a Cholesky factor
============================  =======  ========================================================

The globals :math:`\pi, \mu, \Sigma` are module parameters, so with the empty guide and
:class:`~pyro.infer.TraceEnum_ELBO` the loss is the exact negative marginal
log-likelihood :math:`-\sum_n \log \sum_k \pi_k \mathcal N(x_n; \mu_k, \Sigma_k)`
and training finds the maximum-likelihood estimate; closed-form EM does the same for every structure. A floor
``min_scale`` on the standard deviations (on the Cholesky diagonal for full covariances) keeps the likelihood
bounded, like scikit-learn's ``reg_covar``; the fit sees rescaled features (:mod:`mixzoo.app.planning`), so the floor
is relative to the data's spread.
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
from ..nets.kmeans import kmeans, start_count
from ..nets.priors import weak_priors
from ..options import Options, option
from .family import DataShape, Family, Inference, Plan, Training, principal_components, register

__all__ = ["GaussianMixture", "COVARIANCES", "MCLUST_NAMES"]

Covariance = Literal["full", "diag", "spherical", "tied", "tied-diag", "tied-spherical"]
COVARIANCES: tuple[str, ...] = ("full", "diag", "spherical", "tied", "tied-diag", "tied-spherical")
"""The covariance structures, most flexible first."""

MCLUST_NAMES = {"tied-spherical": "EII", "spherical": "VII", "tied-diag": "EEI", "diag": "VVI", "tied": "EEE", "full": "VVV"}
"""Each structure's name in mclust."""


class GaussianMixture(PyroModule):
    """K-component Gaussian mixture, a Pyro model ``model(x, y=None, subsample=None)``.

    :param dim: number of features D.
    :param n_clusters: number of components K (1 is a single Gaussian, a density model).
    :param covariance: one of :data:`~mixzoo.models.gmm.COVARIANCES`.
    :param min_scale: lower bound on the component standard deviations.
    """

    def __init__(self, dim: int, n_clusters: int, covariance: Covariance = "diag", min_scale: float = 1e-2) -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
        self.dim = int(dim)
        self.n_clusters = check_n_clusters(n_clusters)
        self.covariance = covariance
        self.min_scale = float(min_scale)
        k, d = self.n_clusters, self.dim
        self.tied = covariance.startswith("tied")
        self.full = covariance in ("full", "tied")
        spherical = covariance.endswith("spherical")
        kc = 1 if self.tied else k
        self.logits = nn.Parameter(torch.zeros(k))
        self.loc = nn.Parameter(torch.randn(k, d))
        self.log_scale = nn.Parameter(torch.zeros(kc, 1 if spherical else d))
        if self.full:
            self.tril = nn.Parameter(torch.zeros(kc, d, d))

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights (K,)."""
        return F.softmax(self.logits, -1)

    @property
    def scale(self) -> torch.Tensor:
        """Standard deviations (K, D) (the Cholesky diagonal for full covariances)."""
        return (self.log_scale.exp() + self.min_scale).expand(self.n_clusters, self.dim)

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        """What the ArviZ summary shows: weights, means, and standard deviations (diagonal structures) or
        covariances (full ones)."""
        spread = {"covariance": self.covariances} if self.full else {"scale": self.scale}
        return {"weights": self.weights, "loc": self.loc, **spread}

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors (K, D, D) of the covariances."""
        if not self.full:
            return torch.diag_embed(self.scale)
        return (torch.tril(self.tril, -1) + torch.diag_embed(self.log_scale.exp() + self.min_scale)).expand(
            self.n_clusters, self.dim, self.dim
        )

    @property
    def covariances(self) -> torch.Tensor:
        """Covariance matrices (K, D, D)."""
        s = self.scale_tril
        return s @ s.transpose(-1, -2)

    def component(self, k: torch.Tensor | slice = slice(None)) -> dist.TorchDistribution:
        """The Gaussian of component(s) ``k`` with event shape (D,)."""
        if not self.full:
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
        if not self.full:
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
        if not self.full:
            sxx = (r.T @ xc.square()).double() + 2 * sxc64 * c64 + n[:, None] * c64.square()
        else:
            weighted = (r[:, :, None] * xc[:, None, :]).view(-1, k * d)  # (N, K*D): r_nk (x_n - c)
            sxx = (weighted.T @ xc).view(k, d, d).double()
            sxx = sxx + sxc64[:, :, None] * c64 + c64[:, None] * sxc64[:, None, :] + n[:, None, None] * torch.outer(c64, c64)
        return {"n": n, "sx": sxc64 + n[:, None] * c64, "sxx": sxx}

    def em_update(self, stats: dict[str, torch.Tensor]) -> None:
        r"""The M-step (Bishop 2006, eqs. 9.24-9.26): :math:`\pi_k = N_k / N`,
        :math:`\mu_k = \sum_n r_{nk} x_n / N_k`, :math:`S_k = \sum_n r_{nk} x_n x_n^\top / N_k - \mu_k \mu_k^\top`;
        :math:`\Sigma_k = S_k + s^2 I` with ``min_scale`` :math:`s` (so that every standard deviation, or Cholesky
        diagonal, stays at or above the floor, as in training by gradient), restricted to the structure: its diagonal
        (diagonal structures), the mean of its diagonal (spherical ones), and for the tied ones the within-cluster
        scatter pooled over components, :math:`\sum_k N_k S_k / N` (Celeux and Govaert 1995). A component that holds
        no point keeps its mean and covariance (:meth:`reseed_empty` moves it)."""
        n = stats["n"]
        alive = n > 1e-8
        nk = n.clamp(min=1e-10)
        mu = stats["sx"] / nk[:, None]
        floor = self.min_scale**2
        if not self.full:
            var = (stats["sxx"] / nk[:, None] - mu.square()).clamp(min=0)
            if self.tied:
                var = (n[:, None] * var).sum(0, keepdim=True) / n.sum()
            if self.log_scale.shape[-1] == 1:  # spherical
                var = var.mean(-1, keepdim=True)
            diag = (var + floor).sqrt()
        else:
            cov = stats["sxx"] / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
            if self.tied:
                cov = (n[:, None, None] * cov).sum(0, keepdim=True) / n.sum()
            cov = (cov + cov.transpose(1, 2)) / 2 + floor * torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
            chol, info = torch.linalg.cholesky_ex(cov)
            ok = info == 0
            diag = chol.diagonal(dim1=-2, dim2=-1)
            if self.tied:
                if bool(ok.all()):
                    self.tril.copy_(torch.tril(chol, -1).to(self.tril.dtype))
            else:
                alive = alive & ok
                self.tril[alive] = torch.tril(chol, -1)[alive].to(self.tril.dtype)
        self.logits.copy_(nk.log() - n.sum().log())
        self.loc[alive] = mu[alive].to(self.loc.dtype)
        spread = (diag - self.min_scale).clamp(min=1e-12).log().to(self.log_scale.dtype)
        if self.tied:
            if bool(torch.isfinite(spread).all()):
                self.log_scale.copy_(spread)
        else:
            self.log_scale[alive] = spread[alive]

    @torch.no_grad()
    def reseed_empty(self, n: torch.Tensor, worst: torch.Tensor) -> int:
        r"""Move each component that held no point (``n``: the last E-step's :math:`N_k`) to one of the ``worst``
        explained points (rows of lowest :math:`\log p(x)`, worst first), with the mean spread of the others and a
        weight of one point, as k-means implementations relocate an empty cluster; returns how many moved."""
        dead = torch.nonzero(n <= 1e-8).flatten().tolist()[: len(worst)]
        if not dead or len(dead) == self.n_clusters:
            return 0
        total = float(n.sum())
        for i, j in enumerate(dead):
            self.loc[j] = worst[i].to(self.loc.dtype)
            if not self.tied:
                others = [o for o in range(self.n_clusters) if o not in dead]
                self.log_scale[j] = self.log_scale[others].mean(0)
                if self.full:
                    self.tril[j] = 0.0
            self.logits[j] = math.log(1.0 / max(total, 1.0)) + torch.logsumexp(self.logits, 0)
        return len(dead)

    def n_parameters(self) -> int:
        """Free parameters, for BIC/AIC: K-1 weights, K*D means, and those of the covariance structure."""
        k, d = self.n_clusters, self.dim
        per = d * (d + 1) // 2 if self.full else int(self.log_scale.shape[-1])
        return (k - 1) + k * d + (1 if self.tied else k) * per

    def parameter_priors(self) -> dict[str, dist.Distribution]:
        r"""Weakly informative priors on the unconstrained parameters, in the rescaled units the fit sees (each
        feature's spread about 1), for sampling the posterior with NUTS (:mod:`mixzoo.inference.nuts`):
        logits :math:`\sim \mathcal N(0, 1)` (a logistic-normal prior on the weights), means
        :math:`\sim \mathcal N(0, 3^2)`, log standard deviations :math:`\sim \mathcal N(0, 2^2)` (a factor
        :math:`e^2` either way of the data's spread at two standard deviations) and the Cholesky factor's off-diagonal
        entries :math:`\sim \mathcal N(0, 1)`."""
        return weak_priors(self)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> GaussianMixture:
        """The best of several k-means++ starts with Lloyd iterations (lowest within-cluster sum of squares,
        :func:`~mixzoo.nets.kmeans.start_count` of them), then weights, means and the structure's covariances from
        its clusters."""
        x = check_data(x, dim=self.dim).to(self.loc.device)
        check_n_clusters(self.n_clusters, x.shape[0])
        g = torch.Generator().manual_seed(seed)
        centres, labels = kmeans(x.cpu(), self.n_clusters, g, n_init=start_count(*x.shape, self.n_clusters))
        labels = labels.to(x.device)
        counts = torch.bincount(labels, minlength=self.n_clusters).to(torch.float64)
        self.loc.copy_(centres.to(x.device))
        self.logits.copy_((counts + 1).log())
        r = torch.nn.functional.one_hot(labels, self.n_clusters).to(x.dtype)
        stats = GaussianMixture.em_statistics(self, x, r)  # the class's own, also where a subclass opts out of EM
        x64 = x.double()
        spread = torch.cov(x64.T, correction=0).reshape(self.dim, self.dim) if self.full else x64.var(0, unbiased=False)
        for j in torch.nonzero(counts < 2).flatten().tolist():  # a cluster of one point takes the data's spread
            c = self.loc[j].double()
            stats["n"][j], stats["sx"][j] = 1.0, c
            stats["sxx"][j] = spread + (torch.outer(c, c) if self.full else c.square())
        GaussianMixture.em_update(self, stats)
        self.loc.copy_(centres.to(x.device))  # the k-means centres, and the k-means weights
        self.logits.copy_((counts + 1).log())
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

    covariance: Covariance = option(
        "full", "covariance structure: full, diag, spherical, each component its own; tied, tied-diag, tied-spherical, "
        "one for all (mclust's VVV, VVI, VII, EEE, EEI, EII)"
    )


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
    elif o.covariance in ("full", "tied"):
        # Adam moves every Cholesky entry by about lr whatever its scale: an image's near-constant pixels (standard
        # deviation near the floor) lose their fit at lr 0.01 within a few steps; the k-means start is close
        training = Training(epochs=300, lr=0.001, lr_decay=0.99, batch_size=2048, tol=1e-4)
    else:  # on data rescaled to unit spread, 0.1 scatters digits (ACC 0.70 against 0.75 at 0.02, diagonal)
        training = Training(epochs=300, lr=0.02, lr_decay=0.98, batch_size=2048, tol=1e-4)
    return Plan(options=o, training=training, pca=principal_components(data))


FAMILY = register(
    Family(
        name="gmm",
        description="Gaussian mixture, six covariance structures, maximum likelihood by closed-form EM or gradient steps",
        cite="the reference",
        options=GMMOptions,
        model=GaussianMixture,
        build=_build,
        default_guide="posterior",
        default_loss="em",
        plan=_plan,
        structure="covariance",
    )
)
