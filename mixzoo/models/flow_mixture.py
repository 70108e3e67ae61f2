r"""Mixture of normalizing flows.

.. math::
    y_n \sim \operatorname{Cat}(\pi), \qquad x_n \mid y_n = k \sim p_k(x),

with each :math:`p_k` a normalizing flow (:class:`~mixzoo.nets.flows.ComponentFlows`).

- Maximum likelihood (Ciobanu 2021): with the empty guide and
  :class:`~pyro.infer.TraceEnum_ELBO`, ``"y"`` is enumerated in the model and the
  loss is the exact negative log-likelihood
  :math:`-\sum_n \log \sum_k \pi_k\, p_k(x_n)`; responsibilities are exact.
- Variational (Pires (2020)): with :class:`~mixzoo.guides.ClusterEncoder` as the
  guide, ``"y"`` is enumerated in the guide and the loss is the negative of the
  ELBO of the paper's eq. (4.3),
  :math:`\sum_k q(k \mid x) [\log p(x \mid k) + \log p(k) - \log q(k \mid x)]`.
- Semi-supervised: ``y`` with ``-1`` for unlabelled points. A labelled point's
  prior puts (all but ``exp(-30)`` of) its mass on its label, so the sum over
  ``y`` reduces to that label's component and only that flow learns from it.

Inputs are min-max scaled to [0, 1] inside the model (buffers set by
:meth:`FlowMixture.initialize`), as Ciobanu (2021) preprocesses its data; the
log-Jacobian of that scaling is added, so densities are in the data's own units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch import nn

from ..contract import cluster_draws
from ..data.labels import label_logits
from ..data.validation import check_data, check_n_clusters
from ..nets.flows import BaseKind, ComponentFlows, FlowKind
from ..nets.kmeans import kmeans
from ..options import Options, option
from .family import DataShape, Family, Inference, Plan, Training, principal_components, register

__all__ = ["FlowMixture"]


class FlowMixture(PyroModule):
    """K-component mixture of normalizing flows, a Pyro model ``model(x, y=None, subsample=None)``.

    :param dim: number of features D.
    :param n_clusters: number of components K.
    :param kind: ``"maf"`` or ``"realnvp"``.
    :param transforms: flow layers per component.
    :param hidden: hidden sizes of each layer's network.
    :param independent: separate parameters per component (vmapped) or one conditional flow.
    :param base: ``"normal"``, ``"paper"`` (Ciobanu 2021: N(U(0,1)^D, 0.1 I)), ``"kmeans"``
        (N(k-means centre, 0.1 I) in the scaled space, set by :meth:`initialize`) or
        ``"clusters"`` (N(k-means centre, diag of the cluster's variances): the mixture
        starts as the diagonal GMM of the k-means partition).
    :param learn_weights: learn the mixing weights, or keep them uniform.
    """

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        *,
        kind: FlowKind = "maf",
        transforms: int = 3,
        hidden: Sequence[int] = (64, 64),
        independent: bool = True,
        base: BaseKind | str = "kmeans",
        learn_weights: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.n_clusters = int(dim), check_n_clusters(n_clusters)
        if base not in ("normal", "paper", "kmeans", "clusters"):
            raise ValueError(f"unknown base {base!r}; choose 'normal', 'paper', 'kmeans' or 'clusters'")
        self.base = base
        g = torch.Generator().manual_seed(seed)
        self.flows = ComponentFlows(
            dim,
            n_clusters,
            kind=kind,
            transforms=transforms,
            hidden=hidden,
            independent=independent,
            base="normal" if base == "normal" else "paper",
            generator=g,
        )
        self.logits = nn.Parameter(torch.zeros(n_clusters), requires_grad=learn_weights)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights :math:`\\pi` (K,)."""
        return F.softmax(self.logits, -1)

    def summary_quantities(self) -> dict[str, torch.Tensor]:
        """What the ArviZ summary (:func:`mixzoo.analysis.summary.summarize`) shows: the mixing ``weights``
        :math:`\\pi = \\operatorname{softmax}(\\text{logits})` (K,), the mixture's one interpretable learned global
        (constant across draws with ``learn_weights=False``).

        Not summarized: the flows' network weights (thousands of coefficients without a meaning of their own;
        the Laplace draws still perturb them, so they move the pointwise log-likelihood), and the base
        Gaussians' means and scales, which are buffers fixed by :meth:`initialize` (not learned) and live in
        the min-max scaled space before the flow, where they are not the components' means.
        """
        return {"weights": self.weights}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log p_k(x_n)` in the data's units."""
        return self.flows.log_prob(self.normalize(x)) - self.scale.log().sum()

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\log \\pi_k + \\log p_k(x_n)`."""
        return F.log_softmax(self.logits, -1) + self.component_log_prob(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            xb = x[idx]
            logits = label_logits(F.log_softmax(self.logits, -1).expand(len(idx), -1), None if y is None else y[idx])
            k = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            logp = self.component_log_prob(xb)
            pyro.factor("x", Vindex(logp)[torch.arange(len(idx), device=x.device), k])

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> FlowMixture:
        """Min-max scaling from the data; with ``base="kmeans"``, base means at k-means++ centres."""
        x = check_data(x, dim=self.dim).to(self.shift.device)
        check_n_clusters(self.n_clusters, x.shape[0])
        lo, hi = x.min(0).values, x.max(0).values
        self.shift.copy_(lo)
        self.scale.copy_(torch.where(hi > lo, hi - lo, torch.ones_like(hi)))
        if self.base in ("kmeans", "clusters"):
            z = self.normalize(x).cpu()
            centres, labels = kmeans(z, self.n_clusters, torch.Generator().manual_seed(seed))
            scale = None
            if self.base == "clusters":  # a diagonal GMM from the k-means partition
                scale = torch.stack(
                    [z[labels == j].std(0) if (labels == j).sum() > 1 else z.std(0) for j in range(self.n_clusters)]
                )
                scale = scale.clamp(min=1e-2)
            self.flows.set_base(centres.to(x.device), None if scale is None else scale.to(x.device))
        return self

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, clusters: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points and their components (the given ``clusters``, or drawn from the weights), in the data's
        units."""
        k = cluster_draws(self.weights, n, generator, clusters)
        x = torch.empty(n, self.dim, device=self.shift.device)
        for j in k.unique().tolist():
            sel = k == j
            x[sel] = self.flows.sample(int(sel.sum()), j, generator) * self.scale + self.shift
        return x, k

@dataclass(frozen=True)
class FlowMixtureOptions(Options):
    """Options of the mixture of normalizing flows."""

    flow: Literal["nsf", "maf", "realnvp"] = option("nsf", "flow of each component: neural spline, MAF or RealNVP (maf on data of 10 or more features)")
    transforms: int = option(3, "flow layers per component", low=1)
    hidden: tuple[int, ...] = option((32, 32), "hidden sizes of each flow layer's network (128,128 on data of 10 or more features)", low=1)
    base: Literal["kmeans", "clusters", "paper", "normal"] = option("kmeans", "base distribution of each component (clusters on data of 10 or more features)")


def _build(dim: int, k: int, o: FlowMixtureOptions) -> FlowMixture:
    # the "paper" base means are random: draw their seed from the restart's seeded generator
    seed = int(torch.randint(2**31 - 1, (1,))) if o.base == "paper" else 0
    return FlowMixture(
        dim, k, kind=o.flow, transforms=o.transforms, hidden=o.hidden, independent=o.flow != "realnvp", base=o.base,
        seed=seed,
    )  # fmt: skip


PIRES_ENCODER = {"temperature": 5.0, "temperature_decay": 0.98, "encoder_start": "none"}
"""The variational mixture of flows' encoder (Pires 2020, section 5): untrained, its softmax at temperature 5 decaying
by 0.98 per epoch to 1, so that early on every component sees all data. Taught the k-means partition's posterior
first (the encoder's own default start), it keeps that partition's straight boundary, which two circles do not have;
on the pinwheel's arms, which k-means nearly separates, that start does better, and ``--encoder-start posterior
--temperature 1`` gives it (section ``encoder-start`` of docs/benchmarks.md)."""

HIGH_DIM = 10
"""From this many features on, the defaults are those for high-dimensional data (MNIST5 after PCA 50)."""

_HIGH_DIM_OPTIONS = {"flow": "maf", "base": "clusters", "hidden": (128, 128)}


def _plan(o: FlowMixtureOptions, data: DataShape, inference: Inference) -> Plan:
    """50 principal components above 100 features; integer images dequantized (a density on the integer levels
    themselves is unbounded). Below 10 features NSF layers of 32x32 from k-means centres for 250 epochs; from 10
    features on affine MAF layers from each k-means cluster's diagonal Gaussian, 128x128 networks, 30 epochs: the
    2-D defaults do not finish MNIST5 PCA 50 in 25 minutes on a 2-core CPU, this start reaches its clusters in 30
    epochs."""
    high = data.dim >= HIGH_DIM
    if high:
        o = replace(o, **{k: v for k, v in _HIGH_DIM_OPTIONS.items() if k not in inference.given})
    training = Training(epochs=30 if high else 250, lr=5e-3, lr_decay=0.99, batch_size=500)
    return Plan(options=o, training=training, pca=principal_components(data), dequantize=data.levels is not None,
                laplace_summary=False, guide_options={"encoder": PIRES_ENCODER})  # fmt: skip


FAMILY = register(
    Family(
        name="flow-mixture",
        description="mixture of normalizing flows (NSF/MAF/RealNVP), maximum likelihood with y enumerated; with the "
        "encoder guide the variational mixture of flows",
        cite="Ciobanu 2021 (MLE); Pires 2020 (variational, encoder guide)",
        options=FlowMixtureOptions,
        model=FlowMixture,
        build=_build,
        default_guide="empty",
        default_loss="trace-enum",
        plan=_plan,
        criteria=("heldout", "loo"),
        criteria_note="the flows' network weights are not a count of free parameters BIC could charge, so BIC and ICL "
        "are not offered",
    )
)
