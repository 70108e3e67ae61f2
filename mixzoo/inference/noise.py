"""Noise distributions for noise-contrastive estimation.

A noise source draws samples and evaluates its log density at any point (NCE
needs :math:`n(x)` at the data as well as at the noise samples). The kinds:

- :class:`MatchedNoise` (the default): fitted to the data on first use; a :class:`GaussianNoise` for continuous
  data, a :class:`MarginalNoise` for integer-valued data.
- :class:`GaussianNoise`: a Gaussian matched to the data's mean and covariance
  (Matsuda and Hyvärinen's (2019) default suggestion), fitted on first use unless given.
- :class:`MarginalNoise`: each feature drawn independently from its observed values, with their frequencies: a
  noise on the data's own discrete support.
- :class:`DistributionNoise`: any torch distribution with event shape (D,).
- :class:`SampleNoise`: a fixed sample set with a known log density function,
  e.g. a classifier's own training data with the density of the paper's eq. (28).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution, MultivariateNormal

from ..errors import MixzooInputError

__all__ = ["NoiseSource", "GaussianNoise", "MarginalNoise", "MatchedNoise", "DistributionNoise", "SampleNoise"]


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


class MarginalNoise(NoiseSource):
    """The product of the features' observed distributions: feature d takes the values seen in the data with their
    frequencies, independently of the others.

    For integer-valued data (counts, pixel levels) this is a noise on the data's own support. NCE needs the noise to
    put mass wherever the data do, and a continuous noise has no density on a discrete support: a Binomial model
    against a Gaussian noise compares a probability with a density, and evaluating it at non-integer noise draws
    leaves its support.
    """

    def __init__(self) -> None:
        self.values: list[torch.Tensor] = []
        self.log_freq: list[torch.Tensor] = []

    def fit(self, x: torch.Tensor) -> None:
        if self.values:
            return
        for column in x.detach().T:
            values, counts = torch.unique(column, return_counts=True)
            self.values.append(values)
            self.log_freq.append((counts.to(x.dtype) / column.numel()).log())

    def _fitted(self) -> None:
        if not self.values:
            raise RuntimeError("MarginalNoise is used before fit(x); the NCE loss fits it on the first batch")

    def sample(self, n: int) -> torch.Tensor:
        self._fitted()
        columns = [v[torch.multinomial(f.exp(), n, replacement=True).to(v.device)] for v, f in zip(self.values, self.log_freq, strict=True)]
        return torch.stack(columns, -1)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`\\sum_d \\log f_d(u_d)`; :math:`-\\infty` where a feature takes a value it never took in the data."""
        self._fitted()
        total = u.new_zeros(u.shape[0])
        for d, (values, log_freq) in enumerate(zip(self.values, self.log_freq, strict=True)):
            pos = torch.searchsorted(values, u[:, d].contiguous()).clamp(max=len(values) - 1)
            total = total + torch.where(values[pos] == u[:, d], log_freq[pos], torch.full_like(total, -torch.inf))
        return total


class MatchedNoise(NoiseSource):
    """The default noise: on first use it becomes a :class:`MarginalNoise` when every value of the data is an
    integer, else a :class:`GaussianNoise` matched to their mean and covariance."""

    def __init__(self) -> None:
        self.chosen: NoiseSource | None = None

    def fit(self, x: torch.Tensor) -> None:
        if self.chosen is None:
            integer = bool((x == x.round()).all())
            self.chosen = MarginalNoise() if integer else GaussianNoise()
        self.chosen.fit(x)

    def _fitted(self) -> NoiseSource:
        if self.chosen is None:
            raise RuntimeError("MatchedNoise is used before fit(x); the NCE loss fits it on the first batch")
        return self.chosen

    def sample(self, n: int) -> torch.Tensor:
        return self._fitted().sample(n)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self._fitted().log_prob(u)
