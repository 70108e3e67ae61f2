r"""Noise-contrastive estimation (NCE) of non-normalized mixtures.

The model declares a non-normalized density through the mixzoo contract: the
cluster site ``"y"`` is enumerated and the data sites score
:math:`\log \tilde p_k(x; \theta_k) + c_k`, so that summing out ``"y"`` gives
Matsuda and Hyvärinen's (2019) eq. (7)-(8),

.. math:: \log p(x \mid \theta, c) = \log \sum_k \exp\big(\log \tilde p_k(x; \theta_k) + c_k\big).

Data :math:`x_1..x_N` are contrasted with noise from :math:`L` sources,
:math:`M_l` samples from :math:`n_l`. With
:math:`G(u) = \log N p(u \mid \theta, c) - \log \sum_l M_l n_l(u)`, the objective
is the log-likelihood of logistic regression between data and noise, eq. (4)
for one source and eq. (22) for several:

.. math::
    N \hat J = \sum_{t=1}^N \log \sigma\big(G(x_t)\big)
    + \sum_{l=1}^L \sum_{t=1}^{M_l} \log \frac{M_l\, n_l(y^{(l)}_t)}{N p(y^{(l)}_t) + \sum_{l'} M_{l'} n_{l'}(y^{(l)}_t)} .

The loss is :math:`-N \hat J`, estimated on minibatches: a data minibatch of size
B (scaled by N/B) is contrasted with :math:`B_l = \nu_l B` samples of each source
(scaled by :math:`M_l / B_l`), where :math:`\nu_l = M_l / N`. By the paper's
Theorem 2 several sources give the same estimate as one source with the
mixture density :math:`\sum_l (M_l / M)\, n_l`; the losses differ by a
constant that does not depend on :math:`\theta, c`.

Reference: Matsuda and Hyvärinen, *Estimation of Non-Normalized Mixture Models*
(AISTATS 2019); Gutmann and Hyvärinen (2012) for NCE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pyro.infer import ELBO
from pyro.poutine.trace_struct import Trace

from ..contract import CLUSTER_SITE, ModelCapabilities, guide_samples_nothing, latent_sites
from ..errors import MixzooInputError
from ..options import Options, option
from .enumeration import enumerated_log_joint
from .noise import DistributionNoise, MatchedNoise, NoiseSource
from .registry import Algorithm, GuideFacts, register_algorithm
from .untraced import StatedTable
from .validated import ValidatedPairs

__all__ = ["NCE"]

NoiseSpec = NoiseSource | torch.distributions.Distribution | tuple[Any, float]


def _as_source(obj: Any) -> NoiseSource:
    if isinstance(obj, NoiseSource):
        return obj
    if isinstance(obj, torch.distributions.Distribution):
        return DistributionNoise(obj)
    raise MixzooInputError(
        f"noise must be a NoiseSource, a torch distribution or (source, count) pairs, got {type(obj).__name__}."
    )


def _empty_guide(model: Any, guide: Any) -> bool:
    return guide_samples_nothing(guide)


class NCE(ELBO):
    """Noise-contrastive estimation loss for Pyro models that follow the mixzoo contract.

    :param noise: one noise source (a :class:`~mixzoo.inference.noise.NoiseSource` or a torch
        distribution), or a list of ``(source, count)`` pairs for several sources (eq. 22); ``count``
        is the number of noise samples :math:`M_l` (a fixed sample set's size when ``None``).
        Default: :class:`~mixzoo.inference.noise.MatchedNoise`, a Gaussian matched to the data's mean and
        covariance, or for integer-valued data the product of the features' observed frequencies.
    :param nu: noise-to-data ratio :math:`\\nu = M / N` for a single source given without a count.
    """

    enumerates_model = True

    takes_labels = False
    """NCE contrasts data with noise; it has no use for observed cluster labels."""

    def __init__(self, noise: NoiseSpec | Sequence[tuple[Any, float | None]] | None = None, nu: float = 1.0) -> None:
        super().__init__(num_particles=1, max_plate_nesting=1)
        if not (nu > 0 and math.isfinite(nu)):
            raise MixzooInputError(f"noise ratio nu must be positive and finite, got {nu}.")
        if noise is None:
            noise = MatchedNoise()
        if isinstance(noise, tuple) and len(noise) == 2 and (noise[1] is None or isinstance(noise[1], (int, float))):
            noise = [noise]  # one (source, count) pair, as NoiseSpec allows
        if isinstance(noise, (list, tuple)) and noise and isinstance(noise[0], (list, tuple)):
            self.sources = [(_as_source(s), None if m is None else float(m)) for s, m in noise]
            self.nu = None
        else:
            self.sources = [(_as_source(noise), None)]
            self.nu = float(nu)
        for s, m in self.sources:
            if m is None and s.size is None and self.nu is None:
                raise MixzooInputError("each of several noise distributions needs a sample count M_l.")
            if m is not None and not (m > 0 and math.isfinite(m)):
                raise MixzooInputError(f"a noise distribution's sample count M_l must be positive and finite, got {m}.")
        self._validated = ValidatedPairs()
        self.table = StatedTable(_empty_guide)

    def _counts(self, n_data: int) -> list[float]:
        counts = []
        for s, m in self.sources:
            if m is not None:
                counts.append(m)
            elif s.size is not None:
                counts.append(float(s.size))
            else:
                counts.append(self.nu * n_data)  # type: ignore[operator]
        return counts

    def fit_noise(self, x: torch.Tensor) -> None:
        """Fit the data-dependent noise sources (the default matched Gaussian) on ``x``; a no-op once fitted."""
        for s, _ in self.sources:
            s.fit(x)

    def draw_noise(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One draw of every source for the data ``x``: :math:`M_l` samples each (a sample set in full),
        to pass as ``noise_samples`` for a deterministic objective."""
        self.fit_noise(x)
        return [source.sample(max(1, round(m_l))).to(x.device) for (source, _), m_l in zip(self.sources, self._counts(x.shape[0]), strict=True)]

    def _log_model(self, model: Callable[..., Any], guide: Callable[..., Any], u: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \sum_k \exp T_{nk}` of the points ``u``: from the model's stated table once a traced
        evaluation has confirmed the pair (:mod:`~mixzoo.inference.untraced`), else by the trace."""
        if self.table.batch(model, guide, (u,), {}, lambda: enumerated_log_joint(model, guide, u)) is not None:
            return torch.logsumexp(model.log_joint(u), dim=-1)  # type: ignore[attr-defined]
        return torch.logsumexp(enumerated_log_joint(model, guide, u), dim=-1)

    def _log_noise_total(self, u: torch.Tensor, log_counts: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`\\log \\sum_l M_l n_l(u)` (n,) and :math:`\\log M_l n_l(u)` (n, L) for points ``u`` (n, D)."""
        per_source = torch.stack([s.log_prob(u) for s, _ in self.sources], -1)
        per_source = per_source + per_source.new_tensor(log_counts)
        if len(self.sources) == 1:  # the logsumexp of one term is that term
            return per_source[:, 0], per_source
        return torch.logsumexp(per_source, -1), per_source

    def objective(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        subsample: torch.Tensor | None = None,
        noise_samples: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """:math:`N \\hat J` estimated on the minibatch ``subsample`` (all of ``x`` when ``None``).

        ``noise_samples`` (one tensor per source) fixes the noise draws, e.g. to compare estimators.
        The minibatch and the noise draws of all sources are scored together, by one run of the model
        and one evaluation of each noise density on the stacked points: the model must score each point
        on its own, as a density does.
        """
        n = x.shape[0]
        xb = x if subsample is None else x[subsample]
        b = xb.shape[0]
        self.fit_noise(x)
        counts = self._counts(n)
        draws = []
        for i, ((source, _), m_l) in enumerate(zip(self.sources, counts, strict=True)):
            if noise_samples is not None:
                draws.append(noise_samples[i].to(device=x.device, dtype=xb.dtype))
            else:
                draws.append(source.sample(max(1, round(m_l * b / n))).to(device=x.device, dtype=xb.dtype))
        points = torch.cat([xb, *draws])
        with self._validated.checks(model, guide):  # Pyro's checks on the pair's first evaluation only
            log_model = math.log(n) + self._log_model(model, guide, points)
        noise_total, per_source = self._log_noise_total(points, [math.log(m) for m in counts])
        total = (n / b) * F.logsigmoid(log_model[:b] - noise_total[:b]).sum()
        start = b
        for i, (yb, m_l) in enumerate(zip(draws, counts, strict=True)):
            rows = slice(start, start + yb.shape[0])
            start = rows.stop
            mixed = torch.logaddexp(log_model[rows], noise_total[rows])
            total = total + (m_l / yb.shape[0]) * (per_source[rows, i] - mixed).sum()
        return total

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """:math:`-N \\hat J`, differentiable with respect to the model's parameters."""
        return -self.objective(model, guide, *args, **kwargs)

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())

    def _get_trace(self, model: Callable[..., Any], guide: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        raise NotImplementedError("NCE scores the model on data and noise directly; it has no ELBO traces")

    def check_pair(self, model_trace: Trace, guide_trace: Trace) -> None:
        """NCE estimates a model whose only latent is the enumerated ``"y"``: the guide must be empty."""
        sampled = [name for name, _ in latent_sites(guide_trace)]
        if sampled:
            raise MixzooInputError(
                f"NCE needs the empty guide (the model sums out {CLUSTER_SITE!r} itself), but the guide samples {sampled}."
            )


@dataclass(frozen=True)
class NCEOptions(Options):
    """Options of ``nce``."""

    noise_ratio: float = option(1.0, "noise draws per data point (nu = M / N)", low=1e-3, high=1e3)


def _requires(model: ModelCapabilities, guide: GuideFacts) -> str | None:
    if guide.samples_y:
        return f"scores the model with y summed out, so it needs the empty guide, not {guide.name!r}"
    if not model.enumerable_y:
        return f"needs a model whose only per-point latent is y; this one also has {', '.join(model.local_latents)}"
    return None


register_algorithm(
    Algorithm(
        name="nce",
        description="noise-contrastive estimation: logistic regression of data against noise, which also learns "
        "the normalizers of a model known only up to them",
        cite="Gutmann and Hyvärinen 2012; mixtures: Matsuda and Hyvärinen 2019",
        loss_class=NCE,
        make=lambda o, context: NCE(noise=context.noise, nu=o.noise_ratio),
        requires=_requires,
        options=NCEOptions,
        takes_labels=False,
    )
)
