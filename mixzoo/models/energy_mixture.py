r"""Non-normalized (energy-based) mixtures in the exponential family.

.. math::
    p(x \mid \theta, c) = h(x) \sum_{k=1}^K \exp\big(\theta_k^\top f(x) + c_k\big)

(Matsuda and Hyvärinen's (2019) eq. (7)-(8) and, with a network's features, eq. (26)). The
:math:`c_k = \log \pi_k - \log Z(\theta_k)` absorb the mixing weights and the
unknown normalizers and are learned with :math:`\theta` by noise-contrastive
estimation (:class:`~mixzoo.inference.NCE`); :math:`h` is left out, which is
exact when :math:`h \equiv 1` and cancels when the noise is the pretrained
classifier's own training data (eq. 30-32).

Features :math:`f`: ``"quadratic"`` gives the paper's 1-D Gaussian form
:math:`\exp(\theta_{k1} x^2 + \theta_{k2} x + c_k)` (per dimension, i.e.
diagonal Gaussians in D dimensions); ``"linear"`` uses the inputs themselves as
the sufficient statistics (deep features computed beforehand).

The cluster posterior is eq. (12)/(27),
:math:`p(y = k \mid x) = \operatorname{softmax}_k(\theta_k^\top f(x) + c_k)`, which
:func:`mixzoo.cluster_proba` obtains by enumerating ``"y"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch import nn

from ..data.validation import check_data
from ..errors import MixzooInputError
from ..nets.kmeans import kmeans
from ..options import Options, option
from ..param_store import isolated_param_store
from .family import DataShape, Family, Inference, Plan, Training, principal_components, register

if TYPE_CHECKING:
    from ..inference.nce import NCE

__all__ = ["EnergyMixture"]

Features = Literal["quadratic", "linear"]


class EnergyMixture(PyroModule):
    """Mixture of K exponential-family energies, a Pyro model ``model(x, y=None, subsample=None)``.

    Its components are known only up to their normalizers (``normalized = False``), so only noise-contrastive
    estimation trains it: every other loss bounds :math:`\\log p(x)`, which it does not define.

    :param dim: number of input features D.
    :param n_clusters: number of components K (1 is allowed for plain NCE of one non-normalized model).
    :param features: ``"quadratic"`` (f(x) = (x^2, x)) or ``"linear"`` (f(x) = x).
    """

    normalized = False

    def __init__(self, dim: int, n_clusters: int, features: Features = "linear") -> None:
        super().__init__()
        if features not in ("quadratic", "linear"):
            raise MixzooInputError(f"unknown features {features!r}; choose 'quadratic' or 'linear'.")
        if int(n_clusters) < 1:
            raise MixzooInputError(f"number of clusters must be at least 1, got {n_clusters}.")
        self.dim, self.n_clusters, self.features = int(dim), int(n_clusters), features
        n_stats = 2 * self.dim if features == "quadratic" else self.dim
        self.theta = nn.Parameter(torch.zeros(self.n_clusters, n_stats))
        self.c = nn.Parameter(torch.zeros(self.n_clusters))
        if features == "quadratic":
            with torch.no_grad():
                self.theta[:, : self.dim] = -0.5

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """Sufficient statistics f(x), shape (N, S)."""
        return torch.cat([x * x, x], -1) if self.features == "quadratic" else x

    def log_potentials(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) :math:`\\theta_k^\\top f(x_n) + c_k`: the log of each non-normalized component."""
        return self.statistics(x) @ self.theta.T + self.c

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        r"""(N, K) the log of each non-normalized component, as :meth:`forward` scores it with ``"y"`` enumerated:
        the uniform prior's :math:`-\log K` and the added :math:`\log K` cancel, leaving :meth:`log_potentials`."""
        return self.log_potentials(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, subsample: torch.Tensor | None = None) -> None:
        k_log = math.log(self.n_clusters)
        with pyro.plate("data", x.shape[0], subsample=subsample) as idx:
            k = pyro.sample(
                "y",
                dist.Categorical(logits=torch.zeros(self.n_clusters, device=x.device)),
                obs=None if y is None else y[idx],
                infer={"enumerate": "parallel"},
            )
            # + log K cancels the uniform prior, so summing out y gives log sum_k exp(theta_k f + c_k)
            potentials = self.log_potentials(x[idx])
            pyro.factor("x", Vindex(potentials)[torch.arange(len(idx), device=x.device), k] + k_log)

    def gaussian_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``features="quadratic"``: the implied (means, variances), each (K, D); NaN where theta_1 >= 0."""
        if self.features != "quadratic":
            raise ValueError("gaussian_parameters needs features='quadratic'")
        t1, t2 = self.theta[:, : self.dim], self.theta[:, self.dim :]
        var = torch.where(t1 < 0, -0.5 / t1, torch.full_like(t1, float("nan")))
        return t2 * var, var

    def log_partition(self) -> torch.Tensor:
        r"""For ``features="quadratic"``: (K,) :math:`\log Z(\theta_k) = \log \int \exp(\theta_k^\top f(x))\, dx
        = \sum_d \tfrac12 \log(2\pi v_{kd}) + m_{kd}^2 / (2 v_{kd})`, with the implied means m and
        variances v of :meth:`gaussian_parameters`; NaN where some :math:`\theta_{k1} \ge 0`."""
        mean, var = self.gaussian_parameters()
        return (0.5 * torch.log(2 * math.pi * var) + mean**2 / (2 * var)).sum(-1)

    def summary_quantities(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        r"""What the ArviZ summary (:func:`mixzoo.analysis.summary.summarize`) shows, in natural form.

        * ``log_normalizer`` (K,): :math:`c_k = \log \pi_k - \log Z(\theta_k)` of eq. (8), the
          log-normalizing constants that NCE learns with :math:`\theta` (they absorb the mixing weights).
        * ``features="quadratic"``: the Gaussian each energy implies, ``loc`` and ``scale`` (K, D), its
          means and standard deviations (NaN where :math:`\theta_{k1} \ge 0`), and the mixing ``weights``
          :math:`\pi_k \propto \exp(c_k)\, Z(\theta_k)` (:meth:`log_partition`), normalized to sum to 1
          (NCE normalizes the model only approximately).
        * ``features="linear"``: ``theta`` (K, D), the natural parameters :math:`\theta_k` of eq. (26)
          (the coefficients of the multinomial logistic regression eq. (27)); and, given the data ``x``, the
          mixing ``weights`` estimated as :math:`\frac1N \sum_n p(y = k \mid x_n)`, eq. (27) averaged over
          the data: :math:`Z(\theta_k) = \int \exp(\theta_k^\top x)\, dx` diverges, so :math:`\pi_k`
          has no closed form, and :math:`\pi_k = E_{x \sim p}[p(y = k \mid x)]` for a normalized mixture.

        :param x: the data (N, D); without them a linear model has no ``weights``.
        """
        out = {"log_normalizer": self.c}
        if self.features == "quadratic":
            mean, var = self.gaussian_parameters()
            weights = torch.softmax(self.c + self.log_partition(), -1)
            return {"weights": weights, "loc": mean, "scale": var.sqrt(), **out}
        if x is not None:
            out = {"weights": torch.softmax(self.log_potentials(x), -1).mean(0), **out}
        return {**out, "theta": self.theta}

    def laplace_loss(self, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        r""":math:`-N \hat J`, the NCE loss of eq. (4) on ``x`` against the default noise, a Gaussian :math:`n`
        matched to ``x`` with as many draws :math:`u_t` as points (:math:`\nu = 1`, seeded by ``seed``):

        .. math:: -\sum_t \log \sigma\big(G(x_t)\big) - \sum_t \log \sigma\big(-G(u_t)\big), \qquad
            G(u) = \log p(u \mid \theta, c) - \log n(u),

        the value :class:`~mixzoo.inference.NCE` computes, here from :meth:`log_potentials` directly (a Hessian
        diagonal takes one backward pass per parameter). It is the objective whose curvature the Laplace
        approximation of :func:`mixzoo.analysis.summary.summarize` uses: the non-normalized log-likelihood is convex in
        :math:`(\theta, c)` and has no maximum, while NCE's optimum is where the model was fitted. With other
        noise in training (the deep-transfer noise of eq. 28) this approximates that fit's curvature.
        """
        from ..inference.noise import GaussianNoise

        noise = GaussianNoise()
        noise.fit(x)
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            torch.manual_seed(seed)
            u = noise.sample(x.shape[0]).to(x)

        def contrast(v: torch.Tensor) -> torch.Tensor:
            return self.log_potentials(v).logsumexp(-1) - noise.log_prob(v)

        return -(F.logsigmoid(contrast(x)).sum() + F.logsigmoid(-contrast(u)).sum())

    def initialize(self, x: torch.Tensor, seed: int = 0, nce: NCE | None = None) -> EnergyMixture:
        r"""Start each component at a k-means cluster.

        With ``nce`` (the loss that will train the model), ``features="linear"`` components
        start component-wise: component k is the one-component NCE estimate, against the
        same noise, of the points of k-means cluster k alone, and its :math:`c_k` gains
        :math:`\log(N_k / N)`, so that the mixture starts at :math:`\sum_k (N_k/N)\, \hat p_k(x)`.
        Each of these fits is concave in :math:`(\theta_k, c_k)` (G of eq. 4 is linear in them),
        so it has one optimum, found by L-BFGS. Started this way, no component lies below the
        others everywhere, the failure of a joint start in which NCE lets all but one
        component die (the deep-transfer recipe of section 4.3 collapsed to one cluster).

        Without ``nce``: a Gaussian energy with the data's variances (quadratic) or the
        logistic regression that reproduces the k-means partition (linear).
        """
        x = check_data(x, dim=self.dim).to(self.c.device)
        g = torch.Generator().manual_seed(seed)
        centres, _ = kmeans(x.cpu(), self.n_clusters, g)
        labels = torch.cdist(x, centres.to(x.device)).argmin(-1)
        if nce is not None and self.features == "linear":
            return self._initialize_componentwise(x, labels, nce, seed)
        with torch.no_grad():
            return self._initialize_moments(x, centres.to(x.device), labels)

    def _initialize_componentwise(self, x: torch.Tensor, labels: torch.Tensor, nce: NCE, seed: int) -> EnergyMixture:
        nce.fit_noise(x)  # a data-matched noise is fitted on all the data, not on one cluster
        counts = torch.bincount(labels, minlength=self.n_clusters)
        if int(counts.min()) < 2:
            raise MixzooInputError("k-means left a cluster with fewer than 2 points; lower the number of clusters.")
        devices = [x.device] if x.is_cuda else []
        for k in range(self.n_clusters):
            xk = x[labels == k]
            one = EnergyMixture(self.dim, 1, self.features).to(x.device)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + k)
                noise = nce.draw_noise(xk)  # fixed draws: a deterministic objective for L-BFGS
            with isolated_param_store():  # the one-component models must not reach Pyro's global store
                _fit_by_lbfgs(one, nce, xk, noise)
            if not (torch.isfinite(one.theta).all() and torch.isfinite(one.c).all()):
                raise MixzooInputError(
                    f"the NCE start of component {k} is not finite: its k-means cluster cannot be told from the noise "
                    "by a bounded energy; standardise the features or choose other noise."
                )
            with torch.no_grad():
                self.theta[k] = one.theta[0]
                self.c[k] = one.c[0] + math.log(len(xk) / len(x))
        return self

    def _initialize_moments(self, x: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor) -> EnergyMixture:
        sd = x.std(0).clamp(min=1e-6)
        if self.features == "quadratic":
            var = sd**2
            self.theta[:, : self.dim] = -0.5 / var
            self.theta[:, self.dim :] = centres / var
            self.c.copy_(-(centres**2 / (2 * var)).sum(-1) - 0.5 * torch.log(2 * math.pi * var).sum())
        else:
            # the posterior softmax(theta f + c) of eq. (27) is a multinomial logistic regression:
            # start from the one that reproduces the k-means partition
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1.0, max_iter=2000).fit(x.cpu().numpy(), labels.cpu().numpy())
            coef = torch.as_tensor(lr.coef_, dtype=x.dtype, device=x.device)
            bias = torch.as_tensor(lr.intercept_, dtype=x.dtype, device=x.device)
            if coef.shape[0] == 1 and self.n_clusters == 2:  # binary: one logit for class 1 against class 0
                coef, bias = torch.cat([-coef / 2, coef / 2]), torch.cat([-bias / 2, bias / 2])
            if coef.shape[0] != self.n_clusters:  # fewer distinct k-means labels than K
                raise MixzooInputError("k-means found fewer distinct clusters than K; lower the number of clusters.")
            self.theta.copy_(coef)
            self.c.copy_(bias - (x @ coef.T + bias).logsumexp(-1).mean())
        return self


def _fit_by_lbfgs(model: EnergyMixture, nce: NCE, x: torch.Tensor, noise: list[torch.Tensor], iters: int = 100) -> None:
    """Maximise the full-batch NCE objective of ``model`` on ``x`` against fixed ``noise`` draws."""
    from ..guides.empty import EmptyGuide

    opt = torch.optim.LBFGS([model.theta, model.c], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -nce.objective(model, EmptyGuide(), x, noise_samples=noise) / len(x)
        loss.backward()
        return loss

    opt.step(closure)

@dataclass(frozen=True)
class EnergyMixtureOptions(Options):
    """Options of the non-normalized mixture."""

    features: Literal["linear", "quadratic"] = option(
        "quadratic", "sufficient statistics: (x^2, x) (diagonal Gaussian energies), or x (eq. 26; the default on a "
        "classifier's features, --pretrain-classes)"
    )  # fmt: skip


def _build(dim: int, k: int, o: EnergyMixtureOptions) -> EnergyMixture:
    return EnergyMixture(dim, k, features=o.features)


def _start(model: nn.Module, guide: nn.Module, x: Any, seed: int, loss: Any = None) -> None:
    """Under NCE, start each component at the NCE fit of its k-means cluster against the loss's noise."""
    from ..inference.nce import NCE

    model.initialize(x, seed=seed, nce=loss if isinstance(loss, NCE) else None)  # type: ignore[operator]


def _plan(o: EnergyMixtureOptions, data: DataShape, inference: Inference) -> Plan:
    """50 principal components above 100 features; integer images dequantized. Linear energies on a classifier's
    features, as in the paper's deep clustering (eq. 26-27); elsewhere diagonal Gaussian energies, which cluster the
    toys and dequantized digits better than linear ones (section ``defaults`` of docs/benchmarks.md)."""
    if data.learned_features and "features" not in inference.given:
        o = o.replace(features="linear")
    return Plan(options=o, training=Training(epochs=30, lr=0.01, batch_size=1024), pca=principal_components(data),
                dequantize=data.levels is not None, start=_start)  # fmt: skip


FAMILY = register(
    Family(
        name="energy-mixture",
        description="non-normalized exponential-family mixture estimated by NCE; deep features via --pretrain-classes",
        cite="Matsuda and Hyvärinen 2019",
        options=EnergyMixtureOptions,
        model=EnergyMixture,
        build=_build,
        default_guide="empty",
        default_loss="nce",
        plan=_plan,
        criteria=("heldout",),
        criteria_note="the normalizers are estimated by NCE, so its log-likelihood, held out, is an estimate; BIC, ICL "
        "and LOO are not offered",
    )
)
