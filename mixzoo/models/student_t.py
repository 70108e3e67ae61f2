r"""Mixture of multivariate Student-t distributions (diagonal scales) with the cluster site enumerated.

.. math::
    y_n \sim \operatorname{Cat}(\pi), \qquad
    x_n \mid y_n = k \sim \prod_{d=1}^{D} t_{\nu_k}(\mu_{kd}, \sigma_{kd}),

where :math:`t_\nu(\mu, \sigma)` has the density

.. math::
    t_\nu(x; \mu, \sigma) = \frac{\Gamma(\frac{\nu + 1}{2})}{\Gamma(\frac{\nu}{2})\sqrt{\nu\pi}\,\sigma}
    \Bigl(1 + \frac{(x - \mu)^2}{\nu \sigma^2}\Bigr)^{-\frac{\nu + 1}{2}}.

Each component has its own degrees of freedom :math:`\nu_k` shared by its D features, so a
component with small :math:`\nu_k` has heavy tails and absorbs outliers that a Gaussian
mixture would explain with extra components; as :math:`\nu_k \to \infty` it becomes the
Gaussian :math:`\mathcal N(\mu_k, \operatorname{diag}\sigma_k^2)`. This is the robust mixture
of Peel and McLachlan (2000), "Robust mixture modelling using the t distribution",
*Statistics and Computing* 10, 339-348, with diagonal scale matrices (a product of
univariate t's per component rather than one multivariate t with a joint scale variable).

The globals :math:`\pi, \mu, \sigma, \nu` are module parameters, so with the empty guide and
:class:`~pyro.infer.TraceEnum_ELBO` the loss is the exact negative marginal log-likelihood
:math:`-\sum_n \log \sum_k \pi_k\, p_k(x_n)` and training finds the maximum-likelihood
estimate. :math:`\nu_k` is learned in ``[min_df, max_df]`` through a sigmoid (the cap keeps
the float32 log-gamma differences of the density accurate on near-Gaussian data), or fixed
for every component with ``df``. A floor ``min_scale`` on :math:`\sigma` keeps the likelihood
bounded, as in :class:`~mixzoo.models.gmm.GaussianMixture`.
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
from torch.distributions import constraints

from ..contract import cluster_draws
from ..data.validation import check_data, check_n_clusters
from ..errors import MixzooInputError
from ..nets.kmeans import kmeans
from ..nets.priors import weak_priors
from ..options import Options, option
from .family import DataShape, Family, Inference, Plan, Training, principal_components, register

__all__ = ["StudentTMixture", "DiagonalStudentT", "SCALE_STRUCTURES"]

INITIAL_DF = 5.0
"""Degrees of freedom at the start of training (moderately heavy tails), when inside the learned range."""

SCALE_STRUCTURES = ("diag", "spherical", "tied-diag", "tied-spherical")
"""The scale structures of the product of univariate t's: each component's own per-feature scales, or one scale for
all features, or those shared by all components (the diagonal structures of the Gaussian mixture; a full scale
matrix needs the multivariate t, which this product is not)."""

INIT_STARTS = 5
"""k-means runs tried by :meth:`StudentTMixture.initialize`."""


class DiagonalStudentT(dist.TorchDistribution):
    """Independent Student-t's over the last dimension, with one ``df`` per batch entry.

    The same density as ``dist.StudentT(df[..., None], loc, scale).to_event(1)``, but cheaper
    inside a data plate: Pyro expands a site's distribution to the plate's batch shape, and
    torch's ``StudentT`` then evaluates its log-gamma normaliser (and, backwards, digamma) on
    every (component, point, feature) entry. Here the normaliser is computed once per
    component from the unexpanded parameters (Pyro wraps this class in
    :class:`~pyro.distributions.torch_distribution.ExpandedDistribution`), which makes a
    training step on 64-dimensional data several times faster.

    :param df: degrees of freedom, shape ``batch_shape``.
    :param loc: locations, shape ``batch_shape + (D,)``.
    :param scale: scales, shape ``batch_shape + (D,)``.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.independent(constraints.real, 1),
        "scale": constraints.independent(constraints.positive, 1),
    }
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(
        self, df: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool | None = None
    ) -> None:
        batch_shape = torch.broadcast_shapes(df.shape, loc.shape[:-1], scale.shape[:-1])
        event_shape = torch.broadcast_shapes(loc.shape[-1:], scale.shape[-1:])
        self.df, self.loc, self.scale = df, loc, scale
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        df = self.df
        z = (value - self.loc) / self.scale
        kernel = torch.log1p(z.pow(2) / df.unsqueeze(-1)).sum(-1)
        d = self.event_shape[0]
        norm = self.scale.log().sum(-1) + d * (
            0.5 * torch.log(df * math.pi) + torch.lgamma(0.5 * df) - torch.lgamma(0.5 * (df + 1))
        )
        return -0.5 * (df + 1) * kernel - norm

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = self.batch_shape + self.event_shape
        t = torch.distributions.StudentT(self.df.unsqueeze(-1).expand(shape)).rsample(torch.Size(sample_shape))
        return self.loc + self.scale * t


class StudentTMixture(PyroModule):
    """K-component mixture of Student-t distributions, a Pyro model ``model(x, y=None, subsample=None)``.

    :param dim: number of features D.
    :param n_clusters: number of components K (>= 2).
    :param df: fixed degrees of freedom of every component, or ``None`` to learn one per component.
    :param min_df: smallest learned degrees of freedom.
    :param max_df: largest learned degrees of freedom (beyond it the component is Gaussian in all but name).
    :param min_scale: lower bound on the component scales.
    """

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        df: float | None = None,
        min_df: float = 1.0,
        max_df: float = 100.0,
        min_scale: float = 1e-2,
        scales: str = "diag",
    ) -> None:
        super().__init__()
        if scales not in SCALE_STRUCTURES:
            raise MixzooInputError(f"scales must be one of {', '.join(SCALE_STRUCTURES)}, got {scales!r}.")
        if df is not None and not (math.isfinite(df) and df > 0):
            raise MixzooInputError(f"df must be a positive number (or None to learn it), got {df!r}.")
        if not (0 < min_df < max_df and math.isfinite(max_df)):
            raise MixzooInputError(f"need 0 < min_df < max_df < inf, got min_df={min_df!r}, max_df={max_df!r}.")
        self.dim = int(dim)
        self.n_clusters = check_n_clusters(n_clusters)
        self.fixed_df = None if df is None else float(df)
        self.min_df, self.max_df = float(min_df), float(max_df)
        self.min_scale = float(min_scale)
        self.scales = scales
        k, d = self.n_clusters, self.dim
        self.logits = nn.Parameter(torch.zeros(k))
        self.loc = nn.Parameter(torch.randn(k, d))
        self.log_scale = nn.Parameter(torch.zeros(1 if scales.startswith("tied") else k, 1 if scales.endswith("spherical") else d))
        if self.fixed_df is None:
            self.df_logit = nn.Parameter(torch.full((k,), self._df_logit(self._initial_df())))

    def _initial_df(self) -> float:
        return INITIAL_DF if self.min_df < INITIAL_DF < self.max_df else (self.min_df + self.max_df) / 2

    def _df_logit(self, df: float) -> float:
        p = (df - self.min_df) / (self.max_df - self.min_df)
        return math.log(p / (1 - p))

    @property
    def learns_df(self) -> bool:
        """Whether the degrees of freedom are parameters (``df=None``)."""
        return self.fixed_df is None

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights (K,)."""
        return F.softmax(self.logits, -1)

    def parameter_priors(self) -> dict[str, dist.Distribution]:
        r"""The Gaussian mixture's weakly informative priors (:meth:`GaussianMixture.parameter_priors
        <mixzoo.models.gmm.GaussianMixture.parameter_priors>`), and :math:`\mathcal N(0, 1.5^2)` on the logit of
        the degrees of freedom in ``[min_df, max_df]`` (close to uniform there), for NUTS."""
        return weak_priors(self)

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        """What the ArviZ summary shows: weights, locations, scales and degrees of freedom."""
        return {"weights": self.weights, "loc": self.loc, "scale": self.scale, "df": self.df}

    @property
    def scale(self) -> torch.Tensor:
        """Scales (K, D) of the components (not standard deviations: the variance is scale^2 df/(df-2))."""
        return (self.log_scale.exp() + self.min_scale).expand(self.n_clusters, self.dim)

    @property
    def df(self) -> torch.Tensor:
        """Degrees of freedom (K,) of the components."""
        if self.fixed_df is None:
            return self.min_df + (self.max_df - self.min_df) * torch.sigmoid(self.df_logit)
        return self.loc.new_full((self.n_clusters,), self.fixed_df)

    def component(self, k: torch.Tensor | slice = slice(None)) -> DiagonalStudentT:
        """The Student-t of component(s) ``k`` with event shape (D,)."""
        return DiagonalStudentT(self.df[k], self.loc[k], self.scale[k])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            k = pyro.sample(
                "y",
                dist.Categorical(logits=self.logits),
                obs=None if y is None else y[idx],
                infer={"enumerate": "parallel"},
            )
            pyro.sample("x", self.component(k), obs=x[idx])

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log p_k(x_n)` (also draws the density plot of a 2-D run)."""
        return self.component().log_prob(x.to(self.loc.device)[:, None, :])

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log \\pi_k + \\log p_k(x_n)`, computed directly."""
        return F.log_softmax(self.logits, -1) + self.component_log_prob(x)

    def n_parameters(self) -> int:
        """Free parameters, for BIC/AIC: K-1 weights, K*D locations, the scales of the structure and K learned
        degrees of freedom."""
        k, d = self.n_clusters, self.dim
        return (k - 1) + k * d + self.log_scale.numel() + (k if self.learns_df else 0)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0, n_starts: int = INIT_STARTS) -> StudentTMixture:
        """k-means++ seeding plus Lloyd iterations, ``n_starts`` times; keep the start the t mixture likes best.

        Each start sets the locations to the k-means centres, the weights to the cluster sizes and each
        scale to the cluster's standard deviation shrunk by :math:`\\sqrt{(\\nu_0 - 2)/\\nu_0}` (so that a t
        with the starting :math:`\\nu_0` has the cluster's variance). On heavy-tailed data k-means++
        tends to spend a centre on a single far outlier (its squared distance dominates the sum of
        squares); such a start has a low t-mixture log-likelihood, so the start with the highest
        log-likelihood of ``x`` is kept, rather than the one with the smallest sum of squares.
        """
        x = check_data(x, dim=self.dim).to(self.loc.device)
        check_n_clusters(self.n_clusters, x.shape[0])
        if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
            raise MixzooInputError(f"n_starts must be a positive integer, got {n_starts!r}.")
        g = torch.Generator().manual_seed(seed)
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None
        for _ in range(n_starts):
            centres, labels = kmeans(x.cpu(), self.n_clusters, g)
            centres, labels = centres.to(x.device), labels.to(x.device)
            self._set_from_clusters(x, centres, labels)
            score = sum(float(self.log_joint(chunk).logsumexp(-1).sum()) for chunk in x.split(4096))
            if best is None or score > best[0]:
                best = (score, centres, labels)
        assert best is not None
        self._set_from_clusters(x, best[1], best[2])
        return self

    def _set_from_clusters(self, x: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor) -> None:
        counts = torch.bincount(labels, minlength=self.n_clusters).to(x.dtype)
        self.loc.copy_(centres)
        self.logits.copy_((counts + 1).log())
        df0 = self.fixed_df if self.fixed_df is not None else self._initial_df()
        shrink = math.sqrt((df0 - 2) / df0) if df0 > 2 else 1.0
        floor = self.min_scale**2 + 1e-6
        var = torch.stack([
            ((x[labels == j] if int(counts[j]) > 1 else x) - self.loc[j]).pow(2).mean(0) for j in range(self.n_clusters)
        ])  # fmt: skip
        if self.scales.startswith("tied"):
            var = (counts[:, None] * var).sum(0, keepdim=True) / counts.sum()
        if self.scales.endswith("spherical"):
            var = var.mean(-1, keepdim=True)
        std = var.clamp(min=floor).sqrt() * shrink
        self.log_scale.copy_((std - self.min_scale).clamp(min=1e-6).log())
        if self.fixed_df is None:
            self.df_logit.fill_(self._df_logit(df0))

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, clusters: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points and their components (the given ``clusters``, or drawn from the weights).

        A t draw is :math:`\\mu + \\sigma z / \\sqrt{g / \\nu}` with :math:`z \\sim \\mathcal N(0, 1)` and
        :math:`g \\sim \\chi^2_\\nu`; the chi-square draws come from torch's global generator, reseeded
        from ``generator`` inside :func:`torch.random.fork_rng` so that the same ``generator`` gives
        the same sample and the global state is left alone.
        """
        device = self.loc.device
        k = cluster_draws(self.weights, n, generator, clusters)
        z = torch.randn(n, self.dim, generator=generator)
        df = self.df.cpu()[k].unsqueeze(-1).expand(n, self.dim)
        if generator is None:
            chi2 = torch.distributions.Chi2(df).sample()
        else:
            seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                chi2 = torch.distributions.Chi2(df).sample()
        t = z / (chi2 / df).sqrt()
        k = k.to(device)
        return self.loc[k] + self.scale[k] * t.to(device), k


@dataclass(frozen=True)
class StudentTOptions(Options):
    """Options of the Student-t mixture."""

    df: float = option(0.0, "fixed degrees of freedom of every component (0: learn one per component)", low=0)
    min_df: float = option(1.0, "smallest learned degrees of freedom", low=0.01, requires=("df", 0.0))
    max_df: float = option(100.0, "largest learned degrees of freedom", high=1e4, requires=("df", 0.0))
    scales: Literal["diag", "spherical", "tied-diag", "tied-spherical"] = option(
        "diag", "scale structure: per feature (diag) or one for all features (spherical), each component its own or "
        "tied, one for all"
    )  # fmt: skip

    def check(self) -> None:
        if self.df == 0 and not self.min_df < self.max_df:
            raise MixzooInputError(
                f"--min-df ({self.min_df:g}) must be below --max-df ({self.max_df:g}) ({self.owner})."
            )


def _build(dim: int, k: int, o: StudentTOptions) -> StudentTMixture:
    return StudentTMixture(dim, k, df=o.df or None, min_df=o.min_df, max_df=o.max_df, scales=o.scales)


def _plan(o: StudentTOptions, data: DataShape, inference: Inference) -> Plan:
    """50 principal components above 100 features; Adam at 0.02 decayed by 0.98 an epoch for 150 epochs: the data
    arrive rescaled to unit spread, where steps of 0.1 move the means by a tenth of a cluster's width and scatter
    digits over fewer clusters (ACC 0.57 against 0.80 at 0.02; pinwheel and moons gain a little too), and by epoch 150
    the decayed rate (0.02 * 0.98^150 = 0.001) no longer moves the clustering."""
    return Plan(options=o, training=Training(epochs=150, lr=0.02, lr_decay=0.98, batch_size=2048, tol=1e-4),
                pca=principal_components(data))  # fmt: skip


FAMILY = register(
    Family(
        name="student-t",
        description="Student-t mixture, diagonal, spherical or tied scales, learned degrees of freedom, maximum likelihood with y enumerated",
        cite="Peel and McLachlan 2000",
        options=StudentTOptions,
        model=StudentTMixture,
        build=_build,
        default_guide="empty",
        default_loss="trace-enum",
        plan=_plan,
        structure="scales",
    )
)
