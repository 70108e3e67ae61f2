"""Two-dimensional toy data sets with known clusters."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_circles, make_moons

__all__ = ["pinwheel", "two_circles", "moons"]


def pinwheel(
    n_samples: int = 2500,
    n_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.05,
    rate: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pinwheel of ``n_arms`` curved arms (Johnson et al., 2016, *Composing graphical
    models with neural networks*, the ``make_pinwheel_data`` recipe, scaled by 10)."""
    rng = np.random.default_rng(seed)
    per_arm = n_samples // n_arms
    rads = np.linspace(0, 2 * np.pi, n_arms, endpoint=False)
    feats = rng.standard_normal((n_arms * per_arm, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    labels = np.repeat(np.arange(n_arms), per_arm)
    angles = rads[labels] + rate * np.exp(feats[:, 0])
    rot = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)]).T.reshape(-1, 2, 2)
    x = 10 * np.einsum("ti,tij->tj", feats, rot)
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), labels[order]


def two_circles(
    n_samples: int = 2000, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric noisy circles (scikit-learn's ``make_circles``)."""
    x, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def moons(n_samples: int = 2000, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons``)."""
    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)
