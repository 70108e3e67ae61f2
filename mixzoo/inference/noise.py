"""Noise distributions for noise-contrastive estimation.

A noise source draws samples and evaluates its log density at any point (NCE
needs :math:`n(x)` at the data as well as at the noise samples). Three kinds:

- :class:`GaussianNoise`: a Gaussian matched to the data's mean and covariance
  (Matsuda and Hyvärinen's (2019) default suggestion), fitted on first use unless given.
- :class:`DistributionNoise`: any torch distribution with event shape (D,).
- :class:`SampleNoise`: a fixed sample set with a known log density function,
  e.g. a classifier's own training data with the density of the paper's eq. (28).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution, MultivariateNormal

from ..errors import MixzooInputError

__all__ = ["NoiseSource", "GaussianNoise", "DistributionNoise", "SampleNoise"]


class NoiseSource:
    """Interface: ``sample(n)``, ``log_prob(u)``, optional ``fit(x)`` and a fixed ``size``."""

    size: int | None = None
    """Number of samples of a fixed sample set; ``None`` for a distribution."""

    def fit(self, x: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Adapt to the data before the first step (no-op by default)."""

    def sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DistributionNoise(NoiseSource):
    """Noise from a torch distribution with event shape (D,)."""

    def __init__(self, distribution: Distribution) -> None:
        if len(distribution.event_shape) != 1:
            raise MixzooInputError(f"noise distribution needs event shape (D,), got {tuple(distribution.event_shape)}.")
        self.distribution = distribution

    def sample(self, n: int) -> torch.Tensor:
        return self.distribution.sample((n,))

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self.distribution.log_prob(u)


class GaussianNoise(DistributionNoise):
    """A Gaussian with the data's mean and covariance (``jitter`` added to the diagonal)."""

    def __init__(self, loc: torch.Tensor | None = None, covariance: torch.Tensor | None = None, jitter: float = 1e-6) -> None:
        self.jitter = jitter
        self.distribution = None  # type: ignore[assignment]
        if loc is not None and covariance is not None:
            self.distribution = MultivariateNormal(loc, covariance)

    def fit(self, x: torch.Tensor) -> None:
        if self.distribution is not None:
            return
        x = x.detach()
        loc = x.mean(0)
        centred = x - loc
        cov = centred.T @ centred / max(1, x.shape[0] - 1)
        cov = cov + self.jitter * cov.diagonal().mean().clamp(min=1.0) * torch.eye(x.shape[1], device=x.device)
        self.distribution = MultivariateNormal(loc, cov)

    def _fitted(self) -> Distribution:
        if self.distribution is None:
            raise RuntimeError("GaussianNoise is used before fit(x); the NCE loss fits it on the first batch")
        return self.distribution

    def sample(self, n: int) -> torch.Tensor:
        return self._fitted().sample((n,))

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self._fitted().log_prob(u)


class SampleNoise(NoiseSource):
    """A fixed set of noise samples (M, D) with a known log density ``log_prob_fn(u) -> (n,)``.

    Minibatches draw from the set without replacement; the full set is used when
    the data are used in full.
    """

    def __init__(self, samples: torch.Tensor, log_prob_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if samples.ndim != 2 or samples.shape[0] == 0:
            raise MixzooInputError(f"noise samples must be a non-empty (M, D) array, got shape {tuple(samples.shape)}.")
        self.samples = samples
        self.log_prob_fn = log_prob_fn
        self.size = int(samples.shape[0])

    def sample(self, n: int) -> torch.Tensor:
        if n >= self.size:
            return self.samples
        idx = torch.randperm(self.size)[:n].to(self.samples.device)
        return self.samples[idx]

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self.log_prob_fn(u)
